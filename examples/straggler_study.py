"""Straggler study: virtual time to a target loss, synchronous methods vs asynchronous ones.

64 simulated agents solve one l2-regularised logistic regression (iid synthetic data,
exact local gradients). Every agent's step takes ``U[0.9, 1.1]`` virtual seconds and every
link has latency 0.1; in the *straggler* scenario agent 0 is 10x slower. The synchronous
methods (DGD and ATC diffusion on the exponential graph, gradient allreduce) pay
``max_i c_i(k) + max latency`` per step (:func:`bluefog.asynchrony.synchronous_times`);
asynchronous SGP (exponential graph) and AD-PSGD (symmetric exponential graph) run in the
event simulator on the same compute draws (:func:`bluefog.asynchrony.event_timeline`).
Reported: the virtual time at which ``loss = f(mean of the agents' estimates)`` first falls
below ``f* + 0.01 (f(x0) - f*)``, per seed of the compute draws, and the ratios sync / async.
A synchronous trajectory does not depend on the clock, so each synchronous method runs once
and is timed on every (seed, scenario) clock.

Run: ``python examples/straggler_study.py`` (several minutes on a loaded 2-core machine);
``--quick`` for a 16-agent smoke run. Writes ``docs/figures/straggler_study.{json,png}``
unless ``--no-save``. The MLP of ``bluefog-train`` is studied by ``straggler_mlp.py``, which
shares this file's bookkeeping.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import algorithms as A
import bluefog_sim
from algorithms.problems import logistic_regression
from bluefog.asynchrony import (asynchronous, check_windows, compute_model, event_timeline,
                                synchronous_times, virtual_time)
from bluefog.topology import exponential_graph, symmetric_exponential_graph

FIG = Path(__file__).resolve().parents[1] / "docs" / "figures"
LATENCY, JITTER, LR, TARGET = 0.1, 0.1, 1.0, 0.01
SCENARIOS = (("straggler_10x", 10.0), ("no_straggler", 1.0))
SYNC = ("sync_dgd", "sync_atc", "sync_allreduce")
ASYNC = ("async_sgp", "ad_psgd")


def make_problem(n: int, m: int = 40, d: int = 10, seed: int = 0):
    """iid synthetic logistic regression with exact gradients (no minibatch noise)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    X = rng.normal(size=(n, m, d))
    y = (X @ w + 0.5 * rng.normal(size=(n, m)) > 0).astype(np.float64)
    prob = logistic_regression(X.astype(np.float32), y.astype(np.float32), l2=0.01)
    return dataclasses.replace(prob, stochastic_loss=None)


def time_to_target(times, loss, target) -> float:
    """First virtual time with ``loss <= target`` (inf if never)."""
    hit = np.flatnonzero(np.asarray(loss) <= target)
    return float(times[hit[0]]) if hit.size else float("inf")


def straggler_model(n: int, slowdown: float, seed: int):
    """The compute model of a scenario: agent 0 ``slowdown`` times slower (none at 1)."""
    return compute_model(n, jitter=JITTER, straggler=0 if slowdown > 1 else None,
                         slowdown=slowdown, seed=seed)


def run_sync(prob, steps):
    """Each synchronous method once: ``{name: (steps, loss)}`` (the clock comes later)."""
    topo = exponential_graph(prob.size)
    methods = {"sync_dgd": A.dgd(LR), "sync_atc": A.diffusion(LR),
               "sync_allreduce": A.gradient_allreduce(LR, stochastic=False)}
    out = {}
    for name, alg in methods.items():
        res = bluefog_sim.run(alg, prob, topo, steps=steps, record_every=1)
        out[name] = (np.asarray(res.history["step"]), np.asarray(res.history["loss"]))
    return out


def run_async(algorithm, topo, prob, model, events, every):
    tl = event_timeline(model, events, latency=LATENCY)
    res = bluefog_sim.run(asynchronous(algorithm, tl), prob, topo, steps=tl.events,
                          record_every=every)
    check_windows(res.state)
    return virtual_time(tl, res.history["step"]), res.history["loss"]


def ratios(t: dict) -> dict:
    """``ratio_<sync>_over_<async>`` for every pair of a row's times."""
    return {f"ratio_{s}_over_{a}": t[s] / t[a] for s in SYNC for a in ASYNC if s in t and a in t}


def study(n, seeds, sync_steps, events, every):
    prob = make_problem(n)
    f0 = float(prob.global_loss(prob.init_params))
    fstar = float(prob.global_loss(jnp.asarray(prob.optimum)))
    target = fstar + TARGET * (f0 - fstar)
    sync = run_sync(prob, sync_steps)
    rows, curves = [], {}
    for seed in range(seeds):  # scenarios interleaved within each seed
        for name, slowdown in SCENARIOS:
            model = straggler_model(n, slowdown, seed)
            clock = synchronous_times(model, sync_steps, latency=LATENCY)
            out = {k: (virtual_time(clock, s), loss) for k, (s, loss) in sync.items()}
            out["async_sgp"] = run_async(A.async_sgp(LR), exponential_graph(n), prob, model,
                                         events, every)
            out["ad_psgd"] = run_async(A.ad_psgd(LR), symmetric_exponential_graph(n), prob,
                                       model, events, every)
            t = {k: time_to_target(*v, target) for k, v in out.items()}
            rows.append({"scenario": name, "seed": seed, **t, **ratios(t)})
            print(rows[-1], flush=True)
            if seed == 0:
                curves[name] = {k: (np.asarray(v[0]).tolist(), np.asarray(v[1]).tolist())
                                for k, v in out.items()}
    return {"target": target, "fstar": fstar, "f0": f0, "rows": rows, "curves": curves}


def summarize(result) -> dict:
    """Per scenario and ratio key: min and median over the seeds."""
    out = {}
    for name, _ in SCENARIOS:
        rows = [r for r in result["rows"] if r["scenario"] == name]
        for key in sorted({k for r in rows for k in r if k.startswith("ratio_")}):
            vals = np.array([r[key] for r in rows])
            out[f"{name}:{key}"] = {"min": float(vals.min()), "median": float(np.median(vals))}
    return out


def plot(result, path, title="", floor=None, ylabel="f(mean estimate) - f*"):
    """Loss (minus ``floor``, default f*) against virtual time, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = result.get("fstar", 0.0) if floor is None else floor
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (name, _) in zip(axes, SCENARIOS):
        for method, (t, loss) in result["curves"][name].items():
            ax.semilogy(t, np.maximum(np.asarray(loss) - floor, 1e-12), label=method,
                        ls="--" if method.startswith("sync") else "-")
        ax.axhline(result["target"] - floor, color="k", lw=0.8, ls=":")
        ax.set_title(f"{title}{name.replace('_', ' ')} (n={result['n']})")
        ax.set_xlabel("virtual time (mean step = 1)")
        worst = max(r["sync_dgd"] for r in result["rows"] if r["scenario"] == name)
        ax.set_xlim(0, 1.2 * worst if np.isfinite(worst) else None)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save(result, stem: str) -> None:
    """``docs/figures/<stem>.json`` (without curves) and ``<stem>.png``."""
    FIG.mkdir(parents=True, exist_ok=True)
    (FIG / f"{stem}.json").write_text(json.dumps(
        {k: v for k, v in result.items() if k != "curves"}, indent=1))
    plot(result, FIG / f"{stem}.png", **result.get("plot_args", {}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="16 agents, short runs (smoke test)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    n, sync_steps, events, every = (16, 100, 1600, 16) if args.quick else (64, 100, 6400, 32)
    t0, load0 = time.time(), os.getloadavg()
    result = study(n, args.seeds, sync_steps, events, every)
    result.update(n=n, summary=summarize(result), load_before=load0, load_after=os.getloadavg(),
                  wall_seconds=time.time() - t0)
    print(json.dumps(result["summary"], indent=1))
    print(f"load average before {load0[0]:.1f}, after {result['load_after'][0]:.1f}; "
          f"{result['wall_seconds']:.0f} s")
    if not args.no_save:
        save(result, "straggler_study")
    return result


if __name__ == "__main__":
    main()
