r"""Decentralized optimizers as ``optax.GradientTransformation`` s, for the user's own loop.

:func:`algorithms.optim.decentralized` runs inside the engine and computes its own
gradients from a :class:`bluefog.Problem`. Here the user keeps the loss, the model, the data
pipeline and the loop, and adds one transformation to the end of an optax chain; its
``update`` performs the neighbor exchange through a Communicator::

    tx = optax_decentralized(comm, topology, style="atc",
                             inner=optax.adamw(optax.cosine_decay_schedule(1e-3, 1000)))
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)   # neighbor exchange inside
    params = optax.apply_updates(params, updates)

With :math:`x_i` agent :math:`i`'s parameters, :math:`u_i` the update of the inner chain
(e.g. :math:`-\gamma_t\,\text{adam}(g_i) - \gamma_t\lambda x_i` for ``adamw``) and
:math:`\mathcal C_t(x)_i = \sum_j W_{ij}(t)\, x_j` (``comm.neighbor_allreduce``), the
returned update :math:`\Delta_i` is chosen so that ``params + updates`` is the mixed step:

==========  =========================================  =======================================
style       :math:`x_i^{t+1} = x_i^t + \Delta_i`       :math:`\Delta_i`
==========  =========================================  =======================================
``"atc"``   :math:`\mathcal C_t(x^t + u^t)_i`          :math:`\mathcal C_t(x^t+u^t)_i - x_i^t`
``"awc"``   :math:`\mathcal C_t(x^t)_i + u_i^t`        :math:`\mathcal C_t(x^t)_i - x_i^t +
                                                       u_i^t`
==========  =========================================  =======================================

ATC (adapt-then-combine) mixes the adapted parameters; AWC (adapt-with-combine) mixes the
current ones, so the exchange does not depend on the gradient and can overlap with the
backward pass. With ``optax.sgd(lr)``, ATC is diffusion / D-PSGD in ATC form,
:math:`X^{t+1} = W(X^t - \gamma G^t)`, and AWC is D-PSGD, :math:`X^{t+1} = WX^t - \gamma G^t`.
With ``steps_per_communication = J > 1`` the exchange happens at steps with
:math:`(t+1) \bmod J = 0` only (:math:`\mathcal C_t` is the identity otherwise: local SGD),
and a time-varying topology advances once per exchange. The transformation's own state holds
the step counter :math:`t`.

The same code runs in both backends: in the simulator inside a ``jax.vmap`` over agents with
the agent axis name (:func:`bluefog_sim.spmd` or ``jax.vmap(step, axis_name=comm.axis_name)``
with :class:`bluefog_sim.SimComm`), and under ``bfrun`` inside a jitted step with
:class:`bluefog_dist.MpiComm` (one agent per rank).

Model state that is not trained by gradients (BatchNorm running statistics) is not an
optax parameter; :func:`mix_state` averages it with the same :math:`W` as the parameters,
:math:`s_i \leftarrow \sum_j W_{ij}(t)\, s_j` (Bluefog averages every buffer of a model the
same way). For running variances this is the weighted mean of the agents' variances, not the
variance of the pooled data; at consensus the two coincide.

References
----------
* A. H. Sayed, "Adaptation, learning, and optimization over networks", Found. Trends Mach.
  Learn. 7 (2014) - ATC and CTA/AWC diffusion.
* X. Lian et al., "Can decentralized algorithms outperform centralized algorithms?",
  NeurIPS 2017 - D-PSGD.
* B. Ying et al., "BlueFog: make decentralized algorithms practical for optimization and
  deep learning", arXiv:2111.04287 - ``DistributedAdaptThenCombineOptimizer`` /
  ``DistributedAdaptWithCombineOptimizer``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from bluefog.topology import DynamicTopology, Topology
from bluefog.validation import check_choice, check_positive_int

from ._common import require_weights
from ._decentralized import STYLES, communicate

__all__ = ["DecentralizedMixState", "optax_decentralized", "mix_state"]


class DecentralizedMixState(NamedTuple):
    """State of the mixing transformation of :func:`optax_decentralized`.

    Attributes
    ----------
    count : int32 scalar
        Updates applied so far: the :math:`t` that selects the exchange steps and the pattern
        of a time-varying topology. Equal on every agent.
    """

    count: jax.Array


def _check_comm_topology(comm, topology, where: str):
    if not callable(getattr(comm, "neighbor_allreduce", None)) or not hasattr(comm, "size"):
        raise TypeError(
            f"{where}: comm must be a bluefog Communicator (bluefog_sim.SimComm(n) in the "
            f"simulator, bluefog_dist.MpiComm() under bfrun); got {type(comm).__name__}.")
    if not isinstance(topology, (Topology, DynamicTopology)):
        raise TypeError(
            f"{where}: topology must be a bluefog.topology.Topology or DynamicTopology; got "
            f"{type(topology).__name__}. E.g. topology=exponential_graph({comm.size}).")
    if topology.size != comm.size:
        raise ValueError(
            f"{where}: topology.size must equal the number of agents comm.size={comm.size}; "
            f"got topology.size={topology.size}. Build the topology for {comm.size} agents.")


def optax_decentralized(comm, topology, *, style: str = "atc", inner=None,
                        steps_per_communication: int = 1) -> optax.GradientTransformation:
    r"""A decentralized optimizer (ATC or AWC) as an ``optax.GradientTransformation``.

    ``update(updates, state, params)`` takes the inner chain's updates :math:`u_i` and
    returns :math:`\Delta_i` with :math:`x_i + \Delta_i` equal to (module docstring)

    .. math::

        \text{ATC: } \sum_j W_{ij}(t)\,(x_j + u_j), \qquad
        \text{AWC: } \sum_j W_{ij}(t)\, x_j + u_i,

    exchanging with the neighbors through ``comm.neighbor_allreduce`` (every
    ``steps_per_communication``-th update; the identity mixing otherwise). Use it as the
    last element of a chain, or pass the local optimizer as ``inner``:
    ``optax_decentralized(comm, topo, inner=optax.adamw(schedule))`` is
    ``optax.chain(optax.adamw(schedule), optax_decentralized(comm, topo))``.
    Call ``update`` on every agent at every step, inside the backend's mapped/jitted step.

    Parameters
    ----------
    comm : Communicator
        :class:`bluefog_sim.SimComm` (inside ``jax.vmap`` over its ``axis_name``) or
        :class:`bluefog_dist.MpiComm` (one agent per rank, under ``bfrun``).
    topology : Topology or DynamicTopology
        Of size ``comm.size``, row-stochastic (:math:`W\mathbf 1 = \mathbf 1`, so that a
        consensual point is a fixed point of the mixing).
    style : {"atc", "awc"}
        Adapt-then-combine or adapt-with-combine.
    inner : optax.GradientTransformation, optional
        The local optimizer, chained before the mixing (schedules included).
    steps_per_communication : int
        :math:`J \ge 1`: exchange at updates with :math:`(t+1) \bmod J = 0`.

    Returns
    -------
    optax.GradientTransformation
        State :class:`DecentralizedMixState` (or a chain state ending with it). ``update``
        needs ``params``.

    Raises
    ------
    TypeError
        ``comm``, ``topology`` or ``inner`` of the wrong type.
    ValueError
        Wrong ``style``, ``steps_per_communication`` or size, or a topology that is not
        row-stochastic.

    References
    ----------
    Sayed (2014); Lian et al., NeurIPS 2017; Ying et al., BlueFog, arXiv:2111.04287
    (``DistributedAdaptThenCombineOptimizer``, ``DistributedAdaptWithCombineOptimizer``).
    """
    where = "optax_decentralized"
    _check_comm_topology(comm, topology, where)
    style = check_choice(style, "style", STYLES, where=where)
    J = check_positive_int(steps_per_communication, "steps_per_communication", where=where)
    require_weights(topology, where, row=True)
    if inner is not None and not isinstance(inner, optax.GradientTransformation):
        raise TypeError(
            f"{where}: inner must be an optax.GradientTransformation (e.g. optax.adamw(1e-3)) "
            f"or None; got {type(inner).__name__}.")
    ctx = SimpleNamespace(comm=comm, topology=topology)

    def init(params):
        del params
        return DecentralizedMixState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(
                f"{where}: update needs params (the mixing acts on the parameters); call "
                "tx.update(grads, opt_state, params).")
        t = state.count
        if style == "atc":
            target = communicate(optax.apply_updates(params, updates), ctx, "neighbor", J,
                                 None, t)
            delta = jax.tree_util.tree_map(lambda n, p: (n - p).astype(p.dtype), target, params)
        else:
            mixed = communicate(params, ctx, "neighbor", J, None, t)
            delta = jax.tree_util.tree_map(lambda m, p, u: (m - p + u).astype(p.dtype),
                                           mixed, params, updates)
        return delta, DecentralizedMixState(t + 1)

    tx = optax.GradientTransformation(init, update)
    return tx if inner is None else optax.chain(inner, tx)


def mix_state(comm, topology, state, t=None):
    r"""Average non-trained model state (BatchNorm statistics) with the neighbors.

    .. math:: s_i \leftarrow \sum_j W_{ij}(t)\, s_j

    the same mixing as the parameters (``comm.neighbor_allreduce``); call it once per step,
    with the step counter ``t`` for a time-varying topology (e.g. the ``count`` of the
    :class:`DecentralizedMixState` before the update, so that parameters and statistics
    use the same pattern). Integer leaves (step counters of some libraries) are left
    unchanged.

    Parameters
    ----------
    comm : Communicator
    topology : Topology or DynamicTopology
        Of size ``comm.size``.
    state : pytree
        E.g. Flax's ``variables["batch_stats"]``.
    t : int or int32 scalar, optional
        The step (needed for a time-varying topology).

    Returns
    -------
    pytree
        Like ``state``.

    References
    ----------
    Ying et al., BlueFog, arXiv:2111.04287 (model buffers averaged with the parameters).
    """
    _check_comm_topology(comm, topology, "mix_state")
    leaves, treedef = jax.tree_util.tree_flatten(state)
    floats = [i for i, v in enumerate(leaves) if jnp.issubdtype(jnp.asarray(v).dtype,
                                                                  jnp.inexact)]
    if not floats:
        return state
    mixed = comm.neighbor_allreduce([leaves[i] for i in floats], topology, t)
    out = list(leaves)
    for i, v in zip(floats, mixed):
        out[i] = v
    return jax.tree_util.tree_unflatten(treedef, out)
