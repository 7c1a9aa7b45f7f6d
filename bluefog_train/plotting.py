"""Figures of a ``bluefog-train`` run (matplotlib, headless ``Agg`` backend)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_history", "clock_of"]


def clock_of(results: dict):
    """``(x values, axis label)`` of a result's curves: ``wall_seconds`` when recorded
    (under MPI with ``--async`` or ``--compute-time``), ``virtual_time`` for a simulated
    ``--async`` run or one with straggler flags (so sync and async runs share one clock),
    else the step."""
    h, cfg = results["history"], results["config"]
    if "wall_seconds" in h and None not in h["wall_seconds"]:
        return np.asarray(h["wall_seconds"], float), "wall seconds"
    timed = cfg.get("async_method") or cfg.get("straggler") is not None or any(
        cfg.get(k) for k in ("jitter", "slow_fraction", "latency")) or cfg.get(
        "compute_time", 1.0) != 1.0
    if "virtual_time" in h and timed:
        return np.asarray(h["virtual_time"], float), "virtual time"
    return np.asarray(h["step"]), "step"


def plot_history(results: dict, path: str) -> None:
    r"""Save a 2x2 PNG of a ``bluefog-train`` result to ``path``.

    Panels: training loss of the averaged model :math:`f(\bar x)` and the mean local loss
    :math:`\frac1n\sum_i f_i(x_i)`; test accuracy (averaged model, and the agents' mean
    and min-max band when recorded with ``--track-agents``); the consensus distance
    :math:`\sqrt{\frac1n\sum_i\|x_i-\bar x\|^2}`; the final per-agent accuracies. The curves
    are drawn against :func:`clock_of` (step, virtual time or wall seconds).

    Parameters
    ----------
    results : dict
        What :func:`bluefog_train.training.train` returns (``history``, ``config``, ...).
    path : str
        The PNG file; its directory is created if missing (checked writable before
        training, on every rank together, by :func:`bluefog_train.startup.agreed_config`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = {k: np.asarray(v) for k, v in results["history"].items()
         if k not in ("wall_seconds", "virtual_time")}
    step, xlabel = clock_of(results)
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    ax[0, 0].semilogy(step, h["loss"], label=r"$f(\bar x)$ (averaged model)")
    ax[0, 0].semilogy(step, h["local_loss"], label=r"$\frac{1}{n}\sum_i f_i(x_i)$", ls="--")
    ax[0, 0].set(title="training loss", xlabel=xlabel)
    ax[0, 0].legend()
    ax[0, 1].plot(step, 100 * h["test_accuracy"], label="averaged model")
    if "agent_accuracy_mean" in h:  # recorded with --track-agents
        ax[0, 1].plot(step, 100 * h["agent_accuracy_mean"], label="mean over agents", ls="--")
        ax[0, 1].fill_between(step, 100 * h["agent_accuracy_min"], 100 * h["agent_accuracy_max"],
                              alpha=0.2, label="agents min-max")
    else:
        per = results["per_agent_test_accuracy"]
        ax[0, 1].errorbar([step[-1]], [100 * np.mean(per)],
                          yerr=[[100 * (np.mean(per) - min(per))], [100 * (max(per) - np.mean(per))]],
                          fmt="o", capsize=4, label="final: agents mean, min-max")
    ax[0, 1].set(title="test accuracy (%)", xlabel=xlabel, ylim=(0, 100))
    ax[0, 1].legend(loc="lower right")
    later = h["step"] > 0  # at step 0 every agent holds the same model (distance = rounding only)
    ax[1, 0].semilogy(step[later], np.maximum(h["consensus_distance"][later], 1e-12))
    ax[1, 0].set(title=r"consensus distance $\sqrt{\frac{1}{n}\sum_i\|x_i-\bar x\|^2}$", xlabel=xlabel)
    per = results.get("per_agent_test_accuracy")
    if per:
        ax[1, 1].bar(np.arange(len(per)), 100 * np.asarray(per))
        ax[1, 1].set(title="final test accuracy per agent (%)", xlabel="agent",
                     ylim=(0, 100))  # a fraction: the axis starts at zero
    else:
        ax[1, 1].axis("off")
    cfg = results["config"]
    mb = results["bytes_sent_per_agent_per_step"] / 1e3
    fig.suptitle(f"{results['algorithm']['name']} | {results['topology']} | {cfg['model']} on "
                 f"{cfg['data']} ({cfg['split']}) | n={cfg['agents']} | {mb:.1f} kB/agent/step")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
