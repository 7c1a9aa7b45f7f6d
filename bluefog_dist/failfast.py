"""End the whole MPI job when one rank dies of an uncaught exception.

Without this, a rank that raises after start-up (a full disk while writing, a bug in a
callback, a ``KeyboardInterrupt``) exits while the other ranks wait in their next exchange
forever: MPI has no failure detection by default. :func:`install` replaces
:data:`sys.excepthook` and :data:`threading.excepthook` so that an uncaught exception, in
the main thread or in any other thread of the rank (a data loader, a progress or heartbeat
thread, a callback run by a pool), prints its traceback once, prefixed with the rank and the
thread, and then calls ``MPI_Abort`` on ``COMM_WORLD``, which ends every rank of the job
(``mpiexec`` reports the failing rank and exits non-zero). The MPI standard's ``MPI_ABORT``
makes "a best attempt to abort all tasks in the group of ``comm``"; with MPICH's Hydra every
process of the job is ended.

A ``SystemExit`` in a non-main thread only ends that thread (Python's own rule), so it is
left to the previous :data:`threading.excepthook`.

Errors that every rank raises together (start-up agreement, non-finite runs, callback
failures: see :mod:`bluefog.engine`) are caught by the program as usual; the hook only acts
on exceptions that reach the top level.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

__all__ = ["ABORT_GRACE_S", "abort_job", "install", "installed"]

#: Seconds between writing the diagnostic and calling ``MPI_Abort``. MPICH's Hydra ends the
#: processes and their proxies on an abort and drops the output it has not yet forwarded to
#: ``mpiexec``: a test once received the failing rank's traceback cut off mid-line and no
#: diagnostic at all. The pause only costs time on a job that is ending anyway.
ABORT_GRACE_S = 1.0

_STATE = {"previous": None, "previous_thread": None}


def installed() -> bool:
    """Whether :func:`install` has replaced :data:`sys.excepthook` in this process."""
    return _STATE["previous"] is not None


def abort_job(message: str, code: int = 1) -> None:
    """Write ``message`` to this rank's standard error, then end every rank of the job.

    ``MPI_Abort(MPI_COMM_WORLD, code)`` makes "a best attempt to abort all tasks in the group
    of comm" (MPI 4.0 standard, section 11.2) and never returns. Before it, the message goes
    straight to file descriptor 2 (after flushing :data:`sys.stderr`, so earlier output keeps
    its order) and the rank waits :data:`ABORT_GRACE_S` seconds, so that the launcher
    forwards the text before it tears the job down.

    Parameters
    ----------
    message : str
        Diagnostic for the user; a newline is appended when missing.
    code : int
        Exit status passed to ``MPI_Abort`` (``mpiexec`` reports it).
    """
    if not isinstance(message, str):
        raise TypeError(f"abort_job: message must be a str; got {type(message).__name__}. "
                        "Pass the diagnostic text.")
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"abort_job: code must be an int exit status; got {code!r}.")
    from mpi4py import MPI

    sys.stderr.flush()
    os.write(2, (message if message.endswith("\n") else message + "\n").encode())
    time.sleep(ABORT_GRACE_S)
    MPI.COMM_WORLD.Abort(code)


def _abort(text: str, code: int, where: str) -> None:
    from mpi4py import MPI

    if MPI.Is_finalized():  # at interpreter exit, after MPI_Finalize: nobody is waiting
        sys.stderr.write(f"[bluefog] uncaught exception{where} after MPI_Finalize:\n{text}")
        return
    world = MPI.COMM_WORLD
    abort_job(f"[bluefog rank {world.Get_rank()}/{world.Get_size()}] uncaught "
              f"exception{where}; aborting the whole MPI job so no rank waits forever:\n{text}",
              code)


def _exit_code(exc) -> int:
    if not isinstance(exc, SystemExit) or exc.code is None:
        return 1
    return exc.code if isinstance(exc.code, int) and exc.code else 1


def _hook(exc_type, exc, tb):
    _abort("".join(traceback.format_exception(exc_type, exc, tb)), _exit_code(exc), "")


def _thread_hook(args) -> None:
    """:data:`threading.excepthook`: abort the job unless the thread ended by ``SystemExit``."""
    if issubclass(args.exc_type, SystemExit):
        _STATE["previous_thread"](args)
        return
    name = args.thread.name if args.thread is not None else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    _abort(text, 1, f" in thread {name!r}")


def install() -> None:
    """Abort the MPI job on an uncaught exception in any thread (idempotent; a no-op at world
    size 1, where there is nobody to leave waiting)."""
    from mpi4py import MPI

    if installed() or MPI.COMM_WORLD.Get_size() == 1:
        return
    _STATE["previous"], _STATE["previous_thread"] = sys.excepthook, threading.excepthook
    sys.excepthook = _hook
    threading.excepthook = _thread_hook
