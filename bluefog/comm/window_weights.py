"""Checks and per-slot tables for the weights of the window ops (plain Python / NumPy).

Every weight argument of a window op becomes, for this agent, one number per schedule round
(slot) of the window's topology; padding slots (no edge) always get weight 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_windows", "check_name", "lookup", "check_matches", "slot_table",
           "weight_spec"]


def check_windows(windows, op: str, *, allow_none: bool = False) -> dict:
    """The ``{name: Window}`` dict of the state (``None`` allowed for ``win_create``)."""
    if windows is None and allow_none:
        return {}
    if not isinstance(windows, dict):
        raise TypeError(
            f"{op}: windows must be the dict {{name: Window}} returned by win_create (kept in "
            f"the algorithm state); got {type(windows).__name__}. Start with windows = "
            "comm.win_create(None, x, 'x', topology).")
    return windows


def check_name(name, op: str) -> str:
    """A window name: a non-empty ``str``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"{op}: name must be a non-empty str naming the window; got {name!r}. "
                        "Pass e.g. name='x'.")
    return name


def lookup(windows, name, op: str):
    """``windows[name]``, or a ValueError listing the windows that exist."""
    windows = check_windows(windows, op)
    name = check_name(name, op)
    if name not in windows:
        raise ValueError(
            f"{op}: no window named {name!r}; the windows that exist are {sorted(windows)}. "
            f"Create it first: windows = comm.win_create(windows, x, {name!r}, topology) (in "
            "init), and keep the returned dict in the algorithm state.")
    return windows[name]


def check_matches(x, win, op: str) -> list:
    """The leaves of ``x``, which must have the structure, shapes and dtypes of the window."""
    leaves, treedef = jax.tree_util.tree_flatten(x)
    want_leaves, want_def = jax.tree_util.tree_flatten(win.value)
    if treedef != want_def:
        raise ValueError(f"{op}: x must have the structure of window {win.name!r} ({want_def}); "
                         f"got {treedef}. Pass a value shaped like the one given to win_create.")
    out = []
    for got, want in zip(leaves, want_leaves):
        got = jnp.asarray(got)
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(
                f"{op}: x must match window {win.name!r} leaf by leaf (shape {want.shape}, dtype "
                f"{want.dtype}); got shape {got.shape}, dtype {got.dtype}. Cast or reshape x, or "
                "create another window for it.")
        out.append(got)
    return out


def _edge_matrix(topology) -> np.ndarray:
    w = np.asarray(topology.weights)
    edges = w != 0
    np.fill_diagonal(edges, False)
    return edges


def _check_matrix(m, topology, arg: str, op: str) -> np.ndarray:
    n = topology.size
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (n, n):
        raise ValueError(f"{op}: {arg} as a matrix must have shape ({n}, {n}) (entry [i, j]: the "
                         f"weight of the message from j to i); got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{op}: {arg} must be finite; got NaN or inf.")
    off = m.copy()
    np.fill_diagonal(off, 0.0)
    bad = np.argwhere((off != 0) & ~_edge_matrix(topology))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise ValueError(
            f"{op}: {arg}[{i}, {j}] = {off[i, j]} but the window's topology "
            f"{topology.name!r} has no edge {j} -> {i}; a window only carries messages along "
            "its topology's edges. Zero that entry or create the window on a topology with it.")
    return off


def weight_spec(value, topology, arg: str, op: str, *, rounds: int):
    """Canonical form of a weight argument: ``("ones",)``, ``("scalar", s)``,
    ``("matrix", M)`` (receiver-side ``M[i, j]``) or ``("rounds", v)`` (this agent's traced
    per-slot array of shape ``(rounds,)``)."""
    if value is None:
        return ("ones",)
    if isinstance(value, bool):
        raise TypeError(f"{op}: {arg} must be None, a float, an (n, n) matrix or a ({rounds},) "
                        f"array; got {value!r}.")
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not np.isfinite(value):
            raise ValueError(f"{op}: {arg} must be finite; got {value}.")
        return ("scalar", float(value))
    if isinstance(value, jax.Array) or (isinstance(value, np.ndarray) and value.ndim == 1):
        if tuple(np.shape(value)) != (rounds,):
            raise ValueError(
                f"{op}: {arg} as a per-slot array must have shape ({rounds},) (one weight per "
                f"schedule round of the window's topology); got shape {np.shape(value)}. Pass "
                f"an ({topology.size}, {topology.size}) NumPy matrix for per-edge weights.")
        return ("rounds", jnp.asarray(value))
    if isinstance(value, np.ndarray):
        return ("matrix", _check_matrix(value, topology, arg, op))
    raise TypeError(f"{op}: {arg} must be None, a float, an (n, n) NumPy matrix or a "
                    f"({rounds},) array; got {type(value).__name__}.")


def slot_table(comm, spec, topology, dtype):
    """This agent's receiver-side weight per slot, ``(R,)``, zero on padding slots."""
    rounds = topology.schedule.rounds
    if spec[0] == "rounds":
        if not rounds:
            return spec[1].astype(dtype)
        real = comm._table(np.stack([r.active for r in rounds], axis=1), dtype)
        return spec[1].astype(dtype) * real
    cols = []
    for rnd in rounds:
        if spec[0] == "ones":
            vals = rnd.active.astype(np.float64)
        elif spec[0] == "scalar":
            vals = rnd.active * spec[1]
        else:
            vals = spec[1][np.arange(topology.size), rnd.sources] * rnd.active
        cols.append(vals)
    if not cols:
        return jnp.zeros((0,), dtype)
    return comm._table(np.stack(cols, axis=1), dtype)  # (n, R) looked up by rank
