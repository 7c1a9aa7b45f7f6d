"""Straggler study on the MLP of ``bluefog-train``: virtual time to a target training loss.

Every run is a ``bluefog-train`` run in the simulator (:func:`bluefog_train.training.train`
on the parsed command line), 64 agents, MLP(32) on scikit-learn's digits (iid split), plain
SGD steps with lr 0.5 and batch 16 per agent; every step takes ``U[0.9, 1.1]`` virtual
seconds, every link 0.1 (``--jitter 0.1 --latency 0.1``), and in the *straggler* scenario
agent 0 is 10x slower (``--straggler 0 --slowdown 10``). Methods:

* synchronous, on the exponential graph: DGD (``--optimizer sgd --style awc``), ATC diffusion
  (``--style atc``) and gradient allreduce (``--communication gradient_allreduce``); their
  trajectory does not depend on the clock, so each runs once per seed and is timed on each
  scenario's clock (:func:`bluefog_train.stragglers.synchronous_clock`);
* asynchronous: ``--async async_sgp`` (exponential graph) and ``--async ad_psgd`` (symmetric
  exponential graph), up to the horizon ``--steps`` x 1.0 virtual seconds.

Reported: per seed (``--seed``: data split, initial model, minibatches and compute draws) the
first virtual time at which the training loss of the averaged model is <= ``--target``, and
the ratios sync / async (min and median over seeds). Run: ``python examples/straggler_mlp.py``
(about an hour on a loaded 2-core machine; ``--quick``: 16 agents, short). Writes
``docs/figures/straggler_mlp.{json,png}`` unless ``--no-save``.

``--only ad_psgd`` (or ``async_sgp``) reruns that method alone on every seed and scenario and
merges its times and ratios into the existing JSON; seed 0 reruns every method (the figure's
curves are not stored) and checks that the methods not rerun reproduce their stored times.
The JSON then records the rerun (methods, date, load, wall time) under ``"reruns"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import straggler_study as S  # noqa: E402  (the shared bookkeeping)

from bluefog.asynchrony import virtual_time  # noqa: E402
from bluefog_train.cli import build_parser  # noqa: E402
from bluefog_train.config import validate_config  # noqa: E402
from bluefog_train.stragglers import synchronous_clock  # noqa: E402
from bluefog_train.training import train  # noqa: E402

SYNC_FLAGS = {"sync_dgd": ["--optimizer", "sgd", "--style", "awc"],
              "sync_atc": ["--optimizer", "sgd", "--style", "atc"],
              "sync_allreduce": ["--optimizer", "sgd", "--communication", "gradient_allreduce"]}
ASYNC_FLAGS = {"async_sgp": ["--async", "async_sgp"],
               "ad_psgd": ["--async", "ad_psgd", "--topology", "symmetric_exponential"]}
SCENARIO_FLAGS = {"straggler_10x": ["--straggler", "0", "--slowdown", "10"], "no_straggler": []}


def args_of(base: list, seed: int, *extra) -> list:
    return [*base, "--seed", str(seed), "--jitter", "0.1", "--latency", "0.1", *extra]


def cli(args: list) -> dict:
    """One ``bluefog-train`` run in this process; its results dict."""
    return train(vars(build_parser().parse_args(args)), progress=False)


def sync_runs(base, seed, steps, every):
    """Each synchronous method once; ``{name: {scenario: (virtual times, loss)}}``."""
    out = {}
    for name, flags in SYNC_FLAGS.items():
        args = args_of(base, seed, "--steps", str(steps), "--record-every", str(every), *flags)
        h = cli(args)["history"]
        out[name] = {}
        for scen, extra in SCENARIO_FLAGS.items():
            clock = synchronous_clock(validate_config(vars(build_parser().parse_args(
                args + extra))))
            out[name][scen] = (virtual_time(clock, h["step"]), np.asarray(h["loss"]))
        print(name, "seed", seed, "final loss", h["loss"][-1], flush=True)
    return out


def async_run(base, seed, horizon, every, name, scen):
    r = cli(args_of(base, seed, "--steps", str(horizon), "--record-every", str(every),
                    *ASYNC_FLAGS[name], *SCENARIO_FLAGS[scen]))
    h = r["history"]
    print(name, scen, "seed", seed, "events", r["async"]["events"], "final loss", h["loss"][-1],
          f"{r['timing']['run_seconds']:.0f} s", flush=True)
    return np.asarray(h["virtual_time"]), np.asarray(h["loss"])


def study(base, seeds, sync_steps, horizon, every_sync, every_async, target):
    rows, curves = [], {}
    for seed in range(seeds):
        sync = sync_runs(base, seed, sync_steps, every_sync)
        for scen, _ in S.SCENARIOS:
            out = {k: v[scen] for k, v in sync.items()}
            for name in ASYNC_FLAGS:
                out[name] = async_run(base, seed, horizon, every_async, name, scen)
            t = {k: S.time_to_target(*v, target) for k, v in out.items()}
            rows.append({"scenario": scen, "seed": seed, **t, **S.ratios(t)})
            print(rows[-1], flush=True)
            if seed == 0:
                curves[scen] = {k: (np.asarray(v[0]).tolist(), np.asarray(v[1]).tolist())
                                for k, v in out.items()}
    return {"target": target, "rows": rows, "curves": curves}


def rerun_only(base, method, seeds, sync_steps, horizon, every_async, target):
    """Rerun ``method`` on every (seed, scenario) and merge into the stored JSON's rows."""
    stored = json.loads((S.FIG / "straggler_mlp.json").read_text())
    if stored["command_line_base"] != base or stored["target"] != target:
        raise ValueError("--only: the stored straggler_mlp.json was made with another base "
                         f"command line or target ({stored['command_line_base']}, "
                         f"{stored['target']}); rerun the whole study instead.")
    rows, curves, reproduced = stored["rows"], {}, True
    for seed in range(seeds):
        sync = sync_runs(base, seed, sync_steps, 1) if seed == 0 else {}
        for scen, _ in S.SCENARIOS:
            row = next(r for r in rows if r["scenario"] == scen and r["seed"] == seed)
            out = {k: v[scen] for k, v in sync.items()}
            names = ASYNC_FLAGS if seed == 0 else [method]
            out.update({m: async_run(base, seed, horizon, every_async, m, scen) for m in names})
            t = {k: S.time_to_target(*v, target) for k, v in out.items()}
            same = all(np.isclose(t[k], row[k], rtol=1e-9) for k in t if k != method)
            reproduced &= bool(same)
            row.update({method: t[method]})
            row.update(S.ratios({k: row[k] for k in (*S.SYNC, *S.ASYNC)}))
            print(row, "others reproduced" if same else "OTHERS DIFFER", flush=True)
            if seed == 0:
                curves[scen] = {k: (np.asarray(v[0]).tolist(), np.asarray(v[1]).tolist())
                                for k, v in out.items()}
    stored.update(rows=rows, curves=curves)
    stored["summary"] = S.summarize(stored)
    return stored, reproduced


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="16 agents, short runs (smoke test)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--target", type=float, default=0.25, help="training loss to reach")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--only", choices=sorted(ASYNC_FLAGS), default=None,
                   help="rerun this asynchronous method alone and merge into the stored JSON")
    args = p.parse_args(argv)
    n, sync_steps, horizon = (16, 40, 30) if args.quick else (64, 150, 160)
    base = ["--agents", str(n), "--hidden", "32", "--lr", "0.5", "--batch-size", "16",
            "--no-progress"]
    t0, load0 = time.time(), os.getloadavg()
    if args.only:
        result, same = rerun_only(base, args.only, args.seeds, sync_steps, horizon, n,
                                  args.target)
        result.setdefault("reruns", []).append({
            "methods": [args.only], "date": time.strftime("%Y-%m-%d"), "load_before": load0,
            "load_after": os.getloadavg(), "wall_seconds": time.time() - t0,
            "others_reproduced": same})
    else:
        result = study(base, args.seeds, sync_steps, horizon, 1, n, args.target)
        result.update(n=n, command_line_base=base, summary=S.summarize(result),
                      load_before=load0, load_after=os.getloadavg(),
                      wall_seconds=time.time() - t0, plot_args={
                          "title": "MLP: ", "floor": 0.0, "ylabel": "training loss f(x̄)"})
    print(json.dumps(result["summary"], indent=1))
    print(f"load average before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f}; "
          f"{time.time() - t0:.0f} s")
    if not args.no_save:
        S.save(result, "straggler_mlp")
    return result


if __name__ == "__main__":
    main()
