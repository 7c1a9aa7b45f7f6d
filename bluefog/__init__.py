"""bluefog: the shared core of bluefog-jax (topologies, schedules, the Communicator
protocol, the algorithm/problem interfaces, the engine and compression). No backend code here."""

from . import topology
from .algorithm import AgentContext, Algorithm, Problem
from .comm import Communicator, NeighborValues, ScheduleCommunicator
from .engine import RunResult

__version__ = "0.1.0"

__all__ = [
    "topology",
    "Algorithm",
    "AgentContext",
    "Problem",
    "Communicator",
    "NeighborValues",
    "ScheduleCommunicator",
    "RunResult",
]
