r"""The reading side of the window ops: ``win_update``, versions and slot maps.

These functions are methods of :class:`bluefog.comm.window.WindowOps` (``self`` is the
communicator); see :mod:`bluefog.comm.window` for the semantics of all window ops.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..validation import check_bool
from . import window_weights as ww
from .window_state import WindowInfo, deliver

__all__ = ["win_update", "win_update_then_collect", "win_info", "win_in_neighbors",
           "win_out_neighbors"]


def _self_table(self, self_weight, win, dtype, op):
    if self_weight is None:  # topology default: W_ii
        return self._table(np.diag(np.asarray(win.topology.weights)), dtype)
    if isinstance(self_weight, bool):
        raise TypeError(f"{op}: self_weight must be a float or a traced scalar; got "
                        f"{self_weight!r}.")
    if isinstance(self_weight, (int, float, np.integer, np.floating)):
        if not np.isfinite(self_weight):
            raise ValueError(f"{op}: self_weight must be finite; got {self_weight}.")
        return jnp.asarray(float(self_weight), dtype)
    if isinstance(self_weight, np.ndarray) and self_weight.shape == (self.size,):
        return self._table(self_weight, dtype)
    if isinstance(self_weight, jax.Array) and self_weight.shape == ():
        return self_weight.astype(dtype)
    raise TypeError(f"{op}: self_weight must be a float, an ({self.size},) NumPy array (one per "
                    f"agent) or a traced scalar; got {type(self_weight).__name__} of shape "
                    f"{np.shape(self_weight)}.")


def win_update(self, windows, name: str, self_weight=None, neighbor_weights=None,
               reset: bool = False):
    r"""Combine this agent's window value with its neighbour slots, Bluefog ``bf.win_update``.

    .. math:: v_i \leftarrow a_{ii}\, v_i + \sum_{r} a_{i\sigma_r(i)}\, b_{i\sigma_r(i)}

    after delivering every message that has arrived. Both weights omitted: the window
    topology's row, :math:`a_{ij} = W_{ij}` (Bluefog's weighted default). Otherwise both must
    be given (Bluefog's rule): ``self_weight`` a float, an ``(n,)`` NumPy array or a traced
    scalar; ``neighbor_weights`` an ``(n, n)`` NumPy matrix ``A[i, j]`` (zero off the edges)
    or a traced ``(R,)`` per-slot array. ``reset=True`` zeroes the slots read (nonzero
    weight). The versions of the slots read drop to 0.

    Returns
    -------
    (value, windows)
        The combined value (also stored as this agent's window value) and the new dict.
    """
    op = "win_update"
    win = ww.lookup(windows, name, op)
    check_bool(reset, "reset", where=op)
    if (self_weight is None) != (neighbor_weights is None):
        raise ValueError(f"{op}: pass self_weight and neighbor_weights together (Bluefog's "
                         "rule), or neither for the topology's weights; got only one.")
    clock = self._win_clock()
    win = deliver(win, jnp.asarray(clock.now, win.arrived.dtype))
    leaves = jax.tree_util.tree_leaves(win.value)
    dtype = leaves[0].dtype
    if neighbor_weights is None:
        nbr = ww.slot_table(self, ("matrix", np.asarray(win.topology.weights)), win.topology,
                            dtype)
    else:
        spec = ww.weight_spec(neighbor_weights, win.topology, "neighbor_weights", op,
                              rounds=win.topology.schedule.num_rounds)
        nbr = ww.slot_table(self, spec, win.topology, dtype)
    sw = _self_table(self, self_weight, win, dtype, op)
    bufs = jax.tree_util.tree_leaves(win.buffers)
    out = [sw.astype(v.dtype) * v + jnp.tensordot(nbr.astype(b.dtype), b, axes=1)
           for v, b in zip(leaves, bufs)]
    active = jnp.asarray(clock.active, bool)
    read = active & (nbr != 0)
    if reset:
        bufs = [jnp.where(read.reshape((-1,) + (1,) * (b.ndim - 1)), jnp.zeros_like(b), b)
                for b in bufs]
    treedef = jax.tree_util.tree_structure(win.value)
    value = [jnp.where(active, o, v) for o, v in zip(out, leaves)]
    win = win.replace(
        value=jax.tree_util.tree_unflatten(treedef, value),
        buffers=jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(win.buffers), bufs),
        versions=jnp.where(read, 0, win.versions))
    return jax.tree_util.tree_unflatten(treedef, out), {**windows, name: win}


def win_update_then_collect(self, windows, name: str):
    r"""Bluefog ``bf.win_update_then_collect``: :math:`v_i \leftarrow v_i + \sum_j b_{ij}`
    over the real in-edges, then the slots are zeroed (``win_update`` with weights 1 and
    ``reset=True``). Returns ``(value, windows)``."""
    win = ww.lookup(windows, name, "win_update_then_collect")
    ones = ww.slot_table(self, ("ones",), win.topology, jnp.result_type(
        *jax.tree_util.tree_leaves(win.value)))
    return win_update(self, windows, name, 1.0, ones, reset=True)


def win_info(self, windows, name: str) -> WindowInfo:
    """Freshness of every slot of window ``name`` after delivering what has arrived
    (Bluefog ``bf.get_win_version`` plus stamps, arrival times and in-flight counts)."""
    win = ww.lookup(windows, name, "win_info")
    win = deliver(win, jnp.asarray(self._win_clock().now, win.arrived.dtype))
    in_flight = jnp.sum(win.p_used, axis=1).astype(jnp.int32)
    return WindowInfo(win_in_neighbors(self, windows, name), win.versions, win.stamps,
                      win.arrived, in_flight)


def _neighbor_table(self, win, which: str):
    rounds = win.topology.schedule.rounds
    if not rounds:
        return jnp.zeros((0,), jnp.int32)
    cols = []
    for rnd in rounds:
        peer = rnd.sources if which == "in" else rnd.destinations
        active = rnd.active if which == "in" else rnd.active[rnd.destinations]
        cols.append(np.where(active, peer, -1))
    return self._table(np.stack(cols, axis=1).astype(np.int32), jnp.int32)


def win_in_neighbors(self, windows, name: str):
    """This agent's in-neighbour per slot of window ``name`` (int32 ``(R,)``, ``-1`` for a
    padding slot)."""
    return _neighbor_table(self, ww.lookup(windows, name, "win_in_neighbors"), "in")


def win_out_neighbors(self, windows, name: str):
    """This agent's destination per schedule round of window ``name`` (int32 ``(R,)``,
    ``-1`` where the round carries no edge from this agent): entry ``r`` of a per-round
    ``dst_weights`` array weights the message to ``win_out_neighbors(...)[r]``."""
    return _neighbor_table(self, ww.lookup(windows, name, "win_out_neighbors"), "out")
