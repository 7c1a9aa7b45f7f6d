"""The errors the engine raises on every agent (every MPI rank) at once."""

from __future__ import annotations

__all__ = ["NonFiniteError", "CallbackError"]


class NonFiniteError(FloatingPointError):
    """A state or metric became NaN or infinite: the run diverged.

    Raised identically on every agent (every MPI rank): the finiteness flags are gathered
    inside the compiled loop, so all ranks take the same decision at the same record.

    Attributes
    ----------
    step : int
        The first recorded step (counted from the start of this ``run`` call) whose state or
        metrics are not finite.
    agent : int
        The lowest-numbered agent whose state was not finite at ``step`` (``-1`` when only a
        metric was, e.g. an overflowing loss).
    last_finite_step : int
        The last recorded step at which everything was finite (``-1``: none in this call).
    history : dict of numpy arrays
        The records up to and including ``last_finite_step``.
    """

    def __init__(self, message: str, *, step: int, agent: int, last_finite_step: int,
                 history: dict):
        super().__init__(message)
        self.step = step
        self.agent = agent
        self.last_finite_step = last_finite_step
        self.history = history


class CallbackError(RuntimeError):
    """A user callback (``on_segment``) raised on at least one agent / rank.

    Raised on **every** rank after the callback phase, naming the failing rank(s) and their
    errors, so that no rank is left waiting in the next exchange. ``failures`` is a list of
    ``(rank, "ExceptionType: message")``.
    """

    def __init__(self, message: str, failures: list):
        super().__init__(message)
        self.failures = failures
