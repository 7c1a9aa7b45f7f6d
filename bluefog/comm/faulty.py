r"""Mixing under a fault model: the receiver's rule applied round by round.

Called by :class:`~bluefog.comm.ScheduleCommunicator` when it was built with ``faults=``.
Every round is still a full permutation and every message is still sent (under MPI the
``sendrecv`` runs as usual); the receiver ``i`` evaluates the fault model's mask
:math:`\delta_{ij}(t) = 1 - \text{lost}(t, i, j)` for its source :math:`j = \sigma_r(i)` (a
pure function of the step counter, :mod:`bluefog.faults.spec`) and uses the message only
where it is 1:

* ``"renormalise"``: :math:`x_i^{+} = \bigl(s_i x_i + \sum_r \delta_r w^{(r)}_i
  x_{\sigma_r(i)}\bigr) / \bigl(s_i + \sum_r \delta_r w^{(r)}_i\bigr)`; for a uniform-average
  row the weights are replaced by 1 (sum what arrived, divide by the integer count), as the
  fault-free path does.
* ``"absorb"``: :math:`x_i^{+} = s_i x_i + \sum_r \delta_r w^{(r)}_i x_{\sigma_r(i)} +
  \bigl(\sum_r (1 - \delta_r) w^{(r)}_i\bigr) x_i`.

``"keep_last"`` needs per-link memory and is applied by the fault-aware algorithm wrapper
(:func:`bluefog.faults.with_faults`) on top of :meth:`neighbor_allgather`, whose lost slots
carry weight 0 and value 0 here.
"""

from __future__ import annotations

import copy

import jax.numpy as jnp

from ..faults import Faults
from .mixing import uniform_counts

__all__ = ["check_faults", "copy_with_faults", "origin", "delivered", "faulty_mix", "faulty_slot",
           "refuse_compressed"]


def check_faults(faults, size: int):
    """``faults`` validated for ``size`` agents (``None`` passes through)."""
    if faults is None:
        return None
    if not isinstance(faults, Faults):
        raise TypeError(f"faults must be a bluefog.faults.Faults or None; got "
                        f"{type(faults).__name__}. Pass e.g. faults=Faults(MessageLoss(0.1)).")
    return faults.check_size(size)


def copy_with_faults(comm, faults):
    """A shallow copy of ``comm`` with ``faults`` (validated for ``comm.size`` agents; ``None``:
    none); the copy shares the backend's resources (under MPI, the cloned communicator)."""
    new = copy.copy(comm)
    new.faults = check_faults(faults, comm.size)
    new._origin = origin(comm)  # the communicator whose resources the copy shares
    return new


def origin(comm):
    """The communicator that :func:`copy_with_faults` copied ``comm`` from (else ``comm``):
    copies share its resources (under MPI, the cloned communicator), so compiled programs
    are keyed by the origin plus the faults' structure (:mod:`bluefog.engine.cache`)."""
    return comm.__dict__.get("_origin", comm)


def refuse_compressed(faults, op: str) -> None:
    """Compressed mixing is not covered by fault models: refuse it with the fix."""
    if faults is not None:
        raise ValueError(f"{op}: fault models do not cover compressed mixing yet; pass "
                         "compressor=None or build the communicator without faults.")


def _check_t(t, op: str):
    if t is None:
        raise ValueError(
            f"{op}: a communicator with faults needs the step counter to know which messages "
            f"are lost; pass it, e.g. neighbor_allreduce(x, topology, t=state.count). (The "
            "per-call weights form and hierarchical_neighbor_allreduce are not covered by "
            "fault models.)")


def delivered(comm, rnd, t):
    """This agent's :math:`\\delta` for round ``rnd`` at step ``t`` (a bool scalar)."""
    source = comm._table(rnd.sources, jnp.int32)
    return ~comm.faults.lost(jnp.asarray(t, jnp.int32), comm.rank(), source, xp=jnp)


def faulty_slot(comm, rnd, t, received: list, weight):
    """``(received, weight)`` of one gathered slot, zeroed where the message was lost."""
    _check_t(t, "neighbor_allgather")
    ok = delivered(comm, rnd, t)
    return ([jnp.where(ok, r, jnp.zeros_like(r)) for r in received],
            jnp.where(ok, weight, jnp.zeros_like(weight)))


def faulty_mix(comm, leaves: list, schedule, t) -> list:
    """This agent's row of the faulty mix under ``comm.faults.rule`` (module docstring)."""
    _check_t(t, "neighbor_allreduce")
    rule = comm.faults.rule
    if rule == "keep_last":
        raise ValueError(
            "neighbor_allreduce: rule='keep_last' needs per-link memory, which lives in the "
            "algorithm's state; run through bluefog_sim.run / bluefog_dist.run with "
            "faults=Faults(..., rule='keep_last') (the engine wraps the algorithm with "
            "bluefog.faults.with_faults), or use rule='renormalise'.")
    uniform = rule == "renormalise" and uniform_counts(schedule) is not None
    dtypes = [leaf.dtype for leaf in leaves]
    self_w = [jnp.ones((), d) if uniform else comm._table(schedule.self_weights, d)
              for d in dtypes]
    num = [w * leaf for w, leaf in zip(self_w, leaves)]
    den, full = list(self_w), list(self_w)
    for rnd in schedule.rounds:
        received = comm._exchange(leaves, rnd)
        ok = delivered(comm, rnd, t)
        for k, (d, r) in enumerate(zip(dtypes, received)):
            w = comm._table(rnd.weights, d)
            if uniform:
                w = (w != 0).astype(d)
            w_ok = jnp.where(ok, w, jnp.zeros_like(w))
            num[k], den[k], full[k] = num[k] + w_ok * r, den[k] + w_ok, full[k] + w
    if rule == "renormalise":
        return [n / d for n, d in zip(num, den)]
    return [n + (f - d) * leaf for n, f, d, leaf in zip(num, full, den, leaves)]
