r"""Agent-level topologies derived from a machine-level one (hierarchical mixing).

With ``L`` agents per machine (agents ``m L, ..., m L + L - 1`` on machine ``m``):

* :func:`machine_average_topology` is :math:`B = I_m \otimes \tfrac1L \mathbf 1\mathbf 1^\top`
  (average inside each machine);
* :func:`lift_machine_topology` is :math:`W^{\text{machine}} \otimes I_L` (agent ``i`` mixes
  with the agent of the same local index on neighboring machines).

Their product :math:`(W^{\text{machine}} \otimes I_L)\,B = W^{\text{machine}} \otimes
\tfrac1L \mathbf 1\mathbf 1^\top` is the hierarchical mixing matrix.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._topology import Topology
from .dynamic import DynamicTopology
from .validation import check_num_agents, check_positive_int

__all__ = ["machine_average_topology", "lift_machine_topology"]


@lru_cache(maxsize=64)
def machine_average_topology(size: int, local_size: int) -> Topology:
    """Block-diagonal averaging :math:`I_m \\otimes \\frac1L \\mathbf 1 \\mathbf 1^\\top`."""
    size = check_num_agents(size, "size")
    L = check_positive_int(local_size, "local_size")
    if size % L:
        raise ValueError(f"local_size must divide size; got size={size}, local_size={L}.")
    W = np.kron(np.eye(size // L), np.full((L, L), 1.0 / L))
    return Topology(W, name=f"machine_average(size={size}, local_size={L})", require="doubly",
                    check_connected=False)


def _lift(t: Topology, L: int) -> Topology:
    return Topology(np.kron(t.weights, np.eye(L)), name=f"lifted({t.name}, local_size={L})",
                    require="none", check_connected=False)


def lift_machine_topology(machine_topology, local_size: int):
    """:math:`W^{\\text{machine}} \\otimes I_L`, for a static or dynamic machine topology."""
    L = check_positive_int(local_size, "local_size")
    check_num_agents(machine_topology.size * L, "machine_topology.size * local_size")
    if isinstance(machine_topology, DynamicTopology):
        return _lift_dynamic(machine_topology, L)
    return _lift_static(machine_topology, L)


@lru_cache(maxsize=64)
def _lift_static(t: Topology, L: int) -> Topology:
    return _lift(t, L)


_DYN_CACHE: dict = {}


def _lift_dynamic(t: DynamicTopology, L: int) -> DynamicTopology:
    key = (t.fingerprint, L)
    if key not in _DYN_CACHE:
        _DYN_CACHE[key] = DynamicTopology([_lift(p, L) for p in t.patterns], period=t.period,
                                          seed=t._seed, name=f"lifted({t.name}, local_size={L})")
    return _DYN_CACHE[key]
