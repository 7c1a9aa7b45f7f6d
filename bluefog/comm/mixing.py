r"""Detect uniform-average schedules, which are mixed as "sum, then divide once".

A row of ``W`` is a *uniform average* when agent ``i`` gives the same weight
:math:`s_i = 1/c_i` to itself and to each of its :math:`c_i - 1` in-neighbors. Then

.. math:: x_i^{+} = \frac{1}{c_i}\Bigl(x_i + \sum_{r:\, w^{(r)}_i \neq 0} x_{\sigma_r(i)}\Bigr)

is computed by summing the received values and dividing once by the exact integer
:math:`c_i`. In floating point this rounds once per addition plus once for the division,
instead of rounding the weight :math:`1/c_i` itself (inexact unless :math:`c_i` is a power of
two) and every product :math:`s_i x_j`. Bluefog computes default (uniform) averaging the same
way (``PerformNeighborAllreduceCallback`` in ``bluefog/torch/mpi_ops.cc``: sum, then
``div_(src_size + 1)``).

Reference: B. Ying et al., "BlueFog: make decentralized algorithms practical for
optimization and deep learning", arXiv:2111.04287 (2021).
"""

from __future__ import annotations

import numpy as np

from ..topology.schedule import Schedule

__all__ = ["uniform_counts"]

#: How far ``s_i * c_i`` may be from 1 (float64 rounding of the weight ``1/c_i``).
_TOLERANCE = 1e-12


def uniform_counts(schedule: Schedule) -> np.ndarray | None:
    r"""The per-agent divisor :math:`c_i` if every row of the schedule is a uniform average.

    Every agent ``i`` must have a positive self weight :math:`s_i`; every round weight
    :math:`w^{(r)}_i` must be either 0 (a padding exchange) or exactly :math:`s_i`; and
    :math:`s_i c_i = 1` (to float64 rounding) with
    :math:`c_i = 1 + \#\{r : w^{(r)}_i \neq 0\}`.

    Parameters
    ----------
    schedule : bluefog.topology.schedule.Schedule

    Returns
    -------
    numpy.ndarray of float64, shape ``(n,)``, or None
        :math:`c_i` for every agent, or ``None`` when any row is not a uniform average (then
        the weighted form :math:`s_i x_i + \sum_r w^{(r)}_i x_{\sigma_r(i)}` is used).

    Examples
    --------
    >>> from bluefog.topology import ring_graph
    >>> uniform_counts(ring_graph(5).schedule).tolist()
    [3.0, 3.0, 3.0, 3.0, 3.0]
    """
    s = np.asarray(schedule.self_weights, dtype=np.float64)
    if not np.all(s > 0):
        return None
    counts = np.ones(schedule.size)
    for rnd in schedule.rounds:
        w = np.asarray(rnd.weights, dtype=np.float64)
        real = w != 0
        if np.any(w[real] != s[real]):
            return None
        counts += real
    if not np.all(np.abs(s * counts - 1.0) <= _TOLERANCE):
        return None
    return counts
