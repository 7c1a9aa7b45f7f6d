"""Wall-clock straggler run of ``bluefog-train`` under MPI: ``--async`` vs the synchronous run.

Launches, interleaved, ``bfrun -np 4 bluefog-train --backend mpi`` twice per repetition on the
MLP of the CLI (digits, iid split, plain SGD steps, the same ``--lr``/``--batch-size``/
``--seed``), both with the same per-step emulated compute (``--compute-time C --straggler 0
--slowdown 5``: rank 0 sleeps 5C before each of its steps, the others C):

* **sync**: ``--optimizer sgd --style awc --steps K`` (DGD: every step's exchange waits for
  rank 0); ``history["wall_seconds"]`` = when rank 0 started each recorded step, from the
  start of step 0 (compilation excluded);
* **async**: ``--async METHOD --duration D`` (real one-sided MPI windows, one deadline for
  every rank; ``--method``: ``async_sgp``, the default, on the exponential graph, or
  ``ad_psgd`` on the symmetric exponential graph); ``history`` = the averaged newest
  estimates of all ranks at every logged step, from the common start (a 2-step warm-up on
  separate windows excluded).

Reported: the first wall second at which the training loss of the averaged model is <=
``--target``, per repetition, and the ratio sync / async (each launch is a fresh job:
compilation and warm-up are excluded inside it, as said above). Run:
``python examples/straggler_train_mpi.py`` (about 10 minutes on a loaded 2-core machine).
Writes ``docs/figures/straggler_train_mpi.{json,png}`` (``--method ad_psgd``:
``straggler_train_mpi_ad_psgd.{json,png}``) unless ``--no-save``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FIG = Path(__file__).resolve().parents[1] / "docs" / "figures"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from straggler_mlp import ASYNC_FLAGS  # noqa: E402  (the same method flags as the simulator study)


def launch(ranks: int, args: list, out: Path, timeout: float) -> dict:
    """``bfrun -np ranks bluefog-train --backend mpi ARGS --out OUT``; its results dict."""
    cmd = [str(BIN / "bfrun"), "-np", str(ranks), str(BIN / "bluefog-train"), "--backend", "mpi",
           "--no-progress", *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def time_to_target(history: dict, target: float) -> float:
    """First ``wall_seconds`` with ``loss <= target`` (inf if never)."""
    hit = np.flatnonzero(np.asarray(history["loss"]) <= target)
    return float(history["wall_seconds"][hit[0]]) if hit.size else float("inf")


def plot(result: dict, path) -> None:
    """Training loss against wall seconds of the first repetition of each mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    names = {"sync": "sync DGD", "async": result.get("method", "async_sgp")}
    for mode, (t, loss) in result["curves"].items():
        first = result["seconds_to_target"][mode][0]
        ax.semilogy(t, loss, label=f"{names[mode]} ({first:.1f} s to target)",
                    ls="--" if mode == "sync" else "-")
    ax.axhline(result["target_loss"], color="k", lw=0.8, ls=":")
    ax.set(xlabel="wall seconds", ylabel="training loss f(x̄)",
           title=f"bfrun -np {result['ranks']} bluefog-train, rank 0 {result['slowdown']:g}x "
                 f"slower ({result['compute_time']:g} s/step)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--compute-time", type=float, default=0.2)
    p.add_argument("--slowdown", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=60, help="steps of the synchronous run")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the async run")
    p.add_argument("--target", type=float, default=0.5, help="training loss to reach")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--method", choices=sorted(ASYNC_FLAGS), default="async_sgp",
                   help="the asynchronous method (default: async_sgp)")
    p.add_argument("--no-save", action="store_true")
    a = p.parse_args(argv)
    common = ["--hidden", "32", "--lr", "0.5", "--batch-size", "16", "--seed", "0",
              "--compute-time", str(a.compute_time), "--straggler", "0", "--slowdown",
              str(a.slowdown)]
    runs = {"sync": [*common, "--optimizer", "sgd", "--style", "awc", "--steps", str(a.steps),
                     "--record-every", "2"],
            "async": [*common, *ASYNC_FLAGS[a.method], "--duration", str(a.duration),
                      "--record-every", "1"]}
    load0, t0, out = os.getloadavg(), time.time(), {"sync": [], "async": []}
    curves, own = {}, []
    with tempfile.TemporaryDirectory() as d:
        for rep in range(a.reps):
            for mode in ("sync", "async"):                  # interleaved repetitions
                r = launch(a.ranks, runs[mode], Path(d) / f"{mode}{rep}.json", 1200)
                out[mode].append(time_to_target(r["history"], a.target))
                curves.setdefault(mode, (r["history"]["wall_seconds"], r["history"]["loss"]))
                if mode == "async":
                    own.append(r["async"]["own_steps"])
                print(mode, rep, out[mode][-1], "final loss", r["history"]["loss"][-1],
                      flush=True)
    ratios = [s / x for s, x in zip(out["sync"], out["async"])]
    result = {"seconds_to_target": out, "ratio_sync_over_async": ratios,
              "async_own_steps": own, "ranks": a.ranks, "compute_time": a.compute_time,
              "slowdown": a.slowdown, "sync_steps": a.steps, "async_duration": a.duration,
              "target_loss": a.target, "method": a.method, "command_lines": runs,
              "load_before": load0,
              "load_after": os.getloadavg(), "wall_seconds": time.time() - t0, "curves": curves}
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}), flush=True)
    if not a.no_save:
        FIG.mkdir(parents=True, exist_ok=True)
        stem = "straggler_train_mpi" + ("" if a.method == "async_sgp" else f"_{a.method}")
        (FIG / f"{stem}.json").write_text(json.dumps(result, indent=1))
        plot(result, FIG / f"{stem}.png")
    return result


if __name__ == "__main__":
    main()
