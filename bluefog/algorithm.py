"""The algorithm and problem interfaces shared by both backends.

An **algorithm** is an :class:`Algorithm`: pure ``init`` and ``step`` functions (optax's
shape) written from one agent's point of view. ``step`` receives an :class:`AgentContext`,
which carries the communicator, the topology and this agent's slice of the problem data; the
iteration counter lives in the algorithm's state (field ``count``) and is passed to the
communicator for time-varying topologies.

A **problem** is a :class:`Problem`: a per-agent loss ``f_i(x) = loss(x, data_i)`` with the
data of all agents stacked along a leading axis of size ``n``. The global objective is
:math:`f(x) = \\frac1n \\sum_i f_i(x)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Algorithm", "AgentContext", "Problem"]

PyTree = Any


@dataclass(frozen=True, eq=False)
class Problem:
    r"""A decentralized problem :math:`\min_x \frac1n \sum_{i=1}^n f_i(x)`.

    Attributes
    ----------
    loss : callable ``(params, data_i) -> scalar``
        The local objective :math:`f_i` of one agent, given that agent's data.
    data : pytree
        Every leaf has leading axis ``n`` (agent ``i``'s data is ``leaf[i]``).
    init_params : pytree
        The starting point of one agent (every agent starts from it unless the runner is
        given ``x0``).
    optimum : pytree or None
        The exact minimiser of the global objective, where known; enables the
        ``distance_to_optimum`` and ``relative_error`` metrics.
    stochastic_loss : callable ``(params, data_i, key) -> scalar`` or None
        An unbiased minibatch estimate of ``loss``; ``None`` means "use the exact loss".
    name : str
    config : dict
        Hyper-parameters that define the problem (for start-up agreement checks and logs).
    """

    loss: Callable
    data: PyTree
    init_params: PyTree
    optimum: PyTree | None = None
    stochastic_loss: Callable | None = None
    name: str = "problem"
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        if not callable(self.loss):
            raise TypeError(f"loss must be callable (params, data_i) -> scalar; got {type(self.loss).__name__}.")
        leaves = jax.tree_util.tree_leaves(self.data)
        if not leaves:
            raise ValueError("data must contain at least one array with a leading agent axis; got an empty pytree.")
        sizes = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else -1 for leaf in leaves}
        if len(sizes) != 1 or -1 in sizes:
            raise ValueError(
                "every leaf of data must have the same leading (agent) axis; got leading sizes "
                f"{sorted(sizes)}. Stack per-agent data with jnp.stack(...) or use split_dataset()."
            )

    @property
    def size(self) -> int:
        """Number of agents ``n`` (the leading axis of ``data``)."""
        return int(jnp.shape(jax.tree_util.tree_leaves(self.data)[0])[0])

    def agent_data(self, agent: int) -> PyTree:
        """Agent ``agent``'s slice of the data."""
        return jax.tree_util.tree_map(lambda leaf: leaf[agent], self.data)

    def global_loss(self, params) -> jax.Array:
        r""":math:`f(x) = \frac1n \sum_i f_i(x)` evaluated with all agents' data (dense)."""
        return jnp.mean(jax.vmap(self.loss, in_axes=(None, 0))(params, self.data))


class AgentContext(NamedTuple):
    """What one agent's ``step`` sees: communicator, topology, its data and PRNG key."""

    comm: Any
    topology: Any
    problem: Problem
    data: PyTree
    key: jax.Array

    def loss(self, params) -> jax.Array:
        """This agent's :math:`f_i(x)`."""
        return self.problem.loss(params, self.data)

    def grad(self, params) -> PyTree:
        r"""This agent's exact gradient :math:`\nabla f_i(x)`."""
        return jax.grad(self.problem.loss)(params, self.data)

    def stochastic_grad(self, params, t) -> PyTree:
        r"""An unbiased stochastic gradient of :math:`f_i` at step ``t``, drawn with
        ``fold_in(key, t)`` (the exact gradient when the problem has no minibatch loss)."""
        if self.problem.stochastic_loss is None:
            return self.grad(params)
        key = jax.random.fold_in(self.key, t)
        return jax.grad(self.problem.stochastic_loss)(params, self.data, key)


class Algorithm(NamedTuple):
    """A decentralized algorithm, written once for both backends.

    Attributes
    ----------
    init : callable ``(params, ctx) -> state``
    step : callable ``(state, ctx) -> state``
        One iteration (communication included); must increment ``state.count``.
    params : callable ``state -> params``
        The agent's current estimate (e.g. the push-sum ratio ``x / w``).
    name : str
    config : dict
        Hyper-parameters, used for logs and the MPI start-up agreement check.
    """

    init: Callable
    step: Callable
    params: Callable
    name: str = "algorithm"
    config: dict = {}
