"""The engine: one loop for every backend.

:func:`execute` validates a run's inputs once, cuts it into compiled dispatches that depend
only on ``(steps, record_every, segment_every)``, records metrics and a finiteness check
inside the compiled loop, shows progress, and calls ``on_segment`` at segment boundaries with
the same compiled program. A backend contributes only an adapter (:class:`Backend`):
:mod:`bluefog_sim` (``jax.vmap`` over agents) and :mod:`bluefog_dist` (one agent per MPI rank).
"""

from .backend import Backend, first_agent
from .errors import CallbackError, NonFiniteError
from .inputs import NONFINITE_MODES, agent_key
from .loop import execute
from .observers import add_record_listener, record_listener, remove_record_listener
from .plan import Dispatch, plan_run
from .result import RunResult

__all__ = ["execute", "Backend", "RunResult", "NonFiniteError", "CallbackError", "agent_key",
           "plan_run", "Dispatch", "NONFINITE_MODES", "record_listener", "add_record_listener",
           "remove_record_listener", "first_agent"]
