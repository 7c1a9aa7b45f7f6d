r"""Decentralized optimizers built on optax, packaged as :class:`bluefog.Algorithm`.

Agent :math:`i` holds its own parameters :math:`x_i` and optimizer state; at step :math:`t`
it draws a minibatch gradient :math:`g_i^t = \nabla F_i(x_i^t; \xi_i^t)`
(``ctx.stochastic_grad(x, t)``), turns it into an update :math:`u_i^t` with any
``optax.GradientTransformation`` (``u, s = inner.update(g, s, x)``; for plain SGD
:math:`u = -\gamma g`), and combines with its neighbours through the communicator. With
:math:`\mathcal C` the communication operator chosen by ``communication``:

================================  =========================================================
``communication``                 :math:`\mathcal C(x)_i`
================================  =========================================================
``"neighbor"``                    :math:`\sum_j W_{ij}(k)\, x_j` (``neighbor_allreduce``)
``"hierarchical"``                machine average, then :math:`W^{\text{machine}}` mixing
``"allreduce"``                   :math:`\frac1n\sum_j x_j` (parameter averaging)
``"gradient_allreduce"``          identity on parameters, :math:`g_i \leftarrow \frac1n
                                  \sum_j g_j` (Horovod / synchronous data parallel SGD)
``"none"``                        identity (independent local training)
================================  =========================================================

the two combination orders are

* **ATC** (adapt-then-combine): :math:`x_i^{t+1} = \mathcal C\big(x^t + u^t\big)_i`,
* **AWC** (adapt-with-combine): :math:`x_i^{t+1} = \mathcal C(x^t)_i + u_i^t` (the exchange
  of :math:`x^t` does not depend on the gradient, so it can overlap with back-propagation).

With ``steps_per_communication = J > 1``, :math:`\mathcal C` is applied only at steps with
:math:`(t+1) \bmod J = 0` (identity otherwise: local SGD / periodic gossip), and a
time-varying topology advances once per communication (pattern :math:`k = \lfloor t/J
\rfloor`). ATC with ``optax.sgd(lr, momentum=beta)`` is **DmSGD** (:func:`dmsgd`); the
quasi-global momentum of Lin et al. (2021) needs the post-communication parameters and is
:func:`qg_dsgdm`.

The parameter pytree is handed to the communicator as is: the MPI backend packs all leaves
of one dtype into one buffer per schedule round (Horovod's tensor fusion; Sergeev & Del Balso,
arXiv:1802.05799), so flattening here would only add two copies of the model per step (in the
simulator it cost more than the per-leaf exchange, see ``benchmarks/train_throughput.py``).

References
----------
* A. H. Sayed, "Adaptation, learning, and optimization over networks", Found. Trends Mach.
  Learn. 7 (2014) - ATC and CTA/AWC diffusion.
* X. Lian et al., "Can decentralized algorithms outperform centralized algorithms?",
  NeurIPS 2017 - D-PSGD.
* B. Ying et al., "BlueFog: make decentralized algorithms practical for optimization and
  deep learning", arXiv:2111.04287 - ATC/AWC optimizers, hierarchical communication, DmSGD.
* K. Yuan et al., "DecentLaM: decentralized momentum SGD for large-batch deep training",
  ICCV 2021 - DmSGD analysis.
* T. Lin, S. P. Karimireddy, S. U. Stich, M. Jaggi, "Quasi-global momentum: accelerating
  decentralized deep learning on heterogeneous data", ICML 2021.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from bluefog.algorithm import Algorithm
from bluefog.topology import DynamicTopology, Topology
from bluefog.topology.hierarchical import lift_machine_topology

__all__ = [
    "COMMUNICATIONS",
    "DecentralizedState",
    "QGMomentumState",
    "decentralized",
    "dmsgd",
    "qg_dsgdm",
    "communication_bytes_per_step",
]

PyTree = Any

#: Accepted values of ``communication``.
COMMUNICATIONS = ("neighbor", "hierarchical", "allreduce", "gradient_allreduce", "none")
_STYLES = ("atc", "awc")


class DecentralizedState(NamedTuple):
    """State of one agent of :func:`decentralized`.

    Attributes
    ----------
    params : pytree
        The agent's parameters :math:`x_i^t`.
    opt_state : optax state
        The inner transformation's state (e.g. the momentum buffer).
    count : int32 scalar
        Steps taken; the ``t`` of the stochastic gradient and of dynamic topologies.
    """

    params: PyTree
    opt_state: Any
    count: jax.Array


class QGMomentumState(NamedTuple):
    r"""State of one agent of :func:`qg_dsgdm`.

    Attributes
    ----------
    params : pytree
        :math:`x_i^t`.
    momentum : pytree (like params)
        The quasi-global momentum buffer :math:`\hat m_i^{t-1}`.
    count : int32 scalar
    """

    params: PyTree
    momentum: PyTree
    count: jax.Array


# --------------------------------------------------------------------------------------
# argument checks (plain Python, before anything is traced)
# --------------------------------------------------------------------------------------
def _check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")
    return value


def _check_J(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"steps_per_communication must be an int >= 1 (1 = communicate every step); got "
            f"{value!r}."
        )
    return int(value)


def _check_comm_args(communication, steps_per_communication, machine_topology):
    communication = _check_choice(communication, "communication", COMMUNICATIONS)
    J = _check_J(steps_per_communication)
    if communication == "gradient_allreduce" and J != 1:
        raise ValueError(
            "steps_per_communication must be 1 with communication='gradient_allreduce' (the "
            f"gradient is averaged at every step); got {J}. For periodic averaging use "
            "communication='allreduce' (local SGD)."
        )
    if communication == "hierarchical":
        if not isinstance(machine_topology, (Topology, DynamicTopology)):
            raise TypeError(
                "communication='hierarchical' needs machine_topology, a Topology or "
                "DynamicTopology over machines (size = agents / local_size); got "
                f"{type(machine_topology).__name__}. E.g. machine_topology=ring_graph(4)."
            )
    elif machine_topology is not None:
        raise ValueError(
            f"machine_topology is only used with communication='hierarchical'; got "
            f"communication={communication!r}. Drop machine_topology or switch communication."
        )
    return communication, J


def _check_lr(lr, name="lr"):
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)) or not lr > 0:
        raise ValueError(f"{name} must be a positive float or an optax schedule count -> lr; got {lr!r}.")
    return float(lr)


# --------------------------------------------------------------------------------------
# communication, written once
# --------------------------------------------------------------------------------------
def _mix(x: PyTree, ctx, communication: str, machine_topology, t) -> PyTree:
    """:math:`\\mathcal C(x)` for this agent (the backend packs leaves into messages)."""
    if communication in ("none", "gradient_allreduce"):
        return x
    comm = ctx.comm
    if communication == "neighbor":
        return comm.neighbor_allreduce(x, ctx.topology, t)
    if communication == "hierarchical":
        return comm.hierarchical_neighbor_allreduce(x, machine_topology, t)
    return comm.allreduce(x)


def _communicate(x: PyTree, ctx, communication: str, J: int, machine_topology, count) -> PyTree:
    """Apply :math:`\\mathcal C` at steps with ``(count + 1) % J == 0`` (every step if J=1)."""
    if J == 1 or communication in ("none", "gradient_allreduce"):
        return _mix(x, ctx, communication, machine_topology, count)
    # Every agent has the same counter; comm.uniform makes the predicate unbatched under
    # vmap, so only the taken branch runs (no wasted exchange on local steps).
    do_comm = ctx.comm.uniform((count + 1) % J == 0)
    return lax.cond(do_comm,
                    lambda v: _mix(v, ctx, communication, machine_topology, count // J),
                    lambda v: v, x)


def _config(name, communication, style, J, machine_topology, extra):
    cfg = {"optimizer": name, "communication": communication, "style": style,
           "steps_per_communication": J}
    if machine_topology is not None:
        cfg["machine_topology"] = machine_topology.fingerprint
    cfg.update(extra)
    return cfg


# --------------------------------------------------------------------------------------
# the optimizers
# --------------------------------------------------------------------------------------
def decentralized(inner: optax.GradientTransformation, *, communication: str = "neighbor",
                  style: str = "atc", steps_per_communication: int = 1,
                  machine_topology=None, name: str | None = None,
                  config: dict | None = None) -> Algorithm:
    r"""Wrap an optax transformation as a decentralized optimizer (ATC or AWC).

    One step of agent :math:`i` (see the module docstring for :math:`\mathcal C`):

    .. math::

        g_i &= \nabla F_i(x_i^t;\xi_i^t) \quad(\text{averaged over agents if
               communication = "gradient\_allreduce"}) \\
        u_i, s_i^{t+1} &= \text{inner.update}(g_i, s_i^t, x_i^t) \\
        \text{ATC: } x_i^{t+1} &= \mathcal C_t\big(x^t + u\big)_i, \qquad
        \text{AWC: } x_i^{t+1} = \mathcal C_t(x^t)_i + u_i,

    with :math:`\mathcal C_t` the identity unless :math:`(t+1) \bmod J = 0`. For
    ``optax.sgd(lr)`` and ``"neighbor"``, ATC is :math:`X^{t+1} = W(X^t - \gamma G^t)`
    (diffusion / D-PSGD in ATC form) and AWC is :math:`X^{t+1} = W X^t - \gamma G^t`
    (D-PSGD of Lian et al. 2017). ``"gradient_allreduce"`` with every agent started at the
    same point is exactly centralized minibatch SGD with batch ``n * B``.

    Parameters
    ----------
    inner : optax.GradientTransformation
        The local update rule (e.g. ``optax.sgd(0.1, momentum=0.9)``, ``optax.adam(1e-3)``).
    communication : {"neighbor", "hierarchical", "allreduce", "gradient_allreduce", "none"}
        ``"neighbor"`` mixes over ``ctx.topology`` (the run's topology, static or dynamic).
    style : {"atc", "awc"}
        Combination order (ignored by ``"gradient_allreduce"`` and ``"none"``).
    steps_per_communication : int
        :math:`J \ge 1`: communicate every ``J`` steps.
    machine_topology : Topology or DynamicTopology, optional
        Required with ``"hierarchical"``: topology over ``size / local_size`` machines.
    name : str, optional
        Name of the algorithm in logs (default ``"<style>-<communication>"``).
    config : dict, optional
        Extra JSON-able hyper-parameters recorded in ``Algorithm.config`` (e.g. the inner
        optimizer's name and learning rate, which optax objects do not expose).

    Returns
    -------
    Algorithm
        State :class:`DecentralizedState`; ``params(state)`` is ``state.params``.

    References
    ----------
    Sayed (2014); Lian et al. (2017); Ying et al., BlueFog, arXiv:2111.04287 (see module).
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(
            "inner must be an optax.GradientTransformation (e.g. optax.sgd(0.1)); got "
            f"{type(inner).__name__}."
        )
    communication, J = _check_comm_args(communication, steps_per_communication, machine_topology)
    style = _check_choice(style, "style", _STYLES)
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be a dict of JSON-able hyper-parameters; got {type(config).__name__}.")

    def init(params, ctx):
        del ctx
        return DecentralizedState(params, inner.init(params), jnp.zeros((), jnp.int32))

    def step(state, ctx):
        x, s, t = state
        g = ctx.stochastic_grad(x, t)
        if communication == "gradient_allreduce":
            g = ctx.comm.allreduce(g)
        u, s = inner.update(g, s, x)
        if style == "atc":
            x = _communicate(optax.apply_updates(x, u), ctx, communication, J, machine_topology, t)
        else:
            x = optax.apply_updates(_communicate(x, ctx, communication, J, machine_topology, t), u)
        return DecentralizedState(x, s, t + 1)

    name = name or f"{style}-{communication}"
    return Algorithm(init, step, lambda state: state.params, name,
                     _config(name, communication, style, J, machine_topology, config or {}))


def dmsgd(lr, momentum: float = 0.9, *, nesterov: bool = False, communication: str = "neighbor",
          steps_per_communication: int = 1, machine_topology=None) -> Algorithm:
    r"""Decentralized momentum SGD (DmSGD), adapt-then-combine.

    .. math::

        m_i^{t+1} = \beta m_i^t + g_i^t, \qquad
        x_i^{t+1} = \sum_j W_{ij}\big(x_j^t - \gamma\, m_j^{t+1}\big)

    (local heavy-ball momentum, then neighbour averaging of the parameters; with
    ``nesterov=True`` the step uses :math:`g + \beta m^{t+1}`). This is
    :func:`decentralized` around ``optax.sgd(lr, momentum, nesterov)``.

    References
    ----------
    Ying et al., BlueFog (arXiv:2111.04287), Sec. "DmSGD"; K. Yuan et al., "DecentLaM:
    decentralized momentum SGD for large-batch deep training", ICCV 2021, eq. (4).
    """
    lr = _check_lr(lr)
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be a float in [0, 1); got {momentum!r}.")
    extra = {"lr": lr if not callable(lr) else "schedule", "momentum": float(momentum),
             "nesterov": bool(nesterov)}
    return decentralized(optax.sgd(lr, momentum=momentum, nesterov=nesterov),
                         communication=communication, style="atc",
                         steps_per_communication=steps_per_communication,
                         machine_topology=machine_topology, name="dmsgd", config=extra)


def qg_dsgdm(lr, momentum: float = 0.9, *, communication: str = "neighbor",
             steps_per_communication: int = 1, machine_topology=None) -> Algorithm:
    r"""Quasi-global momentum decentralized SGD (QG-DSGDm, Lin et al. 2021, Algorithm 1).

    The momentum buffer tracks the *model difference after gossip*, an estimate of the
    global descent direction, instead of the local gradient (which is biased by the local
    data under non-iid splits):

    .. math::

        d_i^t &= g_i^t + \beta\, \hat m_i^{t-1} \\
        x_i^{t+1} &= \mathcal C_t\big(x^t - \gamma_t\, d^t\big)_i \\
        \hat m_i^t &= \beta\, \hat m_i^{t-1} + (1-\beta)\,
                      \frac{x_i^t - x_i^{t+1}}{\gamma_t}

    (:math:`\hat m^{-1} = 0`; :math:`\mathcal C_t` as in :func:`decentralized`, ATC).

    Parameters
    ----------
    lr : float or callable ``count -> lr``
    momentum : float in [0, 1)
        :math:`\beta` (the paper uses the same value for both roles).
    communication, steps_per_communication, machine_topology
        As in :func:`decentralized` (``"gradient_allreduce"`` is refused: use :func:`dmsgd`).

    References
    ----------
    T. Lin, S. P. Karimireddy, S. U. Stich, M. Jaggi, "Quasi-global momentum: accelerating
    decentralized deep learning on heterogeneous data", ICML 2021, Algorithm 1.
    """
    lr = _check_lr(lr)
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be a float in [0, 1); got {momentum!r}.")
    if communication == "gradient_allreduce":
        raise ValueError(
            "qg_dsgdm: communication='gradient_allreduce' has no gossip to build the quasi-"
            "global momentum from; use dmsgd(lr, momentum, communication='gradient_allreduce')."
        )
    communication, J = _check_comm_args(communication, steps_per_communication, machine_topology)
    beta = float(momentum)

    def init(params, ctx):
        del ctx
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return QGMomentumState(params, zeros, jnp.zeros((), jnp.int32))

    def step(state, ctx):
        x, m, t = state
        gamma = lr(t) if callable(lr) else lr
        g = ctx.stochastic_grad(x, t)
        d = jax.tree_util.tree_map(lambda gi, mi: gi + beta * mi, g, m)
        half = jax.tree_util.tree_map(lambda xi, di: xi - gamma * di, x, d)
        x_new = _communicate(half, ctx, communication, J, machine_topology, t)
        m = jax.tree_util.tree_map(
            lambda mi, xo, xn: beta * mi + (1 - beta) * (xo - xn) / gamma, m, x, x_new)
        return QGMomentumState(x_new, m, t + 1)

    extra = {"lr": lr if not callable(lr) else "schedule", "momentum": beta}
    return Algorithm(init, step, lambda state: state.params, "qg_dsgdm",
                     _config("qg_dsgdm", communication, "atc", J, machine_topology, extra))


# --------------------------------------------------------------------------------------
# communication volume
# --------------------------------------------------------------------------------------
def _rounds(topology) -> float:
    """Mean number of schedule rounds (one message per round per agent)."""
    return float(np.mean([p.schedule.num_rounds for p in topology.patterns]))


def communication_bytes_per_step(params: PyTree, *, communication: str, topology=None,
                                 steps_per_communication: int = 1, machine_topology=None,
                                 local_size: int = 1) -> float:
    r"""Bytes one agent sends per optimizer step (averaged over time).

    With :math:`b` the size of one agent's parameters (or gradient) in bytes, :math:`n` the
    number of agents, :math:`R` the number of schedule rounds (mean over the patterns of a
    dynamic topology) and :math:`J` = ``steps_per_communication``:

    * ``"neighbor"``: :math:`R\, b / J` (every round is a full permutation: one message per
      agent per round);
    * ``"allreduce"`` / ``"gradient_allreduce"``: :math:`2\frac{n-1}{n} b / J` (ring
      allreduce: reduce-scatter plus allgather, Patarasuk & Yuan, JPDC 69 (2009));
    * ``"hierarchical"``: :math:`\big(2\frac{L-1}{L} + R_{\text{machine}}\big) b / J` (ring
      allreduce inside a machine of :math:`L` agents, then the machine graph lifted to
      agents);
    * ``"none"``: 0.

    Parameters
    ----------
    params : pytree
        One agent's parameters (only shapes and dtypes are used).
    communication : str
        One of :data:`COMMUNICATIONS`.
    topology : Topology or DynamicTopology
        The agent topology (needed for ``"neighbor"``, ``"allreduce"`` and
        ``"gradient_allreduce"``, which read ``n`` from it).
    steps_per_communication, machine_topology, local_size
        As in :func:`decentralized` / the runner.
    """
    communication, J = _check_comm_args(communication, steps_per_communication, machine_topology)
    b = float(sum(np.size(leaf) * np.dtype(jnp.result_type(leaf)).itemsize
                  for leaf in jax.tree_util.tree_leaves(params)))
    if communication == "none":
        return 0.0
    if communication == "hierarchical":
        L = int(local_size)
        lifted = lift_machine_topology(machine_topology, L)
        return (2.0 * (L - 1) / L + _rounds(lifted)) * b / J
    if not isinstance(topology, (Topology, DynamicTopology)):
        raise TypeError(
            f"topology must be a Topology or DynamicTopology for communication="
            f"{communication!r}; got {type(topology).__name__}."
        )
    if communication == "neighbor":
        return _rounds(topology) * b / J
    n = topology.size
    return 2.0 * (n - 1) / n * b / J
