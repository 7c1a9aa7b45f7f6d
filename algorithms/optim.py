r"""Decentralized optimizers built on optax, packaged as :class:`bluefog.Algorithm`.

Agent :math:`i` holds its own parameters :math:`x_i` and optimizer state; at step :math:`t`
it draws a minibatch gradient :math:`g_i^t = \nabla F_i(x_i^t; \xi_i^t)`
(``ctx.stochastic_grad(x, t)``), turns it into an update :math:`u_i^t` with any
``optax.GradientTransformation`` (``u, s = inner.update(g, s, x)``; for plain SGD
:math:`u = -\gamma g`), and combines with its neighbors through the communicator. With
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
import optax

from bluefog.algorithm import Algorithm
from bluefog.validation import check_bool, check_choice, check_unit_interval

from ._common import as_float_tree
from ._decentralized import (COMMUNICATIONS, STYLES, DecentralizedState, build,
                             check_communication, check_compression, check_lr_or_schedule,
                             communicate,
                             family_config, require_mixing, sgd_member)
from ._volume import communication_bytes_per_step

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
# the optimizers
# --------------------------------------------------------------------------------------
def decentralized(inner: optax.GradientTransformation, *, communication: str = "neighbor",
                  style: str = "atc", steps_per_communication: int = 1,
                  machine_topology=None, name: str | None = None,
                  config: dict | None = None, compressor=None,
                  consensus_step: float | None = None) -> Algorithm:
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

    Mixing weights are checked once for the whole family (this function, :func:`dmsgd`,
    :func:`qg_dsgdm`, :func:`algorithms.dsgd`): with ``"neighbor"`` the run's topology must be
    row-stochastic, :math:`W\mathbf 1 = \mathbf 1` (refused before the first step otherwise:
    with column-stochastic weights :math:`W^k` tends to :math:`\pi\mathbf 1^\top`, so the
    agents are scaled by :math:`n\pi_i` instead of agreeing, and the run ends far from the
    optimum; use :func:`algorithms.push_diging` there), and ``machine_topology`` must be
    row-stochastic (refused here).

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
    compressor : bluefog.compression.Compressor, optional
        Compressed communication (``communication="neighbor"``, ``style="atc"``): the mixing
        step becomes CHOCO's (Koloskova, Stich & Jaggi, ICML 2019),
        :math:`x_i^{t+1} = h_i + \gamma(s_i - \hat x_i)` with :math:`h_i = x_i^t + u_i`,
        :math:`\hat x_i \mathrel{+}= \hat q_i`, :math:`s_i \mathrel{+}= \sum_j W_{ij}\hat q_j`
        and :math:`\hat q_i = \mathcal D(\mathcal C(h_i - \hat x_i))`: only payloads cross the
        wire. Needs a doubly stochastic ``W``.
    consensus_step : float in (0, 1], required with ``compressor``
        CHOCO's :math:`\gamma` (e.g. 0.5 for 8-bit or top-10%, smaller for sparser
        compressors).

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
            "decentralized: inner must be an optax.GradientTransformation (e.g. optax.sgd(0.1)); "
            f"got {type(inner).__name__}. Wrap your update rule with optax.GradientTransformation."
        )
    communication, J = check_communication(communication, steps_per_communication,
                                           machine_topology, where="decentralized")
    style = check_choice(style, "style", STYLES, where="decentralized")
    if config is not None and not isinstance(config, dict):
        raise TypeError(
            "decentralized: config must be a dict of JSON-able hyper-parameters; got "
            f"{type(config).__name__}. Pass e.g. config={{'lr': 0.1}}."
        )
    if name is not None and not isinstance(name, str):
        raise TypeError(f"decentralized: name must be a str; got {type(name).__name__}.")
    compression = check_compression(compressor, consensus_step, communication, style,
                                    where="decentralized")
    name = name or f"{style}-{communication}" + ("-choco" if compression else "")
    config = dict(config or {})
    if compression:
        config.update(compressor=compressor.name, consensus_step=compression[1])
    return build(inner, communication=communication, style=style, J=J,
                 machine_topology=machine_topology, stochastic=True, name=name,
                 where="decentralized", config=config, compression=compression)


def dmsgd(lr, momentum: float = 0.9, *, nesterov: bool = False, communication: str = "neighbor",
          steps_per_communication: int = 1, machine_topology=None, compressor=None,
          consensus_step: float | None = None) -> Algorithm:
    r"""Decentralized momentum SGD (DmSGD), adapt-then-combine.

    .. math::

        m_i^{t+1} = \beta m_i^t + g_i^t, \qquad
        x_i^{t+1} = \sum_j W_{ij}\big(x_j^t - \gamma\, m_j^{t+1}\big)

    (local heavy-ball momentum, then neighbor averaging of the parameters; with
    ``nesterov=True`` the step uses :math:`g + \beta m^{t+1}`). This is
    :func:`decentralized` around ``optax.sgd(lr, momentum, nesterov)``, the one
    implementation of the SGD family: :func:`algorithms.dsgd` is ``dmsgd`` with
    ``momentum=0`` by default and :func:`algorithms.gradient_allreduce` is
    ``dmsgd(communication="gradient_allreduce")``; the spellings give bit-identical
    trajectories (tested). With ``communication="neighbor"`` the run's topology must be
    row-stochastic (:math:`W\mathbf 1 = \mathbf 1`), checked before the first step.

    Parameters
    ----------
    lr : float or callable ``count -> lr``
        Step size :math:`\gamma > 0` (finite), or an optax schedule.
    momentum : float in [0, 1)
        Heavy-ball coefficient :math:`\beta`.
    nesterov : bool
    communication, steps_per_communication, machine_topology
        As in :func:`decentralized`.
    compressor, consensus_step
        Compressed (CHOCO) mixing, as in :func:`decentralized`.

    Returns
    -------
    Algorithm
        State :class:`DecentralizedState`; ``params(state)`` is ``state.params``.

    References
    ----------
    Ying et al., BlueFog (arXiv:2111.04287), Sec. "DmSGD"; K. Yuan et al., "DecentLaM:
    decentralized momentum SGD for large-batch deep training", ICCV 2021, eq. (4).
    """
    lr = check_lr_or_schedule(lr, where="dmsgd")
    beta = check_unit_interval(momentum, "momentum", where="dmsgd")
    nesterov = check_bool(nesterov, "nesterov", where="dmsgd")
    communication, J = check_communication(communication, steps_per_communication,
                                           machine_topology, where="dmsgd")
    compression = check_compression(compressor, consensus_step, communication, "atc",
                                    where="dmsgd")
    return sgd_member(lr, beta, nesterov=nesterov, communication=communication, J=J,
                      machine_topology=machine_topology, stochastic=True,
                      name="dmsgd" + ("-choco" if compression else ""), where="dmsgd",
                      compression=compression)


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
    lr = check_lr_or_schedule(lr, where="qg_dsgdm")
    beta = check_unit_interval(momentum, "momentum", where="qg_dsgdm")
    if communication == "gradient_allreduce":
        raise ValueError(
            "qg_dsgdm: communication='gradient_allreduce' has no gossip to build the quasi-"
            "global momentum from; use dmsgd(lr, momentum, communication='gradient_allreduce')."
        )
    communication, J = check_communication(communication, steps_per_communication,
                                           machine_topology, where="qg_dsgdm")

    def init(params, ctx):
        require_mixing(ctx, communication, "qg_dsgdm")
        x = as_float_tree(params)
        return QGMomentumState(x, jax.tree_util.tree_map(jnp.zeros_like, x),
                               jnp.zeros((), jnp.int32))

    def step(state, ctx):
        x, m, t = state
        gamma = lr(t) if callable(lr) else lr
        g = ctx.stochastic_grad(x, t)
        d = jax.tree_util.tree_map(lambda gi, mi: gi + beta * mi, g, m)
        half = jax.tree_util.tree_map(lambda xi, di: xi - gamma * di, x, d)
        x_new = communicate(half, ctx, communication, J, machine_topology, t)
        m = jax.tree_util.tree_map(
            lambda mi, xo, xn: beta * mi + (1 - beta) * (xo - xn) / gamma, m, x, x_new)
        return QGMomentumState(x_new, m, t + 1)

    extra = {"lr": lr if not callable(lr) else "schedule", "momentum": beta}
    return Algorithm(init, step, lambda state: state.params, "qg_dsgdm",
                     family_config("qg_dsgdm", communication, "atc", J, machine_topology, extra))
