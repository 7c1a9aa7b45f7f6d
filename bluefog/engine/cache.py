"""Compiled programs kept across :func:`~bluefog.engine.execute` calls.

A run's programs (initialisation, the initial record, one scan program per dispatch shape,
the final ``params``) are a function of

* the backend's configuration (its ``cache_key``: for the simulator the number of agents,
  the axis name, ``local_size`` and the fault model's structure; under MPI the world size,
  the rank, the block size and the fault model's structure (the fault tables themselves are
  inputs of the programs, :mod:`bluefog.faults`);
  a backend without ``cache_key`` is never cached) and the identity of the objects the
  programs close over that the key cannot compare by value (its ``cache_refs``: under MPI
  the communicator, whose handle is compiled into every ``sendrecv``),
* the *objects* ``algorithm``, ``problem`` and ``metrics`` (by identity: their functions are
  closures, which cannot be compared by value; the cache holds a reference to each, so an
  identity is never reused while its entry lives),
* the topology's fingerprint (equal fingerprints mean equal weights, hence equal programs),
* the non-finite policy and the dispatch shape, and the shapes and dtypes of the inputs.

A second ``run()`` with the same objects and shapes (a sweep over seeds, ``x0`` or
``steps``, or checkpoint segments continued with ``state=``) reuses the jitted functions, so
JAX compiles nothing. The cache is a small LRU (:data:`MAX_ENTRIES` programs); entries keep
their algorithm and problem (and the problem's data) alive until evicted or
:func:`clear_programs` is called.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import jax

__all__ = ["MAX_ENTRIES", "run_key", "cached", "clear_programs"]

#: Programs kept (least recently used evicted first).
MAX_ENTRIES = 32

_PROGRAMS: "OrderedDict[tuple, tuple]" = OrderedDict()


def run_key(backend, algorithm, problem, topology, args) -> tuple | None:
    """The part of a program's key shared by all programs of one run; ``None``: no caching.

    Returns ``(key, refs)``: ``key`` is hashable, ``refs`` the objects whose identity is in it.
    """
    backend_key = getattr(backend, "cache_key", None)
    if backend_key is None:
        return None
    refs = (algorithm, problem, args.metrics, *getattr(backend, "cache_refs", ()))
    key = (backend_key, tuple(id(r) for r in refs), topology.fingerprint, args.on_nonfinite)
    return key, refs


def shapes(tree) -> tuple:
    """Tree structure plus ``(shape, dtype)`` of every leaf: what a compiled program fixes."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(jax.numpy.shape(v)), str(jax.numpy.result_type(v)))
                          for v in leaves)


def cached(run_key_, name: tuple, build: Callable):
    """``build()``'s value, stored under ``(run key, name)``; ``(value, hit)``.

    ``run_key_`` is :func:`run_key`'s answer (``None``: build every time, never store).
    """
    if run_key_ is None:
        return build(), False
    key, refs = run_key_
    full = (key, name)
    entry = _PROGRAMS.get(full)
    if entry is not None and all(a is b for a, b in zip(entry[0], refs)):
        _PROGRAMS.move_to_end(full)
        return entry[1], True
    value = build()
    _PROGRAMS[full] = (refs, value)
    while len(_PROGRAMS) > MAX_ENTRIES:
        _PROGRAMS.popitem(last=False)
    return value, False


def clear_programs() -> None:
    """Forget every cached program (and release the objects the entries hold)."""
    _PROGRAMS.clear()
