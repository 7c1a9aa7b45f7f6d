"""``ClockedComm``: a communicator whose window ops follow a given clock.

The virtual-time simulator (:mod:`bluefog.asynchrony`) builds one per step, inside the traced
program, with this agent's current time, whether its step completes now, the link latencies
and the in-flight capacity (:class:`~bluefog.comm.window_state.Clock`). Every other op is the
wrapped communicator's.
"""

from __future__ import annotations

from .window import WindowOps
from .window_state import Clock

__all__ = ["ClockedComm"]


class ClockedComm(WindowOps):
    """``base`` with its window ops driven by ``clock`` (all other attributes delegate).

    Parameters
    ----------
    base : ScheduleCommunicator
    clock : Clock
    """

    def __init__(self, base, clock: Clock):
        if not isinstance(clock, Clock):
            raise TypeError(f"ClockedComm: clock must be a bluefog.comm.window_state.Clock; got "
                            f"{type(clock).__name__}.")
        self.__dict__["_base"] = base
        self.__dict__["_clock"] = clock

    def __getattr__(self, name):
        return getattr(self.__dict__["_base"], name)

    def _win_clock(self):
        return self._clock

    def __repr__(self) -> str:
        return f"ClockedComm({self._base!r}, capacity={self._clock.capacity})"
