"""Stopping a run cleanly on SIGTERM / SIGHUP / SIGINT (what batch schedulers and Ctrl-C send).

While a checkpointing run trains, the first such signal only sets a flag: the run goes on to
the end of the current segment, writes its checkpoint, and stops there with
:class:`TrainingStopped` (so ``--resume`` continues from that step). A second signal
restores the default action and re-sends itself, ending the process at once; checkpoints
are written atomically, so the last one is intact either way. Under MPI each rank handles
the signal it receives (the launcher forwards it to every rank); the engine turns a stop on
any rank into the same error on every rank.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["TrainingStopped", "TrainingDiverged", "StopSignals"]

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT")
                 if hasattr(signal, name))


class TrainingDiverged(FloatingPointError):
    """The run's state or metrics became non-finite; the last finite checkpoint is kept.

    Attributes
    ----------
    step : int
        The first non-finite record, counted from the start of the run (not of this call).
    checkpoint : str or None
        The newest checkpoint, all finite, left in place (``None`` without checkpoints).
    """

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint



class TrainingStopped(Exception):
    """A signal stopped the run at a segment boundary, after its checkpoint was written.

    Attributes
    ----------
    signal_name : str
        E.g. ``"SIGTERM"``.
    step : int
        The step the run stopped at (the step of ``checkpoint``).
    checkpoint : str or None
        The checkpoint written at ``step`` (``None`` on MPI ranks other than 0).
    """

    def __init__(self, signal_name: str, step: int, checkpoint: str | None):
        self.signal_name, self.step, self.checkpoint = signal_name, int(step), checkpoint
        at = f" (checkpoint {checkpoint})" if checkpoint else ""
        super().__init__(f"stopped by {signal_name} at step {step}{at}; continue with --resume.")

    @classmethod
    def from_failure(cls, text: str) -> "TrainingStopped":
        """Rebuild the exception from its ``"TrainingStopped: message"`` text (another rank's)."""
        words = text.split()
        name = words[words.index("by") + 1] if "by" in words else "a signal"
        step = int(words[words.index("step") + 1].rstrip(";")) if "step" in words else -1
        return cls(name, step, None)

    @property
    def exit_code(self) -> int:
        """``128 + signal number``, the shell's convention for a process ended by a signal."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGTERM))


class StopSignals:
    """Context manager: while active, the first stop signal sets :attr:`requested`.

    Parameters
    ----------
    enabled : bool
        Install the handlers (only where a checkpoint will follow; in the main thread only,
        as Python requires). Disabled, the signals keep their default actions.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested:  # second signal: default action now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = name
        print(f"bluefog-train: {name} received; stopping after the next checkpoint "
              f"(send it again to stop now).", file=sys.stderr, flush=True)

    def __enter__(self):
        if self.enabled:
            for sig in _SIGNALS:
                if signal.getsignal(sig) is signal.SIG_IGN:  # e.g. SIGINT under nohup ... &
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()
        return False
