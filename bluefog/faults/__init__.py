r"""bluefog.faults: message loss, link outages, partitions and node crashes, simulated
deterministically inside the compiled loop, identically in both backends.

A :class:`Faults` object (fault models plus a receiver rule) is given to a run
(``bluefog_sim.run(..., faults=f)`` or ``bluefog_dist.run(..., faults=f)``) or to a
communicator (``SimComm(n, faults=f)``, ``MpiComm(faults=f)``). Every mask is a pure function
of ``(seed, t, receiver, sender)`` (:mod:`bluefog.faults.hashing`), so the simulator and every
MPI rank drop exactly the same messages without communicating: under MPI the message is still
sent and the receiver ignores it. Node crashes (the crashed agent's state frozen or reset) are
applied by the engine around the algorithm's step (:func:`with_faults`). The models' numbers
(seeds, rates, windows, crash steps) are tables passed to the compiled program as inputs
(:mod:`bluefog.faults.tables`, :mod:`bluefog.faults.inputs`), so a sweep over them with one
structure compiles once.
"""

from .hashing import draw, threshold
from .models import CRASH_STATES, BurstyLoss, LinkOutage, MessageLoss, NodeCrash, Partition
from .spec import RULES, Faults
from .aware import FaultAwareState, with_faults
from .memory import MemoryComm

__all__ = ["Faults", "RULES", "MessageLoss", "BurstyLoss", "LinkOutage", "Partition",
           "NodeCrash", "CRASH_STATES", "draw", "threshold", "with_faults", "FaultAwareState",
           "MemoryComm"]
