"""Topologies: graph constructors, weight rules, validation, spectra and schedules.

Convention everywhere: ``x_next = W @ x``; ``W[i, j]`` is the weight agent ``i`` puts on
agent ``j``'s value.
"""

from ._topology import Topology
from .drawing import draw, draw_dynamic_topology, draw_topology
from .dynamic import DynamicTopology, random_matching
from .exponential import exponential_graph, symmetric_exponential_graph
from .full import fully_connected_graph
from .grid import grid_2d_graph, torus_2d_graph
from .hypercube import hypercube_graph
from .inner_outer import inner_outer_exponential_graph, inner_outer_ring_graph
from .interop import from_matrix, from_networkx
from .one_peer import dynamic_one_peer_graph, one_peer_exponential_graph
from .random_graphs import erdos_renyi_graph, random_regular_graph
from .ring import ring_graph
from .schedule import Round, Schedule, compile_schedule
from .sparse import MAX_SPARSE_AGENTS, SparseWeights
from .star import star_graph
from .validation import MAX_DENSE_AGENTS, validate_weights
from .weights import metropolis_weights, uniform_weights

__all__ = [
    "Topology",
    "DynamicTopology",
    "Round",
    "Schedule",
    "compile_schedule",
    "validate_weights",
    "MAX_DENSE_AGENTS",
    "SparseWeights",
    "MAX_SPARSE_AGENTS",
    "one_peer_exponential_graph",
    "dynamic_one_peer_graph",
    "inner_outer_ring_graph",
    "inner_outer_exponential_graph",
    "random_matching",
    "exponential_graph",
    "symmetric_exponential_graph",
    "ring_graph",
    "star_graph",
    "grid_2d_graph",
    "torus_2d_graph",
    "hypercube_graph",
    "fully_connected_graph",
    "random_regular_graph",
    "erdos_renyi_graph",
    "from_networkx",
    "from_matrix",
    "uniform_weights",
    "metropolis_weights",
    "draw",
    "draw_topology",
    "draw_dynamic_topology",
]
