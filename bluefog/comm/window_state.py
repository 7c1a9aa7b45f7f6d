r"""The state of one-sided windows, as explicit data, and the arithmetic of message delivery.

A Bluefog window (``bf.win_create``) is memory that neighbours write into without the owner
taking part. Here a window is a value, :class:`Window`, carried in the algorithm's state (a
``dict`` ``{name: Window}``), so an algorithm that uses windows stays a pure, jittable
function: the simulator runs it for all agents under one ``jit(vmap(scan))``.

For agent :math:`i` and a window over a static topology whose schedule has :math:`R` rounds
(round :math:`r` pairs :math:`i` with the in-neighbour :math:`\sigma_r(i)`, see
:mod:`bluefog.topology.schedule`), the window holds

* ``value``: this agent's own tensor :math:`x_i` (what neighbours ``win_get``),
* ``buffers[r]``: the newest value delivered from :math:`\sigma_r(i)` (``win_put`` overwrites,
  ``win_accumulate`` adds),
* per slot: ``versions[r]`` (deliveries since this agent last read the slot with
  ``win_update``, Bluefog's ``get_win_version``), ``stamps[r]`` (the sender's send counter of
  the newest delivered message) and ``arrived[r]`` (its arrival time),
* ``pending``: messages in flight to this agent, ``K = capacity`` per slot, each with a
  used flag, its arrival time, sequence number, kind (put/accumulate) and stamp (every
  field stays finite, so the engine's finiteness check applies to window states too).

A message whose arrival time is not later than the current time is *delivered*: applied to its
slot in send order. Messages that have not arrived stay in ``pending``; none is ever dropped
silently: a full queue increments ``overflow`` (checked by :func:`bluefog.asynchrony.check_windows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Window", "Clock", "WindowInfo", "IMMEDIATE", "PUT", "ACCUMULATE", "time_dtype",
           "deliver", "deliver_all"]

#: Message kinds.
PUT, ACCUMULATE = 0, 1


def time_dtype():
    """The dtype of virtual times: float64 under ``jax_enable_x64``, else float32."""
    return jnp.result_type(float)


class Clock(NamedTuple):
    """When and whether this agent acts, as seen by the window ops.

    Attributes
    ----------
    now : scalar (traced) float
        The current (virtual) time.
    active : scalar (traced) bool
        Whether this agent's step completes now; an inactive agent's own window effects
        (sends, resets, writes of ``value``) are masked, deliveries to it still happen.
    latency : numpy.ndarray (n, n) or None
        ``latency[i, j]``: delay of a message from ``j`` to ``i``; ``None``: zero.
    capacity : int
        In-flight messages per window slot (0: every message is delivered at once).
    arrivals : dict or None
        Replay mode (:mod:`bluefog.asynchrony.replay`): ``{window name: A}`` with
        ``A[i, r, c]`` the arrival time at agent ``i``'s slot ``r`` of its in-neighbour's
        ``c``-th send (its stamp); it replaces ``now + latency`` for those windows.
    """

    now: Any
    active: Any
    latency: Any
    capacity: int
    arrivals: Any = None


#: The synchronous clock: time 0, always active, no latency (plain backends).
IMMEDIATE = Clock(0.0, True, None, 0)


class WindowInfo(NamedTuple):
    """What a reader knows about the freshness of each in-neighbour slot (one agent).

    Attributes
    ----------
    sources : int32 (R,)
        The in-neighbour of each slot (``-1``: padding slot, no edge).
    versions : int32 (R,)
        Deliveries since the slot was last read by ``win_update`` (Bluefog's
        ``get_win_version``: 0 = nothing new).
    stamps : int32 (R,)
        The sender's send counter of the newest delivered message (``-1``: none yet); the
        staleness of the slot in sender steps is ``sender_sent - stamps``.
    arrived : float (R,)
        Arrival time of the newest delivered message (meaningful where ``stamps >= 0``).
    in_flight : int32 (R,)
        Messages sent to this slot that have not arrived yet.
    """

    sources: jax.Array
    versions: jax.Array
    stamps: jax.Array
    arrived: jax.Array
    in_flight: jax.Array


@dataclass(frozen=True)
class Window:
    """One agent's window ``name`` (see the module docstring for every field).

    Leaves: ``value`` (pytree), ``buffers`` (leaves ``(R, *shape)``), ``versions``,
    ``stamps``, ``arrived`` (``(R,)``), ``sent`` (scalar int32: this agent's sends),
    ``pending`` (leaves ``(R, K, *shape)``), ``p_used``, ``p_arrival``, ``p_seq``,
    ``p_kind``, ``p_stamp`` (``(R, K)``), ``overflow`` (scalar int32). Static: ``name``, ``topology``,
    ``capacity`` ``K``.
    """

    value: Any
    buffers: Any
    versions: Any
    stamps: Any
    arrived: Any
    sent: Any
    pending: Any
    p_used: Any
    p_arrival: Any
    p_seq: Any
    p_kind: Any
    p_stamp: Any
    overflow: Any
    name: str
    topology: Any
    capacity: int

    def replace(self, **changes) -> "Window":
        """A copy with ``changes`` applied."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields.update(changes)
        return Window(**fields)


_DATA = ["value", "buffers", "versions", "stamps", "arrived", "sent", "pending", "p_used", "p_arrival",
         "p_seq", "p_kind", "p_stamp", "overflow"]
jax.tree_util.register_dataclass(Window, data_fields=_DATA,
                                 meta_fields=["name", "topology", "capacity"])


def _bcast(mask, leaf):
    """``mask`` of shape ``(R,)`` (or ``(R, K)``) broadcast against ``leaf``."""
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


def _deliver_one_pass(win: Window, now) -> Window:
    """Apply, in every slot, the oldest pending message that has arrived by ``now``."""
    arrived = win.p_used & (win.p_arrival <= now)                      # (R, K)
    big = jnp.iinfo(jnp.int32).max
    k = jnp.argmin(jnp.where(arrived, win.p_seq, big), axis=1)         # (R,)
    has = jnp.any(arrived, axis=1)                                     # (R,)
    pick = lambda a: jnp.take_along_axis(  # noqa: E731
        a, k.reshape((-1, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0]
    kind = pick(win.p_kind)

    def apply(buf, pend):
        msg = pick(pend)
        new = jnp.where(_bcast(kind == PUT, buf), msg, buf + msg)
        return jnp.where(_bcast(has, buf), new, buf)

    buffers = jax.tree_util.tree_map(apply, win.buffers, win.pending)
    cleared = has[:, None] & (jnp.arange(win.capacity)[None, :] == k[:, None])
    return win.replace(
        buffers=buffers,
        versions=win.versions + has.astype(jnp.int32),
        stamps=jnp.where(has, pick(win.p_stamp), win.stamps),
        arrived=jnp.where(has, pick(win.p_arrival), win.arrived),
        p_used=win.p_used & ~cleared,
    )


def deliver(win: Window, now) -> Window:
    """Deliver every pending message with arrival time ``<= now``, in send order."""
    for _ in range(win.capacity):
        win = _deliver_one_pass(win, now)
    return win


def deliver_all(win: Window) -> Window:
    """Deliver every message still in flight (a drain: as if time went to infinity)."""
    return deliver(win, jnp.asarray(np.inf, win.p_arrival.dtype))
