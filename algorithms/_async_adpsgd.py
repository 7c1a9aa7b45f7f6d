r"""AD-PSGD (asynchronous decentralized parallel SGD), written against the window ops.

Lian et al. (2018): whenever agent :math:`i` finishes a gradient, it averages its model with
one random neighbour :math:`j` and applies the gradient computed on the model it read:

.. math::

    g = \widetilde\nabla f_i(x_i),\qquad
    x_i,\ x_j \leftarrow \tfrac12 (x_i + x_j),\qquad x_i \leftarrow x_i - \alpha g.

The paper makes the pairwise average atomic (a lock on both models). With one-sided windows
the two halves of the average are applied by each side: agent :math:`i` reads the newest copy
:math:`\hat x_j` of :math:`x_j` that has *arrived* (window ``"model"``, refreshed by
``win_put`` after every step of :math:`j`), sets :math:`d = \tfrac12(\hat x_j - x_i)`, adds
:math:`d` to its own model and sends :math:`-d` to :math:`j` alone (``win_accumulate`` on
window ``"delta"`` with a one-hot per-round weight), which :math:`j` adds at its next step.
The sum :math:`\sum_i x_i` (plus deltas in flight) changes only by the gradient steps, as in
the paper.

Without the paper's lock, the rule for *which* neighbour to average with decides whether the
method converges with a straggler (``pairing``, :data:`PAIRINGS`):

* ``"any"``: the newest arrived copy of a uniformly drawn neighbour, also one already averaged
  with. :math:`\hat x_j` does not contain the corrections sent to :math:`j` until :math:`j`
  steps and publishes again, so a straggler :math:`j` (10x slower) received about 10
  half-corrections per own step, all computed against the same value it had already left,
  moved about 5x the distance to its neighbours, and the iteration diverged.
* ``"fresh"``: only a neighbour whose slot holds a *fresh* copy, one whose sender stamp
  (``win_info(...).stamps``, the sender's put counter) is newer than the stamp of the copy
  :math:`i` last averaged with (kept per slot in :attr:`ADPSGDState.seen`). Each *pair* then
  has at most one correction per published model, but a straggler with :math:`D` neighbours
  still receives up to :math:`D` half-corrections against one published model:
  :math:`x_j + \tfrac{k}{2}(\bar x_{\mathcal N} - x_j)` overshoots the neighbours' mean once
  :math:`k > 2`. Pure averaging converges, slowly (README: the MLP with a 10x straggler did
  not reach its target loss on one seed of three).
* ``"turns"`` (default): a lock-free stand-in for the lock. The out-edges of :math:`j`, in
  schedule-round order, take turns on its published models: model :math:`s` is the turn of
  its :math:`(s \bmod D_j)`-th out-neighbour (:func:`partner_turns`). Agent :math:`i` may
  average with :math:`j`'s copy stamped :math:`s` only if a model of its turn has been
  published since it last averaged with :math:`j` (a stamp :math:`s'` with
  :math:`\text{seen} < s' \le s` and :math:`s' \equiv \text{turn} \pmod{D_j}`), so each
  neighbour averages with :math:`j` at most once per :math:`D_j` models of :math:`j`. Every
  model of a straggler is seen by all its neighbours, and its turn's partner has many own
  steps to take it, so it receives one half-correction (a second only from a neighbour that
  let its own earlier turn pass): no overshoot however slow it is. Between
  agents of equal speed a copy that arrived late is still used (rather than its turn lost),
  so every agent keeps averaging about once per step. No communication beyond the model
  puts is needed: both sides know the stamp and the topology.

The neighbour is drawn uniformly among the candidate slots; when there is none, the step is
the gradient step alone. The ``d``/``-d`` pair is the same under every rule, so the mass
property above holds for all three. The stamp is used rather than the slot's version
counter: under MPI a read with per-slot weights resets the versions of *every* slot, zero
weights included, while stamps do not depend on reads; the choice is therefore the same in
both backends and in a replay (:func:`bluefog.asynchrony.replay_timeline`). Under MPI a copy
that arrives between ``win_info`` and the read can still be averaged once more.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.algorithm import Algorithm
from bluefog.topology import Topology
from bluefog.validation import check_choice, check_positive_float

from ._common import as_float_tree, require_static, require_weights, tree_axpy, zero_count

__all__ = ["ADPSGDState", "PAIRINGS", "ad_psgd", "partner_turns"]


class ADPSGDState(NamedTuple):
    """State of :func:`ad_psgd` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The local model :math:`x_i`.
    windows : dict ``{"model": Window, "delta": Window}``
        Neighbours' published models; averaging corrections sent to this agent.
    count : int32 scalar
        This agent's own steps (also the key of its neighbour choice, ``fold_in(key, count)``).
    seen : int32 ``(R,)``
        Per slot of window ``"model"``: the sender stamp of the copy this agent last averaged
        with (``-1``: none yet). A slot is fresh when its stamp is larger.
    """

    x: Any
    windows: dict
    count: jax.Array
    seen: jax.Array


#: The rules for choosing the neighbour to average with (module docstring).
PAIRINGS = ("turns", "fresh", "any")


def ad_psgd(lr: float, *, pairing: str = "turns") -> Algorithm:
    r"""AD-PSGD over one-sided windows (see the module docstring for the update).

    Needs a static topology with symmetric edges (each neighbour :math:`j` is both read from
    and written to); the weights of ``W`` are not used, only its edges. The neighbour of each
    step is drawn with ``fold_in(fold_in(key, count), 1)``, uniformly over the candidate
    in-edges of ``pairing`` (no average when there is none).

    Delay assumptions: Lian et al. prove an :math:`O(1/\sqrt{K})` rate for non-convex
    objectives when the staleness of the gradient (updates by others between reading
    :math:`x_i` and writing it) is bounded by :math:`T`, the step size is small enough for
    :math:`T`, and the neighbour choices form a doubly stochastic expected mixing matrix.
    Their averaging step is atomic; the ``pairing`` rules are this implementation's
    substitute (``"turns"``: each neighbour at most once per :math:`D_j` published models
    of :math:`j`), not part of their analysis.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    pairing : {"turns", "fresh", "any"}, keyword-only
        ``"turns"`` (default): the neighbours of :math:`j` take turns on its published
        models (one correction per model of a straggler). ``"fresh"``: each model may be
        averaged by every neighbour once (it converges slowly with a straggler). ``"any"``:
        the first rule, averaging also with a copy already averaged with; it diverges with a
        10x straggler (README, "Asynchronous training and stragglers").

    References
    ----------
    X. Lian, W. Zhang, C. Zhang, J. Liu, "Asynchronous decentralized parallel stochastic
    gradient descent", ICML 2018. Bluefog ``win_put`` / ``win_accumulate`` /
    ``get_win_version`` (Ying et al., "BlueFog: Make decentralized algorithms practical for
    optimization and deep learning", arXiv:2111.04287, 2021).
    """
    lr = check_positive_float(lr, "lr", where="ad_psgd")
    pairing = check_choice(pairing, "pairing", PAIRINGS, where="ad_psgd")

    def init(params, ctx) -> ADPSGDState:
        require_static(ctx.topology, "ad_psgd", "async_sgp")
        require_weights(ctx.topology, "ad_psgd", row=True, column=True, symmetric=True)
        x = as_float_tree(params)
        wins = ctx.comm.win_create(None, x, "model", ctx.topology)
        wins = ctx.comm.win_create(wins, x, "delta", ctx.topology, zero_init=True)
        seen = jnp.full_like(ctx.comm.win_in_neighbors(wins, "model"), -1)
        return ADPSGDState(x, wins, zero_count(), seen)

    def step(state: ADPSGDState, ctx) -> ADPSGDState:
        comm, dtype = ctx.comm, _dtype(state.x)
        delta, wins = comm.win_update(state.windows, "delta", 0.0,
                                      _real_slots(comm, state.windows, "delta", dtype),
                                      reset=True)
        x = tree_axpy(1.0, delta, state.x)             # the halves neighbours sent us
        g = ctx.stochastic_grad(x, state.count)
        key = jax.random.fold_in(jax.random.fold_in(ctx.key, state.count), 1)
        slot, avg, seen = _choose(comm, wins, state.seen, key, pairing, ctx.topology)
        sources = comm.win_in_neighbors(wins, "model")
        onehot = jnp.arange(sources.shape[0]) == slot
        x_j, wins = comm.win_update(wins, "model", 0.0, (onehot & avg).astype(dtype))
        d = jax.tree_util.tree_map(lambda a, b: jnp.where(avg, 0.5 * (a - b), 0.0), x_j, x)
        outs = comm.win_out_neighbors(wins, "delta")
        to_j = ((outs == sources[slot]) & avg).astype(dtype)
        wins = comm.win_accumulate(wins, jax.tree_util.tree_map(jnp.negative, d), "delta",
                                   dst_weights=to_j, self_weight=0.0)
        x = tree_axpy(-lr, g, tree_axpy(1.0, d, x))
        wins = comm.win_put(wins, x, "model")
        return ADPSGDState(x, wins, state.count + 1, seen)

    return Algorithm(init, step, lambda s: s.x, "ad_psgd",
                     {"lr": lr, "pairing": pairing})


def partner_turns(topology) -> tuple[np.ndarray, np.ndarray]:
    r"""``(turn, period)``, int32 ``(n, R)``: for agent :math:`i` and slot :math:`r` of its
    window (in-neighbour :math:`j`, schedule round :math:`r`), the position of round
    :math:`r` among :math:`j`'s real out-rounds and their number :math:`D_j` (``0, 1`` for a
    padding slot). Under ``pairing="turns"`` the model of :math:`j` with sender stamp
    :math:`s` is the turn of the agent whose slot has ``turn == s mod period``: round-robin
    over :math:`j`'s out-neighbours.

    Parameters
    ----------
    topology : Topology
        Static; its schedule's rounds number the window slots in both backends.

    References
    ----------
    The turns replace the lock of Lian et al., "Asynchronous decentralized parallel
    stochastic gradient descent", ICML 2018 (module docstring); the rounds are the
    topology's schedule (:mod:`bluefog.topology`).
    """
    if not isinstance(topology, Topology):
        raise TypeError(f"partner_turns: topology must be a static bluefog.topology.Topology; "
                        f"got {type(topology).__name__}. ad_psgd needs a static topology.")
    rounds = topology.schedule.rounds
    n, R = topology.size, len(rounds)
    outs = [[r for r, rnd in enumerate(rounds) if rnd.active[rnd.destinations[j]]]
            for j in range(n)]
    turn, period = np.zeros((n, R), np.int32), np.ones((n, R), np.int32)
    for r, rnd in enumerate(rounds):
        for i in np.flatnonzero(rnd.active):
            j = int(rnd.sources[i])
            turn[i, r], period[i, r] = outs[j].index(r), len(outs[j])
    return turn, period


def _choose(comm, windows, seen, key, pairing, topology):
    """``(slot, average?, new seen)``: the slot of window ``"model"`` to average with, drawn
    uniformly among the candidates (see :data:`PAIRINGS`)."""
    sources = comm.win_in_neighbors(windows, "model")
    real = sources >= 0
    if pairing == "any":
        slot = jax.random.categorical(key, jnp.where(real, 0.0, -jnp.inf))
        return slot, jnp.asarray(True), seen
    stamps = comm.win_info(windows, "model").stamps
    due = stamps                             # "fresh": a copy newer than the one last used
    if pairing == "turns":                   # the newest stamp <= s that is my turn
        turn, period = (jnp.asarray(t)[comm.rank()] for t in partner_turns(topology))
        due = stamps - jnp.mod(stamps - turn, period)
    fresh = real & (due > seen)              # seen >= -1, so a negative due never counts
    avg = jnp.any(fresh)
    slot = jax.random.categorical(key, jnp.where(jnp.where(avg, fresh, real), 0.0, -jnp.inf))
    take = (jnp.arange(sources.shape[0]) == slot) & avg
    return slot, avg, jnp.where(take, stamps, seen)


def _dtype(x):
    return jax.tree_util.tree_leaves(x)[0].dtype


def _real_slots(comm, windows, name, dtype):
    # only through the Communicator: the window state is backend-specific (a simulator
    # Window pytree, or just a name under MPI)
    return (comm.win_in_neighbors(windows, name) >= 0).astype(dtype)
