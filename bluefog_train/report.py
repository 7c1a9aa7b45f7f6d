r"""The results dict of a ``bluefog-train`` run (what ``--out`` writes), for every run mode.

:func:`results_dict` assembles it from the run's configuration, experiment, merged history
and the final parameters of every agent (stacked); :func:`per_agent_accuracy` is the test
accuracy :math:`\mathrm{acc}(x_i)` of every agent's own final model. Synchronous runs
(:mod:`bluefog_train.training`) and ``--async`` runs (:mod:`bluefog_train.asynctrain`) share
both, so their JSON files have the same fields.
"""

from __future__ import annotations

import numpy as np

__all__ = ["results_dict", "per_agent_accuracy"]


def per_agent_accuracy(model, stacked_params, X_test, y_test) -> list:
    r"""Test accuracy of every agent's final model, :math:`\frac1N \sum_k
    [\arg\max \text{apply}(x_i, a_k) = y_k]` (``stacked_params`` has leading axis n)."""
    import jax
    import jax.numpy as jnp

    from .models import accuracy

    Xt, yt = jnp.asarray(X_test), jnp.asarray(y_test)
    # the test set is an argument, not a closed-over constant: XLA would embed it in the
    # program and constant-fold over it (seconds of compile time for Fashion-MNIST's 31 MB)
    score = jax.vmap(lambda p, X, y: accuracy(model.apply(p, X), y), in_axes=(0, None, None))
    accs = jax.jit(score)(stacked_params, Xt, yt)
    return [float(a) for a in np.asarray(accs)]


def results_dict(cfg: dict, exp: dict, history: dict, final_params, start: int, res,
                 wall: float) -> dict:
    """The results of a run (see :func:`bluefog_train.training.train`).

    Parameters
    ----------
    cfg, exp : dict
        The validated configuration and :func:`bluefog_train.experiment.make_experiment`.
    history : dict
        Lists per metric, ``step`` first, over the whole run (resumed runs included).
    final_params : pytree
        Every agent's final parameters, stacked along a leading axis.
    start : int
        The step this invocation started from (0 unless resumed).
    res : object or None
        Has ``run_seconds`` and ``compile_seconds`` (a :class:`bluefog.engine` result);
        ``None`` when nothing ran.
    wall : float
        Wall seconds of this invocation's run.
    """
    algorithm, steps = exp["algorithm"], cfg["steps"]
    per_agent = per_agent_accuracy(exp["model"], final_params, *exp["test"])
    done = steps - start
    t_run = res.run_seconds if res else 0.0
    return {
        "config": {k: cfg[k] for k in sorted(cfg)},
        "algorithm": {"name": algorithm.name, "config": algorithm.config},
        "topology": exp["topology"].name,
        "history": history,
        "final": {**{k: history[k][-1] for k in ("loss", "local_loss", "test_accuracy",
                                                 "consensus_distance")},
                  "agent_accuracy_mean": float(np.mean(per_agent)),
                  "agent_accuracy_min": min(per_agent), "agent_accuracy_max": max(per_agent)},
        "per_agent_test_accuracy": per_agent,
        "bytes_sent_per_agent_per_step": exp["bytes_per_step"],
        "bytes_sent_per_agent_total": exp["bytes_per_step"] * steps,
        "label_histogram": exp["label_histogram"],
        "timing": {"steps_this_invocation": done, "run_seconds": t_run,
                   "compile_seconds": res.compile_seconds if res else 0.0, "wall_seconds": wall,
                   "steps_per_second": done / t_run if t_run > 0 else None},
        "resumed_from_step": start if cfg["resume"] else None,
        "_final_params": final_params,
    }
