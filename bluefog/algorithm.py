"""The algorithm and problem interfaces shared by both backends.

An **algorithm** is an :class:`Algorithm`: pure ``init`` and ``step`` functions (optax's
shape) written from one agent's point of view. ``step`` receives an :class:`AgentContext`,
which carries the communicator, the topology and this agent's slice of the problem data; the
iteration counter lives in the algorithm's state (field ``count``) and is passed to the
communicator for time-varying topologies.

A **problem** is a :class:`Problem`: a per-agent loss ``f_i(x) = loss(x, data_i)`` with the
data of all agents stacked along a leading axis of size ``n``. The global objective is
:math:`f(x) = \\frac1n \\sum_i f_i(x)`. Under MPI a process may hold only its own agents'
rows (``shard=(first_agent, n)``), so no rank loads every agent's data.
"""

from __future__ import annotations

import dataclasses
import operator
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
    shard : (int, int) or None
        ``None`` (default): ``data`` holds every agent, :math:`n` = its leading axis.
        ``(first_agent, num_agents)``: ``data``'s leading axis holds only the :math:`k`
        agents ``first_agent .. first_agent + k - 1`` of :math:`n` = ``num_agents`` (row
        :math:`r` is agent ``first_agent + r``), so that an MPI process keeps only the
        agents it runs (Bluefog's one-process-per-agent model: each rank loads its own
        data). ``size`` is then :math:`n`, :meth:`agent_data` translates the index and
        refuses an agent not held, and :meth:`global_loss` and the simulator, which need
        every agent, refuse the problem.

    Raises
    ------
    TypeError
        ``loss``/``stochastic_loss`` not callable; a loss that returns something other than a
        floating-point array; ``shard`` not a pair of ints.
    ValueError
        ``data`` empty or with differing leading (agent) axes; a ``shard`` whose agents do not
        fit in ``num_agents``; NaN/inf in ``data`` or
        ``init_params`` (the leaf, index and agent are named); ``init_params`` that do not fit
        ``loss`` and one agent's data, found by abstract evaluation
        (``jax.eval_shape(loss, init_params, data_0)``, nothing is computed); a loss that is
        not a scalar; an ``optimum`` whose shapes differ from ``init_params``. Each check runs
        once, at construction, so a bad problem never reaches a compiled run.
    """

    loss: Callable
    data: PyTree
    init_params: PyTree
    optimum: PyTree | None = None
    stochastic_loss: Callable | None = None
    name: str = "problem"
    config: dict = field(default_factory=dict)
    shard: tuple | None = None

    def __post_init__(self):
        if not callable(self.loss):
            raise TypeError(
                "Problem: loss must be callable (params, data_i) -> scalar; got "
                f"{type(self.loss).__name__}. Pass e.g. loss=lambda x, d: 0.5 * jnp.sum((x - d) ** 2)."
            )
        if self.stochastic_loss is not None and not callable(self.stochastic_loss):
            raise TypeError(
                "Problem: stochastic_loss must be None or callable (params, data_i, key) -> scalar; "
                f"got {type(self.stochastic_loss).__name__}. Pass None to use the exact loss."
            )
        leaves = jax.tree_util.tree_leaves(self.data)
        if not leaves:
            raise ValueError("Problem: data must contain at least one array with a leading agent axis; got "
                             "an empty pytree. Pass e.g. data=jnp.stack(per_agent_arrays).")
        sizes = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else -1 for leaf in leaves}
        if len(sizes) != 1 or -1 in sizes:
            raise ValueError(
                "Problem: every leaf of data must have the same leading (agent) axis; got leading sizes "
                f"{sorted(sizes)}. Stack per-agent data with jnp.stack(...) or use split_dataset()."
            )
        object.__setattr__(self, "shard", _check_shard(self.shard, sizes.pop()))
        _check_finite(self.data, "data", "Clean or impute the data (e.g. drop the rows, or "
                      "np.nan_to_num) before building the Problem.")
        _check_finite(self.init_params, "init_params", "Start from finite values, e.g. zeros.")
        _check_loss_fits(self)
        if self.optimum is not None:
            _check_same_shapes(self.optimum, self.init_params)

    @property
    def size(self) -> int:
        """Number of agents :math:`n`: the leading axis of ``data``, or ``num_agents`` of
        ``shard``."""
        return self.shard[1] if self.shard is not None else _rows(self.data)

    @property
    def agents(self) -> range:
        """The agents whose data this problem holds (``range(n)`` without ``shard``)."""
        first = 0 if self.shard is None else self.shard[0]
        return range(first, first + _rows(self.data))

    @property
    def is_partial(self) -> bool:
        """Whether some agent's data is not held (``shard`` covers fewer than ``size``)."""
        return len(self.agents) != self.size

    def held(self) -> str:
        """``"agents a..b of n (shard=(a, n))"``: which agents this problem holds (for
        messages)."""
        a = self.agents
        return f"agents {a.start}..{a.stop - 1} of {self.size} (shard={self.shard})"

    def require_all_agents(self, where: str, fix: str) -> None:
        """Raise ``ValueError`` naming ``where`` and ``fix`` if this problem is partial (for
        code that needs every agent's data in this process)."""
        if self.is_partial:
            raise ValueError(f"{where} needs every agent's data in this process; got a Problem "
                             f"holding only {self.held()}. {fix}")

    def block_data(self, first: int, count: int) -> PyTree:
        """The data of agents ``first .. first + count - 1``, stacked (leading axis ``count``).

        Raises
        ------
        ValueError
            When this problem does not hold all of them (see ``shard``).
        """
        first, count = operator.index(first), operator.index(count)
        held = self.agents
        if count < 1 or first < held.start or first + count > held.stop:
            want = f"agent {first}'s" if count == 1 else f"agents {first}..{first + count - 1}'"
            raise ValueError(
                f"Problem: {want} data is not held here; this Problem holds {self.held()}. Build each "
                f"process's Problem from the rows of the agents it runs (shard=(first_agent, "
                f"{self.size}) with those rows, e.g. problem.restrict(first, count) or "
                "bluefog_train.datasets.load_agent_shards(..., agents=...)).")
        lo = first - held.start
        return jax.tree_util.tree_map(lambda leaf: leaf[lo:lo + count], self.data)

    def agent_data(self, agent: int) -> PyTree:
        """Agent ``agent``'s slice of the data (row ``agent - first_agent`` of a shard).

        Raises
        ------
        ValueError
            For an agent whose data this problem does not hold (see ``shard``).
        """
        if self.shard is None:  # every agent held: plain (possibly traced) indexing
            return jax.tree_util.tree_map(lambda leaf: leaf[agent], self.data)
        return jax.tree_util.tree_map(lambda leaf: leaf[0], self.block_data(agent, 1))

    def restrict(self, first: int, count: int = 1) -> "Problem":
        """The same problem holding only agents ``first .. first + count - 1``
        (``shard=(first, n)``), e.g. ``problem.restrict(rank)`` for MPI rank ``rank``."""
        return dataclasses.replace(self, data=self.block_data(first, count),
                                   shard=(operator.index(first), self.size))

    def global_loss(self, params) -> jax.Array:
        r""":math:`f(x) = \frac1n \sum_i f_i(x)` evaluated with all agents' data (dense).

        Raises
        ------
        ValueError
            For a partial problem (``shard`` not covering every agent).
        """
        self.require_all_agents(
            "Problem.global_loss (f = 1/n sum_i f_i)",
            "Evaluate it where every agent's data is (a Problem without shard), or reduce the "
            "agents' own losses across processes, e.g. comm.allreduce(ctx.loss(x)).")
        return jnp.mean(jax.vmap(self.loss, in_axes=(None, 0))(params, self.data))


# ---- construction checks of Problem (plain Python / abstract evaluation, nothing runs) ------


def _rows(data) -> int:
    """Leading (agent) axis of ``data``'s first leaf."""
    return int(jnp.shape(jax.tree_util.tree_leaves(data)[0])[0])


def _check_shard(shard, rows: int):
    """``shard`` as a ``(first_agent, num_agents)`` tuple of ints that fits ``rows`` held."""
    if shard is None:
        return None
    try:
        first, total = (operator.index(v) for v in shard)
        ok = not any(isinstance(v, bool) for v in shard)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TypeError(
            f"Problem: shard must be None or a pair of ints (first_agent, num_agents); got "
            f"{shard!r}. Pass e.g. shard=(rank, n) for data holding the rows of agent rank "
            "of n.")
    if first < 0 or total < 1 or first + rows > total:
        raise ValueError(
            f"Problem: shard=(first_agent, num_agents) needs 0 <= first_agent and first_agent "
            f"+ k <= num_agents, with k = {rows} the agents data holds (its leading axis); got "
            f"shard={(first, total)}. Pass shard=(first, n) with data holding the rows of "
            "agents first .. first + k - 1 of n.")
    return first, total


def _shapes(tree) -> str:
    """``{path: shape dtype}`` of a pytree, for error messages."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    parts = [f"{jax.tree_util.keystr(k) or 'x'}: {tuple(jnp.shape(v))} {jnp.result_type(v)}"
             for k, v in flat]
    return "{" + ", ".join(parts) + "}"


def _check_finite(tree, name: str, fix: str) -> None:
    """Refuse NaN/inf in any floating leaf of ``tree`` (a NaN in the data turns every state
    into NaN after one step, silently)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        arr = jnp.asarray(leaf)
        if not jnp.issubdtype(arr.dtype, jnp.inexact):
            continue
        bad = ~jnp.isfinite(arr)
        count = int(jnp.sum(bad))
        if count:
            first = tuple(int(i) for i in jnp.argwhere(bad, size=1)[0])
            where = f"{name}{jax.tree_util.keystr(path)}"
            raise ValueError(
                f"Problem: {name} must be finite; {where} (shape {arr.shape}) has {count} NaN/inf "
                f"value(s), the first at index {first}"
                + (f" (agent {first[0]})" if name == "data" and first else "") + f". {fix}"
            )


def _abstract_call(fn, args, what: str, problem) -> Any:
    """``jax.eval_shape(fn, *args)``; a failure becomes a ValueError naming the shapes."""
    try:
        return jax.eval_shape(fn, *args)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is a mismatch to report
        msg = (str(exc).strip().splitlines() or [""])[0].rstrip(".") or repr(exc)
        call = f"{what}(init_params, data_i{', key' if len(args) == 3 else ''})"
        raise ValueError(
            f"Problem: {call} cannot be evaluated: {type(exc).__name__}: {msg}. init_params is "
            f"{_shapes(problem.init_params)} and one agent's data is "
            f"{_shapes(jax.tree_util.tree_map(lambda a: a[0], problem.data))} (data without "
            "its leading agent axis). Make "
            f"init_params and data the shapes and structure {what} expects, e.g. "
            "init_params=jnp.zeros(d) for data with d features."
        ) from exc


def _check_scalar(out, what: str) -> None:
    """The loss must return one real floating-point number (``jax.grad`` needs it)."""
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            f"Problem: {what} must return a scalar array; got a {type(out).__name__} "
            f"({out!r:.200}). Return one number, e.g. jnp.mean(per_sample_losses)."
        )
    if out.shape != ():
        raise ValueError(
            f"Problem: {what} must return a scalar (shape ()); got shape {out.shape}. Reduce it "
            "with jnp.sum(...) or jnp.mean(...)."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"Problem: {what} must return a real floating-point scalar (it is differentiated); "
            f"got dtype {out.dtype}. Cast the parameters and data to float32 or float64."
        )


def _check_loss_fits(problem) -> None:
    """Evaluate ``loss`` (and ``stochastic_loss``) abstractly at ``init_params`` and agent 0's
    data: shapes must fit and the result must be a floating-point scalar."""
    data0 = jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(jnp.shape(leaf)[1:], jnp.result_type(leaf)), problem.data)
    _check_scalar(_abstract_call(problem.loss, (problem.init_params, data0), "loss", problem),
                  "loss")
    if problem.stochastic_loss is not None:
        key = jax.random.PRNGKey(0)
        out = _abstract_call(problem.stochastic_loss, (problem.init_params, data0, key),
                             "stochastic_loss", problem)
        _check_scalar(out, "stochastic_loss")


def _check_same_shapes(optimum, init_params) -> None:
    """``optimum`` is a point of the parameter space: same structure and shapes."""
    same = (jax.tree_util.tree_structure(optimum) == jax.tree_util.tree_structure(init_params)
            and all(jnp.shape(a) == jnp.shape(b) for a, b in
                    zip(jax.tree_util.tree_leaves(optimum), jax.tree_util.tree_leaves(init_params))))
    if not same:
        raise ValueError(
            f"Problem: optimum must have the structure and shapes of init_params "
            f"{_shapes(init_params)}; got {_shapes(optimum)}. Pass the minimiser as one agent's "
            "parameters, or optimum=None."
        )


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
