r"""Memory per MPI rank of ``bluefog-train --backend mpi`` on an IDX data set: every rank
holding every agent's data (before) vs only its own agent's rows (``Problem.shard``, after).

The same run is launched with ``mpiexec -n R`` from two source trees: this one, and
``--before DIR`` (an export of an older commit, e.g. ``git archive <commit> | tar -x -C
DIR``). Each rank reports its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the high-water mark of the whole process:
Python, JAX, MPI, data, compiled programs) and the bytes of the training data its
``Problem`` holds (:math:`\sum` ``nbytes`` of ``problem.data``). A third launch, ``floor``,
runs this tree on a data set of ``--floor-samples`` images, the same code path with almost
no data. The launches are interleaved (order rotated per repetition, one warm-up round
excluded); reported per launch kind: min and median over repetitions of the largest peak
RSS over ranks, and min and median of the per-repetition ratios before/after and
(before - floor)/(after - floor) (the part of the peak that the data set adds). The load
average is recorded before and after. Nothing is extrapolated.

The data set is written here: ``--samples`` training and ``--test-samples`` test images,
28x28 uniform random bytes, as ``.gz`` IDX files (the official distribution format) or raw
(``--raw``).

Usage::

    git archive <commit> | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python -m benchmarks.shard_memory --before /tmp/before --samples 20000 --ranks 4 \
        --reps 3 --markdown out.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ._mpi import ROOT, mpiexec_path, rank_env
from ._timing import interleaved, load_average

#: The rank program: bluefog-train's main, its make_experiment wrapped to measure the data.
PROBE = """
import json, resource, sys
import jax
from mpi4py import MPI
import bluefog_train
from bluefog_train import training
from bluefog_train.cli import main
held, real = {}, training.make_experiment
def recording(*args, **kwargs):
    exp = real(*args, **kwargs)
    held["bytes"] = int(sum(a.nbytes for a in jax.tree_util.tree_leaves(exp["problem"].data)))
    return exp
training.make_experiment = recording
code = main(sys.argv[1:])
print("SHARDMEM " + json.dumps({"rank": MPI.COMM_WORLD.Get_rank(), "code": code,
      "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      "held_bytes": held.get("bytes"), "tree": bluefog_train.__file__}), flush=True)
"""


def write_idx(directory: Path, train: int, test: int, *, gz: bool = True, seed: int = 0) -> None:
    """MNIST-format IDX files of ``train``/``test`` random 28x28 images and labels in
    ``directory`` (Y. LeCun et al., "The MNIST database": big-endian header
    ``0 0 8 ndim``, the sizes as uint32, then the bytes)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, m in (("train", train), ("t10k", test)):
        for kind, a in (("images-idx3", rng.integers(0, 256, (m, 28, 28), dtype=np.uint8)),
                        ("labels-idx1", rng.integers(0, 10, m).astype(np.uint8))):
            body = bytes([0, 0, 8, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + a.tobytes()
            name = directory / f"{stem}-{kind}-ubyte"
            if gz:
                with gzip.open(f"{name}.gz", "wb", compresslevel=1) as fh:
                    fh.write(body)
            else:
                name.write_bytes(body)


def launch(tree: Path, data: Path, ranks: int, steps: int, timeout: float) -> list[dict]:
    """Run the probe under ``mpiexec -n ranks`` with ``tree`` first on ``PYTHONPATH``; the
    per-rank reports, rank order."""
    argv = ["--backend", "mpi", "--dataset", "mnist", "--data-dir", str(data), "--data-verify",
            "off", "--agents", str(ranks), "--hidden", "8", "--steps", str(steps),
            "--record-every", str(steps), "--no-progress"]
    env = dict(rank_env(ranks), PYTHONPATH=str(tree), JAX_PLATFORMS="cpu")
    cmd = [mpiexec_path(), "-n", str(ranks), sys.executable, "-c", PROBE, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(tree))
    reports = sorted((json.loads(m) for m in re.findall(r"SHARDMEM (\{.*?\})", proc.stdout)),
                     key=lambda r: r["rank"])  # ranks' lines may interleave
    if proc.returncode or len(reports) != ranks or any(r["code"] for r in reports):
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    want = str(tree.resolve())
    if any(not r["tree"].startswith(want) for r in reports):
        raise RuntimeError(f"the ranks imported bluefog_train from {reports[0]['tree']}, not "
                           f"from {want}: an installed copy shadows PYTHONPATH.")
    return reports


def measure(args) -> dict:
    """The interleaved launches (see the module docstring); raw per-repetition reports."""
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        write_idx(big, args.samples, args.test_samples, gz=not args.raw)
        write_idx(small, args.floor_samples, args.test_samples, gz=not args.raw)
        trees = {"after": (Path(ROOT), big), "before": (Path(args.before), big),
                 "floor": (Path(ROOT), small)}
        reports: dict = {k: [] for k in trees}

        def one(kind):
            def run():
                reports[kind].append(launch(*trees[kind], args.ranks, args.steps, args.timeout))
                return max(r["rss_kib"] for r in reports[kind][-1]) / 1024.0
            return run

        load0 = load_average()
        peaks = interleaved({k: one(k) for k in trees}, args.reps, sample=lambda fn: fn(),
                            warmup=1)
        load1 = load_average()
    return {"peaks_mib": peaks, "reports": {k: v[1:] for k, v in reports.items()},
            "load_before": load0, "load_after": load1, "samples": args.samples,
            "floor_samples": args.floor_samples, "test_samples": args.test_samples,
            "ranks": args.ranks, "steps": args.steps, "gz": not args.raw, "reps": args.reps}


def _ratios(a, b, floor=None) -> tuple[float, float]:
    q = [(x - (f if floor else 0)) / (y - (f if floor else 0))
         for x, y, f in zip(a, b, floor or [0] * len(a))]
    return min(q), statistics.median(q)


def markdown(res: dict) -> str:
    """The table of :func:`measure`'s result."""
    p = res["peaks_mib"]
    held = {k: max(r["held_bytes"] for r in v[0]) / 2 ** 20 for k, v in res["reports"].items()}
    fmt = "gz" if res["gz"] else "raw"
    lines = [f"`bluefog-train --backend mpi --dataset mnist` on {res['samples']} training + "
             f"{res['test_samples']} test images ({fmt} IDX), `mpiexec -n {res['ranks']}`, "
             f"{res['steps']} steps, {res['reps']} interleaved repetitions after one warm-up "
             f"round; load {res['load_before']} before, {res['load_after']} after.", "",
             "| launch | training data held per rank (MiB) | peak RSS, largest rank (MiB): "
             "min / median |", "|---|---|---|"]
    for k in ("before", "after", "floor"):
        lines.append(f"| {k} | {held[k]:.1f} | {min(p[k]):.0f} / {statistics.median(p[k]):.0f} |")
    lo, med = _ratios(p["before"], p["after"])
    dlo, dmed = _ratios(p["before"], p["after"], p["floor"])
    lines += ["", f"Per-repetition ratio before/after of the peak: min {lo:.2f}, median "
                  f"{med:.2f}; of the peak above the floor ({res['floor_samples']} images): min "
                  f"{dlo:.2f}, median {dmed:.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="source tree of the older commit")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--test-samples", type=int, default=2000)
    ap.add_argument("--floor-samples", type=int, default=400)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--raw", action="store_true", help="uncompressed IDX files")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", help="write the raw result here")
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args(argv)
    if mpiexec_path() is None:
        ap.error("mpiexec not found (install the mpi extra: pip install -e .[mpi])")
    if not (Path(args.before) / "bluefog_train").is_dir():
        ap.error(f"--before must be a source tree holding bluefog_train/; got {args.before!r}")
    res = measure(args)
    text = markdown(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
