r"""Elastic resumption: continue a run from a checkpoint written by a different number of agents.

``bfrun --max-restarts K --elastic`` relaunches a failed job on one rank fewer
(:mod:`bluefog_dist.restart`); the relaunched ``bluefog-train`` finds a checkpoint with
:math:`n` agents while the job now has :math:`m \ne n`. Agent states do not map one to one
(the data is split anew over :math:`m` agents and the topology is rebuilt for :math:`m` from
its constructor), so the state is **redistributed** by this rule (:func:`reshard_state`):

* **parameters**: every new agent starts from the network average of the checkpoint,
  :math:`\bar x = \frac1n \sum_{i=1}^{n} x_i` (computed in float64, stored in the leaf's
  dtype), the model every decentralized method drives its agents to and the one
  ``bluefog-train`` evaluates;
* **integer leaves equal on every old agent** (optax's step counters, so a learning-rate
  schedule continues where it was): carried over;
* **everything else** (momentum, Adam moments, gradient trackers, push-sum weights, error
  feedback memories): re-initialised by the algorithm's own ``init`` at :math:`\bar x` on the
  new agent's data, exactly as a fresh start from :math:`\bar x` would. Carrying such state
  over would break the invariants the methods rely on: gradient tracking needs
  :math:`\sum_i y_i = \sum_i \nabla f_i(x_i)`, which no longer holds once the data moved, and
  a broken invariant biases its fixed point forever.

This is Horovod elastic's rule (on a reset every worker takes one committed state; Sergeev &
Del Balso, arXiv:1802.05799, and the Horovod elastic documentation) adapted to
decentralized training, where the committed state is the consensus average rather than one
worker's copy. The consensus distance is zero right after the resumption.
"""

from __future__ import annotations

import os

import numpy as np

from bluefog_dist.restart import ELASTIC_ENV  # set to "1" by bfrun --elastic (no MPI import)

__all__ = ["ELASTIC_ENV", "elastic_requested", "reshard_state"]


def elastic_requested() -> bool:
    """``True`` when ``bfrun --elastic`` launched this process (``$BLUEFOG_ELASTIC == "1"``)."""
    return os.environ.get(ELASTIC_ENV, "") == "1"


def _agents(tree, what: str) -> int:
    import jax

    sizes = {int(np.shape(a)[0]) for a in jax.tree_util.tree_leaves(tree) if np.ndim(a)}
    if len(sizes) != 1:
        raise ValueError(f"reshard_state: {what} must be stacked with one leading agent axis "
                         f"on every leaf; got leading sizes {sorted(sizes)}. Pass the stacked "
                         "(n, ...) state of a checkpoint (bluefog_train.sharded.load_stacked).")
    return sizes.pop()


def reshard_state(old_state, algorithm, problem, topology, *, local_size: int = 1, seed: int = 0,
                  comm=None):
    r"""The stacked state of ``problem.size`` agents continuing from ``old_state`` of ``n`` agents.

    With :math:`x_i` the parameters of old agent :math:`i`
    (``algorithm.params(old_state[i])``), every new agent :math:`j = 1..m` gets

    .. math::

        s_j = \mathrm{init}\big(\bar x,\ \mathrm{ctx}_j\big), \qquad
        \bar x = \frac1n \sum_{i=1}^{n} x_i,

    where :math:`\mathrm{ctx}_j` holds new agent :math:`j`'s data, the new topology and the
    PRNG key ``fold_in(PRNGKey(seed), j)``; then every integer leaf whose value is the same on
    all old agents (step counters) takes that value. The rule and its reasons are in the
    module docstring.

    Parameters
    ----------
    old_state : pytree
        The stacked ``(n, ...)`` state of the checkpoint (NumPy or JAX leaves).
    algorithm : bluefog.algorithm.Algorithm
        The run's algorithm (the same as the checkpoint's; its per-agent state shapes must
        match ``old_state``'s).
    problem : bluefog.algorithm.Problem
        The new run's problem: its data is split over the :math:`m` new agents.
    topology : bluefog.topology.Topology
        The new run's topology, of size :math:`m`.
    local_size : int
        Agents per machine (hierarchical communication), as in the run.
    seed : int
        The run's seed (the new agents' PRNG keys).
    comm : bluefog_dist.MpiComm, optional
        Under MPI (one agent per rank): the run's communicator. Agent ``comm.rank()`` alone
        is initialised, with this communicator and its own data (``problem`` may hold only
        that agent's rows, ``Problem.shard``); every rank must call this together (as the
        run does), in case ``init`` communicates. Without it, every agent is initialised in
        this process under :func:`bluefog_sim.spmd`, so ``problem`` must hold every agent.

    Returns
    -------
    pytree
        The stacked ``(m, ...)`` state, NumPy leaves, with the structure, shapes and dtypes
        of ``algorithm.init``'s; with ``comm``, agent ``comm.rank()``'s state (unstacked).

    Raises
    ------
    ValueError
        ``old_state`` is not stacked, or its per-agent structure or shapes differ from what
        ``algorithm.init`` gives (a checkpoint of another model or optimizer); the topology's
        size differs from the problem's; ``problem`` lacks the data of an agent to initialise.
    """
    import jax

    from bluefog.algorithm import AgentContext

    _agents(old_state, "old_state")
    m = problem.size
    if topology.size != m:
        raise ValueError(f"reshard_state: topology has {topology.size} agents but problem has "
                         f"{m}; build both for the new number of agents.")
    params = jax.vmap(algorithm.params)(old_state)
    mean = jax.tree_util.tree_map(
        lambda a: np.mean(np.asarray(a, dtype=np.float64), axis=0).astype(np.asarray(a).dtype),
        params)

    expected = [np.shape(a) for a in jax.tree_util.tree_leaves(problem.init_params)]
    got = [np.shape(a) for a in jax.tree_util.tree_leaves(mean)]
    if jax.tree_util.tree_structure(mean) != jax.tree_util.tree_structure(problem.init_params) \
            or expected != got:
        raise ValueError(
            "reshard_state: old_state does not have the per-agent structure of the problem's "
            f"parameters (expected shapes {expected}, the checkpoint has {got}): a checkpoint "
            "of another model or optimizer? Resume with the options that wrote the checkpoint.")

    def init(comm, data, key):
        return algorithm.init(mean, AgentContext(comm, topology, problem, data, key))

    fresh = _fresh(init, problem, m, local_size, seed, comm)
    old_leaves, old_def = jax.tree_util.tree_flatten(old_state)
    new_leaves, new_def = jax.tree_util.tree_flatten(fresh)
    same = old_def == new_def and all(
        np.shape(o)[1:] == np.shape(f)[1:] and np.asarray(o).dtype == f.dtype
        for o, f in zip(old_leaves, new_leaves))
    if not same:
        raise ValueError(
            "reshard_state: old_state does not have the per-agent structure of "
            f"{getattr(algorithm, 'name', 'the algorithm')}'s state (a checkpoint of another "
            "model or optimizer?). Resume with the options that wrote the checkpoint.")
    out = []
    for old, new in zip(old_leaves, new_leaves):
        old, new = np.asarray(old), np.asarray(new)
        if np.issubdtype(old.dtype, np.integer) and (old == old[:1]).all():
            new = np.broadcast_to(old[:1], new.shape).copy()
        out.append(new if comm is None else new[0])
    return jax.tree_util.tree_unflatten(new_def, out)


def _fresh(init, problem, m: int, local_size: int, seed: int, comm):
    """``init(comm, data_j, key_j)`` of the new agents, stacked: all ``m`` in this process
    (:func:`bluefog_sim.spmd`), or with ``comm`` agent ``comm.rank()`` alone, shape
    ``(1, ...)``, under MPI."""
    import jax

    import bluefog_sim
    from bluefog.engine import agent_key

    if comm is None:
        problem.require_all_agents(
            "reshard_state (every new agent is initialised in this process)",
            "Pass comm= (the run's MPI communicator) to initialise this rank's agent only.")
        return bluefog_sim.spmd(init, m, local_size=local_size)(
            problem.data, bluefog_sim.agent_keys(seed, m))
    r = comm.rank()
    state = jax.jit(lambda d, k: init(comm, d, k))(problem.agent_data(r), agent_key(seed, r))
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[None], state)
