r"""In-loop evaluation of ``bluefog-train``: each agent's slice of the test set travels with
its data, and :func:`classification_metrics` scores the averaged model on it.

The test set is *data of the problem*, not a constant of the metric function: a closed-over
array is embedded in every compiled program (and XLA constant-folds gathers over it: more
than 2 s of compile time for Fashion-MNIST's 31 MB test set, measured), and under MPI every
rank would hold the whole set. :func:`with_test_data` pads the test set to ``n k`` rows, cuts
it into ``n`` slices of ``k`` (a mask marks the real rows) and adds them to the problem's
per-agent data (``test_x``, ``test_y``, ``test_mask``), so agent ``i`` holds slice ``i`` only
(under MPI with ``Problem.shard``, only the held agents' slices are kept).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bluefog.validation import check_positive_int

__all__ = ["split_test_set", "with_test_data", "classification_metrics"]

#: The per-agent data keys that :func:`with_test_data` adds.
TEST_KEYS = ("test_x", "test_y", "test_mask")


def split_test_set(X_test, y_test, n: int) -> dict:
    """``{"test_x": (n, k, ...), "test_y": (n, k), "test_mask": (n, k)}`` with
    ``k = ceil(N / n)``: the test set padded with zero rows to ``n k`` and cut into ``n``
    slices; ``test_mask`` is 1 on the ``N`` real rows, 0 on the padding."""
    n = check_positive_int(n, "n", where="split_test_set")
    X_test = np.asarray(X_test, np.float32)
    y_test = np.asarray(y_test, np.int32)
    if X_test.ndim < 2 or y_test.shape != X_test.shape[:1] or len(y_test) == 0:
        raise ValueError(f"split_test_set: the test set must be X (N, ...) and y (N,) with "
                         f"N >= 1; got X {X_test.shape} and y {y_test.shape}. Pass one label "
                         f"per test row.")
    N = len(y_test)
    k = -(-N // n)
    pad = n * k - N
    Xp = np.concatenate([X_test, np.zeros((pad,) + X_test.shape[1:], X_test.dtype)])
    yp = np.concatenate([y_test, np.zeros(pad, y_test.dtype)])
    mask = np.concatenate([np.ones(N, np.float32), np.zeros(pad, np.float32)])
    return {"test_x": Xp.reshape(n, k, *X_test.shape[1:]), "test_y": yp.reshape(n, k),
            "test_mask": mask.reshape(n, k)}


def with_test_data(problem, X_test, y_test):
    """``problem`` whose per-agent data (a dict) also holds the agent's test slice
    (:func:`split_test_set` over ``problem.size`` agents; only the held agents' slices when the
    problem is a shard)."""
    if not isinstance(problem.data, dict) or set(TEST_KEYS) & set(problem.data):
        raise ValueError("with_test_data: the problem's data must be a dict without the keys "
                         f"{TEST_KEYS}; got {type(problem.data).__name__} "
                         f"{sorted(problem.data) if isinstance(problem.data, dict) else ''}.")
    slices = split_test_set(X_test, y_test, problem.size)
    held = problem.agents  # the agents whose rows the problem holds (all, or its shard)
    slices = {k: v[held.start:held.stop] for k, v in slices.items()}
    return dataclasses.replace(problem, data={**problem.data, **slices})


def classification_metrics(model, X_test, y_test, n: int, *, agent_accuracy: bool = False):
    r"""Metric function ``(params, ctx) -> dict`` for :func:`bluefog_sim.run`'s ``metrics=``;
    the problem's data must carry the test slices of :func:`with_test_data`.

    With :math:`\bar x = \frac1n\sum_i x_i` (an ``allreduce``), :math:`f_i` agent ``i``'s
    full-shard training loss and :math:`\mathrm{acc}(x)` the test accuracy:

    * ``loss`` :math:`= \frac1n\sum_i f_i(\bar x)` (training loss of the averaged model),
    * ``local_loss`` :math:`= \frac1n\sum_i f_i(x_i)`,
    * ``test_accuracy`` :math:`= \mathrm{acc}(\bar x)`, evaluated in a distributed way
      (agent ``i`` scores its slice ``test_x`` of the test set, an ``allreduce`` sums the
      hits over the real rows, ``test_mask``),
    * ``agent_accuracy_mean`` / ``_min`` / ``_max`` over :math:`\mathrm{acc}(x_i)` (an
      ``allreduce`` and an ``allgather``), only with ``agent_accuracy=True``: every agent
      then scores its own model on the whole test set (``X_test``, ``y_test``) at every
      record, which in the 64-agent simulator costs about as much as 16 training steps per
      record (measured),
    * ``consensus_distance`` :math:`= \sqrt{\frac1n\sum_i\|x_i-\bar x\|^2}`.

    All are computed with communicator collectives, so every agent returns the same values.
    """
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from .models import accuracy

    n_test = float(len(np.asarray(y_test)))
    full = (jnp.asarray(np.asarray(X_test, np.float32)),
            jnp.asarray(np.asarray(y_test, np.int32))) if agent_accuracy else None

    def metrics(params, ctx):
        comm, data = ctx.comm, ctx.data
        xbar = comm.allreduce(params)
        right = jnp.argmax(model.apply(xbar, data["test_x"]), -1) == data["test_y"]
        hits = jnp.sum(data["test_mask"] * right)
        x, _ = ravel_pytree(params)
        xb, _ = ravel_pytree(xbar)
        local = [ctx.loss(xbar), ctx.loss(params), hits.astype(x.dtype), jnp.sum((x - xb) ** 2)]
        if agent_accuracy:
            own = accuracy(model.apply(params, full[0]), full[1]).astype(x.dtype)
            local.append(own)
        red = comm.allreduce(jnp.stack(local), average=False)
        out = {"loss": red[0] / n, "local_loss": red[1] / n, "test_accuracy": red[2] / n_test,
               "consensus_distance": jnp.sqrt(red[3] / n)}
        if agent_accuracy:
            accs = comm.allgather(own)
            out["agent_accuracy_mean"] = red[4] / n
            out["agent_accuracy_min"] = jnp.min(accs)
            out["agent_accuracy_max"] = jnp.max(accs)
        return out

    return metrics
