r"""Per-link memory for the ``"keep_last"`` rule: a communicator view that remembers.

Under ``rule="keep_last"`` agent ``i`` replaces a missing message by the last value it
received on that link. Slot ``r`` of a static schedule always comes from the same sender
:math:`\sigma_r(i)` with the same weight :math:`w_r`, so the memory of one
``neighbor_allreduce`` call is, per slot, the last delivered weighted value
:math:`m_r = w_r x_{\sigma_r(i)}` and its weight :math:`\omega_r` (0 until a message has
arrived). With :math:`\delta_r(t)` the delivery mask,

.. math::
    m_r \leftarrow \delta_r\, w_r x_{\sigma_r(i)} + (1 - \delta_r)\, m_r, \quad
    \omega_r \leftarrow \delta_r w_r + (1 - \delta_r)\, \omega_r, \quad
    x_i^{+} = \frac{W_{ii} x_i + \sum_r m_r}{W_{ii} + \sum_r \omega_r}.

Once every link has delivered at least once the denominator is the row sum (1 for a
row-stochastic ``W``), so this is exactly "keep the last value"; before that, links that never
delivered are left out as under ``"renormalise"``.

The memory is data: it lives in the algorithm's state (the ``memory`` field of
:class:`bluefog.faults.FaultAwareState`), one entry per ``neighbor_allreduce`` call of a step,
in call order, so ``init``/``step`` stay pure. :class:`MemoryComm` is the communicator the
wrapped algorithm sees: it forwards every other attribute to the real communicator and serves
``neighbor_allreduce`` from ``neighbor_allgather`` (whose lost slots have weight 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MemoryComm"]


class MemoryComm:
    """The communicator view of one step under ``"keep_last"`` (module docstring).

    Parameters
    ----------
    comm : bluefog.comm.ScheduleCommunicator with ``faults``
    memory : tuple of ``(values, weights)`` pairs, or None to *discover* (record the calls'
        shapes and return ``x`` unchanged, without communicating).
    """

    def __init__(self, comm, memory=None):
        self._comm, self._memory, self._calls = comm, memory, []

    def __getattr__(self, name):
        return getattr(self._comm, name)

    @property
    def new_memory(self) -> tuple:
        """The memory after this step's calls (the discovered zeros in discover mode)."""
        return tuple(self._calls)

    def _slot_zeros(self, x, topology):
        R = max(1, topology.patterns[0].schedule.num_rounds)
        leaves = jax.tree_util.tree_leaves(x)
        wdtype = jnp.result_type(*[leaf.dtype for leaf in leaves])
        values = jax.tree_util.tree_map(lambda v: jnp.zeros((R,) + jnp.shape(v), v.dtype), x)
        return values, jnp.zeros((R,), wdtype)

    def neighbor_allreduce(self, x, topology=None, t=None, **kwargs):
        """``keep_last`` mixing of ``x`` (topology form, static topology only)."""
        if kwargs or topology is None:
            return self._comm.neighbor_allreduce(x, topology, t, **kwargs)  # raises the reason
        if len(getattr(topology, "patterns", ())) != 1:
            raise ValueError(
                "neighbor_allreduce: rule='keep_last' remembers one value per link of a static "
                f"topology; got the time-varying {topology.name!r}. Use a static topology or "
                "rule='renormalise'.")
        if self._memory is None:
            self._calls.append(self._slot_zeros(x, topology))
            return x
        values, weights = self._memory[len(self._calls)]
        nv = self._comm.neighbor_allgather(x, topology, t)
        arrived = nv.weights != 0
        weights = jnp.where(arrived, nv.weights, weights)
        values = jax.tree_util.tree_map(
            lambda got, old: jnp.where(_expand(arrived, got), _expand(nv.weights, got) * got, old),
            nv.values, values)
        self._calls.append((values, weights))
        self_w = jnp.asarray(np.diag(topology.weights), weights.dtype)[self._comm.rank()]
        den = self_w + jnp.sum(weights)
        return jax.tree_util.tree_map(
            lambda v, m: ((self_w.astype(v.dtype) * v + jnp.sum(m, axis=0)) / den.astype(v.dtype)),
            x, values)


def _expand(mask, like):
    return jnp.reshape(mask, mask.shape + (1,) * (like.ndim - 1))
