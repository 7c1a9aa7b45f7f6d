"""The raw-MPI baselines' arithmetic: the neighbor weighted sum done by hand in NumPy.

Shared by :mod:`mpi_exchange` and :mod:`mpi_ranks` so that both baselines do the same work
as the jitted exchange they are compared with, **in the same dtype**: NumPy 2 promotes a
float64 scalar times a float32 array to float64 (NEP 50), which once made the raw baseline
11x slower while doing different work (issue 13, item 8).
"""

from __future__ import annotations

import numpy as np


def round_weights(schedule, rank: int, dtype) -> tuple:
    """Receive weights of ``rank`` as scalars of ``dtype``.

    Parameters
    ----------
    schedule : bluefog.topology.schedule.Schedule
        Rounds of full permutations with per-receiver weights (``Topology.schedule``).
    rank : int
        The receiving agent ``i``.
    dtype : numpy dtype
        The message dtype (``x.dtype``); the weights are cast to it so that the weighted sum
        stays in it.

    Returns
    -------
    (scalar, list of scalar)
        :math:`W_{ii}` and :math:`W_{i,\\sigma_r(i)}` for every round ``r``.

    References
    ----------
    Bluefog ``neighbor_allreduce`` (self weight + per-neighbor receive weights); NEP 50
    (NumPy 2 promotion rules for Python / NumPy scalars).
    """
    t = np.dtype(dtype).type
    return t(schedule.self_weights[rank]), [t(r.weights[rank]) for r in schedule.rounds]


def weighted_sum(x, received, self_weight, weights, out):
    """``out <- self_weight * x + sum_r weights[r] * received[r]``, in ``out``'s dtype.

    One agent's row of :math:`x^+ = W x`: :math:`x_i^+ = W_{ii} x_i +
    \\sum_r W_{i,\\sigma_r(i)} x_{\\sigma_r(i)}`, written the way a hand-written NumPy
    exchange does it (one multiply, one add per round; no dtype promotion when the weights
    come from :func:`round_weights`).

    Parameters
    ----------
    x : numpy.ndarray
        This agent's value.
    received : sequence of numpy.ndarray
        The value received in each schedule round (same shape and dtype as ``x``).
    self_weight, weights : scalars of ``x.dtype``
        From :func:`round_weights`.
    out : numpy.ndarray
        Result buffer, not ``x`` itself (``x`` is read after ``out`` is first written).

    Returns
    -------
    numpy.ndarray
        ``out``.

    References
    ----------
    Bluefog ``neighbor_allreduce`` (``bluefog/torch/mpi_ops.py``); B. Ying et al.,
    "BlueFog: make decentralized algorithms practical for optimization and deep learning",
    arXiv:2111.04287, 2021.
    """
    np.multiply(x, self_weight, out=out)
    for w, r in zip(weights, received):
        out += w * r
    return out
