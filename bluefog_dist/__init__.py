"""bluefog_dist: the MPI backend (mpi4jax), one agent or a block of agents per rank.

``MpiComm`` implements the Communicator protocol with mpi4jax on a clone of
``COMM_WORLD``; ``run`` has the shape of :func:`bluefog_sim.run`; ``bfrun`` (the
:mod:`bluefog_dist.launcher`) launches a script under the installed ``mpiexec``;
``MpiWindows`` gives real one-sided MPI windows (``MPI.Win``) with Bluefog's semantics.
Names are imported lazily so that ``bfrun`` starts without importing JAX or MPI.
"""

from importlib import import_module

__all__ = ["MpiComm", "BlockComm", "run", "default_comm", "AgreementError", "agree", "Timeline",
           "MpiWindows"]

_WHERE = {
    "MpiComm": ".comm",
    "BlockComm": ".block_comm",
    "run": ".runner",
    "default_comm": ".runner",
    "AgreementError": ".agreement",
    "agree": ".agreement",
    "Timeline": ".timeline",
    "MpiWindows": ".windows",
    "local_rank": ".environment",
    "local_size": ".environment",
}


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'bluefog_dist' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
