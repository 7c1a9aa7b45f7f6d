r"""Jitted local compute for the window algorithms under MPI: the window ops as host callbacks.

Without it, :func:`bluefog_dist.window_comm.run_async` runs ``algorithm.step`` op by op on
the host: every ``jnp`` operation of the gradient and the update is one dispatch. With
``run_async(..., jit=True)`` the whole step is traced once into one XLA program, and only
the window ops leave it: :class:`JitWindowComm` answers each of them with an *ordered*
``jax.experimental.io_callback`` into the wrapped :class:`~bluefog_dist.window_comm.MpiWindowComm`
(the callbacks run in program order, so the MPI calls happen in the order the algorithm
wrote them). Weights known when tracing (``None``, floats, NumPy matrices) are passed to the
host as they are; traced weights (per-round arrays, a traced ``self_weight``) travel as
callback operands. The values a read returns have the window's leaf shapes and dtypes
(checked at ``win_create``), so the program's types are known before it runs.

The arithmetic is the op-by-op run's (same operations, same order of the window calls); XLA
may fuse and reorder floating-point work inside a jitted segment, so results agree to
rounding, not bitwise.

References
----------
JAX ``jax.experimental.io_callback`` (ordered side effects inside ``jit``); Bluefog
``bluefog/torch/mpi_ops.py`` (the window ops that stay on the host).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from bluefog.comm import WindowInfo, WinHandle

__all__ = ["JitWindowComm", "jit_step"]

_TOKEN = jax.ShapeDtypeStruct((), jnp.int32)


def _split(value):
    """``(static, traced)``: a weight known at trace time, or a traced operand."""
    if isinstance(value, jax.Array):  # a concrete or traced JAX array
        return None, value
    return value, None


def _host_value(static, traced):
    return static if traced is None else np.asarray(traced)


class JitWindowComm:
    """``base``'s window ops as ordered host callbacks, for use inside ``jax.jit`` (see the
    module docstring). ``rank()``, ``size`` and the neighbour tables are the base's
    constants; ``win_create`` / ``win_free`` / ``barrier`` are collective and stay outside
    the jitted step (call them on ``base``)."""

    def __init__(self, base):
        self.base = base
        self.size, self.local_size = base.size, base.local_size

    def rank(self) -> int:
        """This rank (a Python int, baked into this rank's program)."""
        return self.base.rank()

    def win_in_neighbors(self, windows, name):
        """The base's constant table."""
        return self.base.win_in_neighbors(windows, name)

    def win_out_neighbors(self, windows, name):
        """The base's constant table."""
        return self.base.win_out_neighbors(windows, name)

    def _value_shapes(self, name):
        treedef, leaves = self.base._sig[name]
        return treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves]

    def _call(self, host, result, *operands):
        return io_callback(host, result, *operands, ordered=True)

    def _send(self, method, windows, x, name, dst_weights, self_weight, nonblocking):
        dw, dw_t = _split(dst_weights)
        sw, sw_t = _split(self_weight)
        treedef = jax.tree_util.tree_structure(x)

        def host(leaves, dwt, swt):
            out = getattr(self.base, method)(windows, jax.tree_util.tree_unflatten(
                treedef, leaves), name, _host_value(dw, dwt), _host_value(sw, swt))
            return np.int32(out[0].ticket if nonblocking else 0)

        ticket = self._call(host, _TOKEN, jax.tree_util.tree_leaves(x), dw_t, sw_t)
        return (WinHandle(ticket, jnp.zeros(()), name), windows) if nonblocking else windows

    def win_put(self, windows, x, name, dst_weights=None, self_weight=None):
        """``MpiWindowComm.win_put`` from inside ``jit``."""
        return self._send("win_put", windows, x, name, dst_weights, self_weight, False)

    def win_accumulate(self, windows, x, name, dst_weights=None, self_weight=None):
        """``MpiWindowComm.win_accumulate`` from inside ``jit``."""
        return self._send("win_accumulate", windows, x, name, dst_weights, self_weight, False)

    def win_put_nonblocking(self, windows, x, name, dst_weights=None, self_weight=None):
        """``MpiWindowComm.win_put_nonblocking``; the handle's ticket is traced."""
        return self._send("win_put_nonblocking", windows, x, name, dst_weights, self_weight,
                          True)

    def win_accumulate_nonblocking(self, windows, x, name, dst_weights=None,
                                   self_weight=None):
        """``MpiWindowComm.win_accumulate_nonblocking``; the handle's ticket is traced."""
        return self._send("win_accumulate_nonblocking", windows, x, name, dst_weights,
                          self_weight, True)

    def _get(self, windows, name, src_weights, nonblocking):
        sw, sw_t = _split(src_weights)
        method = "win_get_nonblocking" if nonblocking else "win_get"

        def host(swt):
            out = getattr(self.base, method)(windows, name, _host_value(sw, swt))
            return np.int32(out[0].ticket if nonblocking else 0)

        ticket = self._call(host, _TOKEN, sw_t)
        return (WinHandle(ticket, jnp.zeros(()), name), windows) if nonblocking else windows

    def win_get(self, windows, name, src_weights=None):
        """``MpiWindowComm.win_get`` from inside ``jit``."""
        return self._get(windows, name, src_weights, False)

    def win_get_nonblocking(self, windows, name, src_weights=None):
        """``MpiWindowComm.win_get_nonblocking``; the handle's ticket is traced."""
        return self._get(windows, name, src_weights, True)

    def win_update(self, windows, name, self_weight=None, neighbor_weights=None, reset=False):
        """``MpiWindowComm.win_update``; returns ``(value, windows)`` with the window's leaf
        shapes and dtypes."""
        sw, sw_t = _split(self_weight)
        nw, nw_t = _split(neighbor_weights)
        treedef, shapes = self._value_shapes(name)

        def host(swt, nwt):
            value, _ = self.base.win_update(windows, name, _host_value(sw, swt),
                                            _host_value(nw, nwt), reset=reset)
            return [np.asarray(v, s.dtype) for v, s in zip(jax.tree_util.tree_leaves(value),
                                                            shapes)]

        leaves = self._call(host, shapes, sw_t, nw_t)
        return jax.tree_util.tree_unflatten(treedef, leaves), windows

    def win_update_then_collect(self, windows, name):
        """``MpiWindowComm.win_update_then_collect`` from inside ``jit``."""
        treedef, shapes = self._value_shapes(name)

        def host():
            value, _ = self.base.win_update_then_collect(windows, name)
            return [np.asarray(v, s.dtype) for v, s in zip(jax.tree_util.tree_leaves(value),
                                                            shapes)]

        return jax.tree_util.tree_unflatten(treedef, self._call(host, shapes)), windows

    def win_wait(self, windows, handle):
        """``MpiWindowComm.win_wait`` from inside ``jit``."""
        def host(ticket):
            self.base.win_wait(windows, WinHandle(int(ticket), 0.0, handle.name))
            return np.int32(0)

        self._call(host, _TOKEN, handle.ticket)
        return windows

    def win_poll(self, windows, handle):
        """``MpiWindowComm.win_poll`` from inside ``jit`` (a traced bool)."""
        def host(ticket):
            return np.bool_(self.base.win_poll(windows, WinHandle(int(ticket), 0.0,
                                                                  handle.name)))

        return self._call(host, jax.ShapeDtypeStruct((), jnp.bool_), handle.ticket)

    def win_info(self, windows, name) -> WindowInfo:
        """``MpiWindowComm.win_info`` from inside ``jit``."""
        R = len(self.base._rounds(name, "in"))
        i32 = jax.ShapeDtypeStruct((R,), jnp.int32)
        shapes = WindowInfo(i32, i32, i32, jax.ShapeDtypeStruct((R,), jnp.result_type(float)),
                            i32)

        def host():
            info = self.base.win_info(windows, name)
            return WindowInfo(*(np.asarray(v, s.dtype) for v, s in zip(info, shapes)))

        return self._call(host, shapes)


def jit_step(algorithm, problem, topology, comm, data, key, windows):
    """``state -> algorithm.step(state, ctx)`` compiled once, with ``ctx.comm`` a
    :class:`JitWindowComm` over ``comm``; ``windows`` (the state's dict of window names,
    constant under MPI) is held outside the program and put back into every new state."""
    from bluefog.algorithm import AgentContext

    jcomm = JitWindowComm(comm)

    def arrays_step(arrays, data, key):
        ctx = AgentContext(jcomm, topology, problem, data, key)
        return algorithm.step(arrays._replace(windows=windows), ctx)._replace(windows={})

    compiled = jax.jit(arrays_step)
    return lambda state: compiled(state._replace(windows={}), data, key)._replace(
        windows=windows)
