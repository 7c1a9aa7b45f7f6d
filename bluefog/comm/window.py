r"""One-sided window ops with Bluefog's semantics, written once for every backend.

Bluefog's window ops (``bf.win_create``, ``bf.win_put``, ``bf.win_accumulate``,
``bf.win_get``, ``bf.win_update``, ``bf.win_free``, ``bf.get_win_version``) let an agent write
into its neighbours' memory without them taking part, which is what asynchronous methods
need. Here the window memory is explicit data, a ``dict`` ``{name: Window}``
(:class:`bluefog.comm.window_state.Window`) kept in the algorithm's state: every op takes the
dict and returns a new one, so an algorithm stays pure and jittable.

Write ``x^{(j\to i)}`` for the message agent ``j`` sends to agent ``i`` and ``b_{ij}`` for
agent ``i``'s buffer (slot) of in-neighbour ``j``; with weights ``d_{ij}`` (``dst_weights``),
``s_{ij}`` (``src_weights``), ``a_{ij}`` (``neighbor_weights``) and ``a_{ii}`` (``self_weight``):

=======================  ==============================================================
``win_put``              :math:`b_{ij} \leftarrow d_{ij}\,x_j` on delivery (overwrite)
``win_accumulate``       :math:`b_{ij} \leftarrow b_{ij} + d_{ij}\,x_j` on delivery (sum)
``win_get``              :math:`b_{ij} \leftarrow s_{ij}\,v_j` (``v_j``: ``j``'s window value)
``win_update``           :math:`v_i \leftarrow a_{ii} v_i + \sum_j a_{ij} b_{ij}`; returns it;
                         ``reset=True`` zeroes the buffers read
=======================  ==============================================================

When a message is *delivered* is the clock's business (:class:`~.window_state.Clock`). The
plain backends use the immediate clock: every message is delivered during the op, so a window
algorithm is an ordinary synchronous method (``win_accumulate`` then ``win_update_then_collect``
with column-stochastic weights is one push-sum step, :math:`X^{+} = W X`). The virtual-time
simulator (:mod:`bluefog.asynchrony`) gives each agent its own completion times and each edge
a latency: messages arrive later and are delivered by the first op after their arrival.

References
----------
Bluefog ``bluefog/torch/mpi_ops.py`` (``win_create`` ... ``get_win_version``); B. Ying et al.,
"BlueFog: make decentralized algorithms practical for optimization and deep learning",
arXiv:2111.04287 (2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..topology import Topology
from ..validation import check_bool
from . import window_weights as ww
from .leaves import float_leaves
from .window_state import (ACCUMULATE, IMMEDIATE, PUT, Window, WindowInfo, deliver,
                           time_dtype)

__all__ = ["WindowOps"]


def _bc(mask, leaf):
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


def _latency_table(comm, clock, rnd, dtype):
    if clock.latency is None:
        return jnp.zeros((), dtype)
    lat = np.asarray(clock.latency)[np.arange(comm.size), rnd.sources]
    return comm._table(lat, dtype)


def _arrival(comm, clock, win, r, rnd, stamp, tdt):
    """Arrival time of this round's message: ``now + latency``, or in replay mode the
    recorded one, looked up by the sender's stamp (past the table: never)."""
    table = None if clock.arrivals is None else clock.arrivals.get(win.name)
    if table is None:
        return jnp.asarray(clock.now, tdt) + _latency_table(comm, clock, rnd, tdt)
    row = comm._table(np.asarray(table)[:, r], tdt)                      # (M,)
    return row[jnp.clip(stamp, 0, row.shape[0] - 1)]


def _receive(comm, clock, win, leaves, send_scale, recv_scale, sender_initiates):
    """Exchange over every round: ``(msgs (R, *s) per leaf, real (R,), arrival, stamp)``."""
    tdt = win.arrived.dtype
    me = jnp.asarray(clock.active, bool)
    meta = jnp.stack([me.astype(jnp.int32), jnp.asarray(win.sent, jnp.int32)])
    msgs, real, arrival, stamp = [[] for _ in leaves], [], [], []
    for r, rnd in enumerate(win.topology.schedule.rounds):
        payload = [leaf * send_scale[r].astype(leaf.dtype) for leaf in leaves]
        got = comm._exchange(payload + [meta], rnd)
        valid = (got[-1][0] > 0) if sender_initiates else me
        real.append(comm._table(rnd.active, jnp.bool_) & valid)
        for slot, m in zip(msgs, got[:-1]):
            slot.append(m * recv_scale[r].astype(m.dtype))
        stamp.append(got[-1][1])
        arrival.append(_arrival(comm, clock, win, r, rnd, stamp[-1], tdt))
    return ([jnp.stack(m) for m in msgs], jnp.stack(real), jnp.stack(arrival),
            jnp.stack(stamp))


def _enqueue(win, msgs, enq, arrival, stamp, kind):
    """Put the messages of slots ``enq`` into the first free place of their queue."""
    free = ~win.p_used                                                 # (R, K)
    has_free = jnp.any(free, axis=1)
    k = jnp.argmax(free, axis=1)
    onehot = (enq & has_free)[:, None] & (jnp.arange(win.capacity)[None, :] == k[:, None])
    seq = jnp.max(jnp.where(free, -1, win.p_seq), axis=1) + 1           # FIFO within a slot
    pending = [jnp.where(_bc(onehot, p), m[:, None], p)
               for p, m in zip(jax.tree_util.tree_leaves(win.pending), msgs)]
    return win.replace(
        pending=jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(win.pending), pending),
        p_used=win.p_used | onehot,
        p_arrival=jnp.where(onehot, arrival[:, None], win.p_arrival),
        p_seq=jnp.where(onehot, seq[:, None], win.p_seq),
        p_kind=jnp.where(onehot, kind, win.p_kind),
        p_stamp=jnp.where(onehot, stamp[:, None], win.p_stamp),
        overflow=win.overflow + jnp.sum(enq & ~has_free).astype(jnp.int32))


def _transfer(comm, clock, win, leaves, kind, send_scale, recv_scale, sender_initiates):
    """Send ``leaves`` along every edge of the window; deliver now or enqueue."""
    msgs, real, arrival, stamp = _receive(comm, clock, win, leaves, send_scale, recv_scale,
                                          sender_initiates)
    now = jnp.asarray(clock.now, win.arrived.dtype)
    imm = real & (arrival <= now)
    bufs = jax.tree_util.tree_leaves(win.buffers)
    new = [jnp.where(_bc(imm, b), m if kind == PUT else b + m, b) for b, m in zip(bufs, msgs)]
    win = win.replace(
        buffers=jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(win.buffers), new),
        versions=win.versions + imm.astype(jnp.int32),
        stamps=jnp.where(imm, stamp, win.stamps),
        arrived=jnp.where(imm, arrival, win.arrived))
    if win.capacity:
        win = _enqueue(win, msgs, real & ~imm, arrival, stamp, kind)
    else:  # immediate clock: a message that cannot be delivered now has nowhere to go
        win = win.replace(overflow=win.overflow + jnp.sum(real & ~imm).astype(jnp.int32))
    return win


def _set_value(win, leaves, active, scale=None):
    old = jax.tree_util.tree_leaves(win.value)
    new = [jnp.where(active, v if scale is None else v * jnp.asarray(scale, v.dtype), o)
           for v, o in zip(leaves, old)]
    return win.replace(value=jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(win.value), new))


class WindowOps:
    """The window ops of the Communicator protocol (mixed into
    :class:`~bluefog.comm.ScheduleCommunicator`); see the module docstring for the math.

    The clock comes from :meth:`_win_clock`: the immediate clock here; the virtual-time
    simulator's view (:class:`bluefog.comm.window_clock.ClockedComm`) overrides it.
    """

    def _win_clock(self):
        return IMMEDIATE

    def _rounds(self, win):
        return win.topology.schedule.num_rounds

    def win_create(self, windows, x, name: str, topology, zero_init: bool = False) -> dict:
        """Register ``x`` as window ``name`` over the in-edges of ``topology``.

        Bluefog ``bf.win_create(tensor, name, zero_init)``: the neighbour buffers start as a
        copy of ``x`` (or zeros with ``zero_init=True``); versions 0; nothing in flight.

        Parameters
        ----------
        windows : dict or None
            The windows of this agent so far (``None``: none).
        x : pytree of floating arrays
        name : str, not already in ``windows``
        topology : Topology (static) of ``size`` agents; its edges are the window's slots.
        zero_init : bool

        Returns
        -------
        dict ``{name: Window}`` with the new window added.
        """
        op = "win_create"
        windows = dict(ww.check_windows(windows, op, allow_none=True))
        name = ww.check_name(name, op)
        if name in windows:
            raise ValueError(f"{op}: a window named {name!r} exists already; win_free it first "
                             "or choose another name.")
        if not isinstance(topology, Topology):
            raise TypeError(f"{op}: topology must be a static bluefog.topology.Topology (a "
                            "window's slots are its in-edges); got "
                            f"{type(topology).__name__}.")
        if topology.size != self.size:
            raise ValueError(f"{op}: topology.size must equal the number of agents "
                             f"({self.size}); got {topology.size}.")
        check_bool(zero_init, "zero_init", where=op)
        leaves, treedef = float_leaves(x, op)
        clock = self._win_clock()
        R, K, tdt = topology.schedule.num_rounds, clock.capacity, time_dtype()
        init = (lambda v: jnp.zeros_like(v)) if zero_init else (lambda v: v)
        tree = lambda f: jax.tree_util.tree_unflatten(treedef, [f(v) for v in leaves])  # noqa
        windows[name] = Window(
            value=tree(lambda v: v),
            buffers=tree(lambda v: jnp.broadcast_to(init(v), (R,) + v.shape)),
            versions=jnp.zeros((R,), jnp.int32), stamps=jnp.full((R,), -1, jnp.int32),
            arrived=jnp.zeros((R,), tdt), sent=jnp.zeros((), jnp.int32),
            pending=tree(lambda v: jnp.zeros((R, K) + v.shape, v.dtype)),
            p_used=jnp.zeros((R, K), bool), p_arrival=jnp.zeros((R, K), tdt), p_seq=jnp.zeros((R, K), jnp.int32),
            p_kind=jnp.zeros((R, K), jnp.int32), p_stamp=jnp.zeros((R, K), jnp.int32),
            overflow=jnp.zeros((), jnp.int32), name=name, topology=topology, capacity=K)
        return windows

    def win_free(self, windows, name: str | None = None) -> dict:
        """Drop window ``name`` (``None``: every window), Bluefog ``bf.win_free``.

        Messages still in flight to a freed window are discarded with it; drain first
        (:func:`bluefog.asynchrony.drain`) to keep them."""
        if name is None:
            ww.check_windows(windows, "win_free")
            return {}
        ww.lookup(windows, name, "win_free")
        return {k: v for k, v in windows.items() if k != name}

    def _send(self, windows, x, name, dst_weights, self_weight, kind, op):
        win = ww.lookup(windows, name, op)
        leaves = ww.check_matches(x, win, op)
        clock = self._win_clock()
        win = deliver(win, jnp.asarray(clock.now, win.arrived.dtype))
        spec = ww.weight_spec(dst_weights, win.topology, "dst_weights", op,
                              rounds=self._rounds(win))
        ones = jnp.ones((self._rounds(win),), leaves[0].dtype)
        if spec[0] == "rounds":
            send, recv = spec[1], ones
        else:
            send, recv = ones, ww.slot_table(self, spec, win.topology, leaves[0].dtype)
        win = _transfer(self, clock, win, leaves, kind, send, recv, sender_initiates=True)
        active = jnp.asarray(clock.active, bool)
        win = _set_value(win, leaves, active, self_weight)
        win = win.replace(sent=win.sent + active.astype(jnp.int32))
        return {**windows, name: win}

    def win_put(self, windows, x, name: str, dst_weights=None, self_weight=None) -> dict:
        r"""Write ``x`` into the out-neighbours' slots of window ``name`` (overwrite).

        Bluefog ``bf.win_put(tensor, name, self_weight, dst_weights)``: out-neighbour ``i``'s
        slot for this agent ``j`` becomes :math:`d_{ij} x` when the message is delivered; this
        agent's window value becomes ``self_weight * x`` (default ``x``).

        ``dst_weights``: ``None`` (1 on every out-edge), a float, an ``(n, n)`` NumPy matrix
        ``D`` (``D[i, j]``: weight of ``j``'s message to ``i``; zero off the window's edges) or
        a traced array of shape ``(R,)``: this agent's weight per schedule round (its
        destination in round ``r`` is ``win_out_neighbors(...)[r]``).
        """
        return self._send(windows, x, name, dst_weights, self_weight, PUT, "win_put")

    def win_accumulate(self, windows, x, name: str, dst_weights=None, self_weight=None) -> dict:
        r"""Add ``x`` into the out-neighbours' slots of window ``name``.

        Bluefog ``bf.win_accumulate(tensor, name, self_weight, dst_weights)`` (SUM): slot
        :math:`b_{ij} \leftarrow b_{ij} + d_{ij}x` on delivery; this agent's window value
        becomes ``self_weight * x`` (default ``x``). Messages in flight are never lost: each
        is added exactly once, when it arrives. Weights as in :meth:`win_put`.
        """
        return self._send(windows, x, name, dst_weights, self_weight, ACCUMULATE,
                          "win_accumulate")

    def win_get(self, windows, name: str, src_weights=None) -> dict:
        r"""Fetch the in-neighbours' window values into this agent's slots (overwrite).

        Bluefog ``bf.win_get(name, src_weights)``: :math:`b_{ij} \leftarrow s_{ij} v_j`, with
        :math:`v_j` neighbour ``j``'s window value at the time of the call; under a clock
        with latency the value arrives ``latency[i, j]`` later. ``src_weights``: ``None``
        (1), a float, an ``(n, n)`` matrix ``S[i, j]`` or a traced ``(R,)`` per-slot array.
        """
        op = "win_get"
        win = ww.lookup(windows, name, op)
        clock = self._win_clock()
        if clock.arrivals is not None and name in clock.arrivals:
            raise ValueError(f"{op}: replay of win_get (which version of a neighbour's value "
                             f"was read) is not supported; window {name!r} is replayed from a "
                             "trace. Replay algorithms that use win_put/win_accumulate only.")
        win = deliver(win, jnp.asarray(clock.now, win.arrived.dtype))
        leaves = jax.tree_util.tree_leaves(win.value)
        spec = ww.weight_spec(src_weights, win.topology, "src_weights", op,
                              rounds=self._rounds(win))
        ones = jnp.ones((self._rounds(win),), leaves[0].dtype)
        recv = ww.slot_table(self, spec, win.topology, leaves[0].dtype)
        win = _transfer(self, clock, win, leaves, PUT, ones, recv, sender_initiates=False)
        return {**windows, name: win}

    from .window_update import win_update, win_update_then_collect, win_info  # noqa: E402
    from .window_update import win_in_neighbors, win_out_neighbors  # noqa: E402
    from .window_async import (win_accumulate_nonblocking, win_get_nonblocking,  # noqa: E402
                               win_poll, win_put_nonblocking, win_wait)
