r"""Communication volume of the decentralized SGD family: bytes sent per agent per step."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.compression import payload_bits
from bluefog.topology import DynamicTopology, Topology
from bluefog.topology.hierarchical import lift_machine_topology

from bluefog.validation import check_positive_int

from ._decentralized import check_communication

__all__ = ["communication_bytes_per_step"]

PyTree = Any


def _rounds(topology) -> float:
    """Mean number of schedule rounds (one message per round per agent)."""
    return float(np.mean([p.schedule.num_rounds for p in topology.patterns]))


def communication_bytes_per_step(params: PyTree, *, communication: str, topology=None,
                                 steps_per_communication: int = 1, machine_topology=None,
                                 local_size: int = 1, compressor=None) -> float:
    r"""Bytes one agent sends per optimizer step (averaged over time).

    With :math:`b` the size of one agent's parameters (or gradient) in bytes, :math:`n` the
    number of agents, :math:`R` the number of schedule rounds (mean over the patterns of a
    dynamic topology) and :math:`J` = ``steps_per_communication``:

    * ``"neighbor"``: :math:`R\, b / J` (every round is a full permutation: one message per
      agent per round);
    * ``"allreduce"`` / ``"gradient_allreduce"``: :math:`2\frac{n-1}{n} b / J` (ring
      allreduce: reduce-scatter plus allgather, Patarasuk & Yuan, JPDC 69 (2009));
    * ``"hierarchical"``: :math:`\big(2\frac{L-1}{L} + R_{\text{machine}}\big) b / J` (ring
      allreduce inside a machine of :math:`L` agents, then the machine graph lifted to
      agents);
    * ``"none"``: 0.

    With a ``compressor`` (``"neighbor"`` only), :math:`b` is the payload instead:
    :math:`\sum_\ell` :func:`bluefog.compression.payload_bits` of leaf :math:`\ell` / 8.

    Parameters
    ----------
    params : pytree
        One agent's parameters (only shapes and dtypes are used).
    communication : str
        One of :data:`algorithms.optim.COMMUNICATIONS`.
    topology : Topology or DynamicTopology
        The agent topology (needed for ``"neighbor"``, ``"allreduce"`` and
        ``"gradient_allreduce"``, which read ``n`` from it).
    steps_per_communication, machine_topology, local_size
        As in :func:`algorithms.optim.decentralized` / the runner.
    compressor : bluefog.compression.Compressor, optional
        The compressor of compressed (CHOCO) mixing.

    Returns
    -------
    float
        Bytes per agent per step.

    References
    ----------
    P. Patarasuk and X. Yuan, "Bandwidth optimal all-reduce algorithms for clusters of
    workstations", J. Parallel Distrib. Comput. 69(2) (2009).
    """
    communication, J = check_communication(communication, steps_per_communication, machine_topology,
                                           where="communication_bytes_per_step")
    b = float(sum(np.size(leaf) * np.dtype(jnp.result_type(leaf)).itemsize
                  for leaf in jax.tree_util.tree_leaves(params)))
    if communication == "none":
        return 0.0
    if communication == "hierarchical":
        L = check_positive_int(local_size, "local_size", where="communication_bytes_per_step")
        lifted = lift_machine_topology(machine_topology, L)
        return (2.0 * (L - 1) / L + _rounds(lifted)) * b / J
    if not isinstance(topology, (Topology, DynamicTopology)):
        raise TypeError(
            f"communication_bytes_per_step: topology must be a Topology or DynamicTopology for "
            f"communication={communication!r}; got {type(topology).__name__}. Pass the run's "
            "topology, e.g. topology=exponential_graph(8)."
        )
    if communication == "neighbor":
        if compressor is not None:
            b = sum(payload_bits(compressor, int(np.size(leaf)), jnp.result_type(leaf)) / 8
                    for leaf in jax.tree_util.tree_leaves(params))
        return _rounds(topology) * b / J
    n = topology.size
    return 2.0 * (n - 1) / n * b / J
