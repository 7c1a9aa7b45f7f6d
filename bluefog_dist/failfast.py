"""End the whole MPI job when one rank dies of an uncaught exception.

Without this, a rank that raises after start-up (a full disk while writing, a bug in a
callback, a ``KeyboardInterrupt``) exits while the other ranks wait in their next exchange
forever: MPI has no failure detection by default. :func:`install` replaces
:data:`sys.excepthook` so that an uncaught exception prints its traceback once, prefixed
with the rank, and then calls ``MPI_Abort`` on ``COMM_WORLD``, which ends every rank of the
job (``mpiexec`` reports the failing rank and exits non-zero).

Errors that every rank raises together (start-up agreement, non-finite runs, callback
failures: see :mod:`bluefog.engine`) are caught by the program as usual; the hook only acts
on exceptions that reach the top level.
"""

from __future__ import annotations

import sys
import traceback

__all__ = ["install", "installed"]

_STATE = {"previous": None}


def installed() -> bool:
    """Whether :func:`install` has replaced :data:`sys.excepthook` in this process."""
    return _STATE["previous"] is not None


def _hook(exc_type, exc, tb):
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(f"[bluefog rank {world.Get_rank()}/{world.Get_size()}] uncaught "
                     f"exception; aborting the whole MPI job so no rank waits forever:\n{text}")
    sys.stderr.flush()
    world.Abort(1 if not isinstance(exc, SystemExit) or exc.code is None else int(exc.code or 1))


def install() -> None:
    """Abort the MPI job on an uncaught exception (idempotent; a no-op at world size 1,
    where there is nobody to leave waiting)."""
    from mpi4py import MPI

    if installed() or MPI.COMM_WORLD.Get_size() == 1:
        return
    _STATE["previous"] = sys.excepthook
    sys.excepthook = _hook
