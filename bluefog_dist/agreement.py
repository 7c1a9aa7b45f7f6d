"""Start-up agreement: every rank checks, with ONE collective, that all ranks run the same job.

Bluefog users hit silent hangs when ranks disagreed on the topology (Bluefog issue #90). Here
each rank reduces its configuration to a list of named fields, each summarised by a short
digest plus a human-readable description, and the ranks exchange these with one
``allgather``. Any local validation error is exchanged in the same message instead of being
raised on its own (a rank that raised alone would leave the others blocked in the
collective). Afterwards every rank holds the same information and raises the same
:class:`AgreementError`, naming the first differing rank and every differing field, so a bad
configuration fails everywhere at once instead of deadlocking.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable

import jax
import numpy as np

from bluefog.engine.inputs import describe_tree  # noqa: F401  (re-exported; one definition)

__all__ = ["AgreementError", "agree", "describe_tree", "fingerprint_value"]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")  # object addresses differ between processes


class AgreementError(ValueError):
    """Ranks disagree on the configuration of a run (raised on every rank)."""


def fingerprint_value(value: Any) -> str:
    """A stable digest of ``value``: arrays by shape, dtype and bytes, containers
    recursively, callables by qualified name, anything else by ``repr`` with object
    addresses masked (they differ between processes)."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, (np.ndarray, jax.Array, np.generic)):
            a = np.asarray(v)
            h.update(f"array{a.shape}{a.dtype}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=repr):
                h.update(repr(k).encode())
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(f"{type(v).__name__}[".encode())
            for item in v:
                feed(item)
            h.update(b"]")
        elif callable(v):
            h.update(f"callable:{getattr(v, '__module__', '')}."
                     f"{getattr(v, '__qualname__', type(v).__qualname__)}".encode())
        else:
            h.update(_ADDRESS.sub("0x?", repr(v)).encode())

    feed(value)
    return h.hexdigest()[:16]


def _short(text: str, limit: int = 120) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def agree(comm, fields: Callable[[], dict] | dict, *, what: str = "run") -> None:
    """Check that ``fields`` are equal on every rank of ``comm`` (one ``allgather``).

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
    fields : dict ``{name: value}`` or a callable returning one
        Values are compared through :func:`fingerprint_value`; a callable is evaluated inside
        a ``try`` so that any exception it raises is shared with the other ranks (which would
        otherwise wait in the collective) and an :class:`AgreementError` is raised on all of
        them (chained to the original exception on the rank where it happened).
    what : str
        Used in the error message (``"bluefog_dist.run"``).

    Raises
    ------
    AgreementError
        On every rank, if any rank failed to build its fields or any field differs from
        rank 0's. The message names the ranks and fields and shows both values.
    """
    error = None
    summary: dict = {}
    try:
        values = fields() if callable(fields) else fields
        for name, value in values.items():
            summary[name] = (fingerprint_value(value), _short(
                value if isinstance(value, str) else json.dumps(value, default=repr)
                if isinstance(value, (dict, list, tuple, int, float, bool)) or value is None
                else _ADDRESS.sub("0x?", repr(value))))
    except Exception as err:  # noqa: BLE001 - shared with the other ranks, then re-raised
        error, local = f"{type(err).__name__}: {err}", err
    else:
        local = None
    gathered = comm.allgather((error, summary))
    failed = [(r, e) for r, (e, _) in enumerate(gathered) if e is not None]
    if failed:
        ranks = ", ".join(str(r) for r, _ in failed)
        raise AgreementError(
            f"{what}: start-up check failed on rank(s) {ranks}: "
            + "; ".join(f"rank {r}: {e}" for r, e in failed)) from local
    reference = gathered[0][1]
    for r, (_, mine) in enumerate(gathered[1:], start=1):
        names = sorted(set(reference) | set(mine))
        diff = [k for k in names if reference.get(k, (None,))[0] != mine.get(k, (None,))[0]]
        if diff:
            details = "; ".join(
                f"field {k!r}: rank 0 has {reference.get(k, ('', '<missing>'))[1]}, "
                f"rank {r} has {mine.get(k, ('', '<missing>'))[1]}" for k in diff)
            raise AgreementError(
                f"{what}: ranks disagree on the configuration (first differing rank: {r}); "
                f"{details}. Every rank must build the same topology, algorithm, problem and "
                "run arguments (derive rank-dependent values inside the algorithm from "
                "comm.rank(), not from the script).")
