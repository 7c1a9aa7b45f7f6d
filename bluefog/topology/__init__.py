"""Topologies: graph constructors, weight rules, validation, spectra and schedules.

Convention everywhere: ``x_next = W @ x``; ``W[i, j]`` is the weight agent ``i`` puts on
agent ``j``'s value.
"""

from ._topology import Topology
from .dynamic import DynamicTopology, one_peer_exponential_graph, random_matching
from .schedule import Round, Schedule, compile_schedule
from .validation import validate_weights

__all__ = [
    "Topology",
    "DynamicTopology",
    "Round",
    "Schedule",
    "compile_schedule",
    "validate_weights",
    "one_peer_exponential_graph",
    "random_matching",
]
