r"""The one implementation of the decentralized SGD family (optax inner step + communication).

:func:`algorithms.optim.decentralized`, :func:`~algorithms.optim.dmsgd`,
:func:`algorithms.dsgd` and :func:`algorithms.gradient_allreduce` all build their
:class:`bluefog.Algorithm` with :func:`build`, so they share one update rule and one check of
the mixing weights. Validation of user inputs happens in those public factories; :func:`build`
trusts its arguments. The update of agent :math:`i` at step :math:`t` is

.. math::

    g_i &= \nabla F_i(x_i^t;\xi_i^t) \quad(\tfrac1n\textstyle\sum_j g_j \text{ with
           communication = "gradient\_allreduce"}) \\
    u_i, s_i^{t+1} &= \text{inner.update}(g_i, s_i^t, x_i^t) \\
    \text{ATC: } x_i^{t+1} &= \mathcal C_t(x^t + u)_i, \qquad
    \text{AWC: } x_i^{t+1} = \mathcal C_t(x^t)_i + u_i,

with :math:`\mathcal C_t` the identity unless :math:`(t+1) \bmod J = 0` (Sayed 2014; Lian et
al. 2017; Ying et al., BlueFog, arXiv:2111.04287).

With a compressor (``compression=(C, gamma)``, ATC and neighbor communication only) the
mixing step is CHOCO's (Koloskova, Stich & Jaggi, ICML 2019; see
:func:`algorithms._choco.choco_exchange`): the agent sends the compressed difference between
its new iterate and its public copy :math:`\hat x_i`, and moves toward its neighbors' public
copies by the consensus step :math:`\gamma`, so only payloads cross the wire.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from bluefog.algorithm import Algorithm
from bluefog.topology import DynamicTopology, Topology
from bluefog.compression import Compressor
from bluefog.validation import check_choice, check_positive_float, check_positive_int, check_real

from ._choco import choco_exchange
from ._common import as_float_tree, require_weights

__all__ = ["COMMUNICATIONS", "STYLES", "DecentralizedState", "check_communication",
           "check_compression", "compressed_communicate",
           "check_lr_or_schedule", "communicate", "require_mixing", "build", "sgd_member"]

PyTree = Any

#: Accepted values of ``communication``.
COMMUNICATIONS = ("neighbor", "hierarchical", "allreduce", "gradient_allreduce", "none")
#: Accepted values of ``style``.
STYLES = ("atc", "awc")


class DecentralizedState(NamedTuple):
    r"""State of one agent of :func:`algorithms.optim.decentralized` (and of every member of
    the SGD family: :func:`algorithms.dsgd`, :func:`algorithms.gradient_allreduce`,
    :func:`algorithms.optim.dmsgd`).

    Attributes
    ----------
    params : pytree
        The agent's parameters :math:`x_i^t`.
    opt_state : optax state
        The inner transformation's state (e.g. the heavy-ball buffer of ``optax.sgd``).
    count : int32 scalar
        Steps taken; the ``t`` of the stochastic gradient and of dynamic topologies.
    memory : ``(x_hat, s)`` or None
        With compression only: the public copy :math:`\hat x_i` and
        :math:`s_i = \sum_j W_{ij}\hat x_j` (CHOCO); ``None`` otherwise.
    """

    params: PyTree
    opt_state: Any
    count: jax.Array
    memory: Any = None


def check_communication(communication, steps_per_communication, machine_topology, *,
                        where: str) -> tuple[str, int]:
    """Validate ``communication``, ``steps_per_communication`` (``J``) and ``machine_topology``
    together (plain Python); return ``(communication, J)``.

    ``machine_topology`` must be row-stochastic (its rows are convex combinations of the
    machine averages).
    """
    communication = check_choice(communication, "communication", COMMUNICATIONS, where=where)
    J = check_positive_int(steps_per_communication, "steps_per_communication", where=where)
    if communication == "gradient_allreduce" and J != 1:
        raise ValueError(
            f"{where}: steps_per_communication must be 1 with communication='gradient_allreduce' "
            f"(the gradient is averaged at every step); got {J}. For periodic averaging use "
            "communication='allreduce' (local SGD)."
        )
    if communication == "hierarchical":
        if not isinstance(machine_topology, (Topology, DynamicTopology)):
            raise TypeError(
                f"{where}: communication='hierarchical' needs machine_topology, a Topology or "
                "DynamicTopology over machines (size = agents / local_size); got "
                f"{type(machine_topology).__name__}. E.g. machine_topology=ring_graph(4)."
            )
        require_weights(machine_topology, f"{where} (machine_topology)", row=True)
    elif machine_topology is not None:
        raise ValueError(
            f"{where}: machine_topology is only used with communication='hierarchical'; got "
            f"communication={communication!r}. Drop machine_topology or switch communication."
        )
    return communication, J


def check_compression(compressor, consensus_step, communication: str, style: str, *,
                      where: str):
    """``None`` without a compressor, else ``(compressor, gamma)`` after checking that the
    combination is one CHOCO covers (neighbor communication, ATC)."""
    if compressor is None:
        if consensus_step is not None:
            raise ValueError(f"{where}: consensus_step is only used with a compressor; got "
                             f"consensus_step={consensus_step!r} and compressor=None.")
        return None
    if not isinstance(compressor, Compressor):
        raise TypeError(f"{where}: compressor must be a bluefog.compression.Compressor (e.g. "
                        f"top_k(0.01)); got {type(compressor).__name__}.")
    if communication != "neighbor" or style != "atc":
        raise ValueError(
            f"{where}: compression works with communication='neighbor' and style='atc' (CHOCO "
            f"mixing); got communication={communication!r}, style={style!r}.")
    if consensus_step is None:
        raise ValueError(f"{where}: a compressor needs consensus_step (CHOCO's gamma in (0, 1], "
                         "e.g. 0.5 for 8-bit or top-10%, smaller for sparser compressors).")
    gamma = check_real(consensus_step, "consensus_step", low=0.0, high=1.0, low_open=True,
                       where=where, example="consensus_step=0.5")
    return compressor, gamma


def check_lr_or_schedule(lr, *, where: str):
    """``lr`` unchanged if it is a schedule (callable ``count -> lr``), else validated by
    :func:`bluefog.validation.check_positive_float` (finite, ``> 0``)."""
    return lr if callable(lr) else check_positive_float(lr, "lr", where=where)


def require_mixing(ctx, communication: str, where: str) -> None:
    r"""The family's one weight check: ``communication="neighbor"`` needs a row-stochastic
    topology (:math:`W\mathbf 1 = \mathbf 1`, so that a consensual point is a fixed point of
    the mixing; Lian et al. 2017, Assumption 1). Column-stochastic weights belong to the
    push-sum methods (:func:`algorithms.push_sum`, :func:`algorithms.push_diging`)."""
    if communication == "neighbor":
        require_weights(ctx.topology, where, row=True)


def _mix(x: PyTree, ctx, communication: str, machine_topology, t) -> PyTree:
    r""":math:`\mathcal C(x)` for this agent (the backend packs leaves into messages)."""
    if communication in ("none", "gradient_allreduce"):
        return x
    if communication == "neighbor":
        return ctx.comm.neighbor_allreduce(x, ctx.topology, t)
    if communication == "hierarchical":
        return ctx.comm.hierarchical_neighbor_allreduce(x, machine_topology, t)
    return ctx.comm.allreduce(x)


def communicate(x: PyTree, ctx, communication: str, J: int, machine_topology, count) -> PyTree:
    r"""Apply :math:`\mathcal C` at steps with ``(count + 1) % J == 0`` (every step if
    ``J = 1``); a time-varying topology advances once per communication (pattern
    :math:`\lfloor t / J \rfloor`)."""
    if J == 1 or communication in ("none", "gradient_allreduce"):
        return _mix(x, ctx, communication, machine_topology, count)
    # Every agent has the same counter; comm.uniform makes the predicate unbatched under
    # vmap, so only the taken branch runs (no wasted exchange on local steps).
    do_comm = ctx.comm.uniform((count + 1) % J == 0)
    return lax.cond(do_comm,
                    lambda v: _mix(v, ctx, communication, machine_topology, count // J),
                    lambda v: v, x)


def compressed_communicate(half, memory, ctx, compression, J: int, count):
    """CHOCO's mixing of ``half`` at communication steps (every ``J``-th); returns
    ``(x, memory)``."""
    compressor, gamma = compression

    def exchange(args):
        target, x_hat, s = args
        return choco_exchange(target, x_hat, s, compressor, ctx, gamma, count, count // J)

    args = (half,) + tuple(memory)
    if J == 1:
        x, x_hat, s = exchange(args)
    else:
        x, x_hat, s = lax.cond(ctx.comm.uniform((count + 1) % J == 0), exchange,
                               lambda a: a, args)
    return x, (x_hat, s)


def family_config(name, communication, style, J, machine_topology, extra) -> dict:
    """The ``Algorithm.config`` of a member of the family (JSON-able)."""
    cfg = {"optimizer": name, "communication": communication, "style": style,
           "steps_per_communication": J}
    if machine_topology is not None:
        cfg["machine_topology"] = machine_topology.fingerprint
    cfg.update(extra)
    return cfg


def build(inner: optax.GradientTransformation, *, communication: str, style: str, J: int,
          machine_topology, stochastic: bool, name: str, where: str, config: dict,
          compression=None) -> Algorithm:
    r"""The :class:`bluefog.Algorithm` of the update in the module docstring (arguments
    already validated by the public factory ``where``; ``compression`` is ``None`` or
    ``(compressor, gamma)``).

    ``init`` runs :func:`require_mixing` before the first step.
    """

    def init(params, ctx):
        require_mixing(ctx, communication, where)
        if compression is not None:
            require_weights(ctx.topology, where, row=True, column=True)
        x = as_float_tree(params)
        memory = None
        if compression is not None:
            zeros = jax.tree_util.tree_map(jnp.zeros_like, x)
            memory = (zeros, zeros)
        return DecentralizedState(x, inner.init(x), jnp.zeros((), jnp.int32), memory)

    def step(state, ctx):
        x, s, t, memory = state
        g = ctx.stochastic_grad(x, t) if stochastic else ctx.grad(x)
        if communication == "gradient_allreduce":
            g = ctx.comm.allreduce(g)
        u, s = inner.update(g, s, x)
        if compression is not None:
            x, memory = compressed_communicate(optax.apply_updates(x, u), memory, ctx,
                                               compression, J, t)
        elif style == "atc":
            x = communicate(optax.apply_updates(x, u), ctx, communication, J, machine_topology, t)
        else:
            x = optax.apply_updates(communicate(x, ctx, communication, J, machine_topology, t), u)
        return DecentralizedState(x, s, t + 1, memory)

    return Algorithm(init, step, lambda state: state.params, name,
                     family_config(name, communication, style, J, machine_topology, config))


def sgd_member(lr, beta: float, *, nesterov: bool, communication: str, J: int, machine_topology,
               stochastic: bool, name: str, where: str, compression=None) -> Algorithm:
    r"""Heavy-ball SGD in the family: :func:`build` around ``optax.sgd(lr, beta, nesterov)``,

    .. math:: m_i^{t+1} = \beta m_i^t + g_i^t, \qquad u_i^t = -\gamma\, m_i^{t+1}

    (Polyak 1964), combined ATC. The single body behind :func:`algorithms.optim.dmsgd`,
    :func:`algorithms.dsgd` and :func:`algorithms.gradient_allreduce`.
    """
    extra = {"lr": lr if not callable(lr) else "schedule", "momentum": beta,
             "nesterov": nesterov, "stochastic": stochastic}
    if compression is not None:
        extra.update(compressor=compression[0].name, consensus_step=compression[1])
    return build(optax.sgd(lr, momentum=beta, nesterov=nesterov), communication=communication,
                 style="atc", J=J, machine_topology=machine_topology, stochastic=stochastic,
                 name=name, where=where, config=extra, compression=compression)
