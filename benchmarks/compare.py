"""The one comparison command (``make compare``): side-by-side runs -> README performance table.

In ONE run of this script, on this machine, it measures

A. **Simulator** - DGD on logistic regression (:mod:`_workload`: 200 samples x 1000
   features per agent, exponential graph), time per step, with 64 agents and with 4:

   * ``simulator``: ``jit(vmap(fori_loop(dgd_step)))`` with ``SimComm.neighbor_allreduce``;
   * ``no-communication limit``: the same program with the mixing replaced by the identity
     (what the step costs if communication were free);
   * ``dense NumPy``: ``X <- W @ X - lr * grads(X)`` with NumPy (the usual hand-written
     simulation; batched ``matmul``, i.e. BLAS, float32 throughout);
   * ``one process per agent`` (4 agents only): ``mpiexec -n 4``, ``bluefog_dist.MpiComm``,
     the same per-agent step (:mod:`dgd_ranks`), slowest rank.

B. **MPI** - one neighbor exchange on the exponential graph over ``mpiexec -n 4`` ranks,
   timed inside the ranks by ONE run of ``benchmarks/mpi_exchange.py --json`` (the MPI
   backend's side-by-side script): ``MpiComm.neighbor_allreduce`` (K inside one jitted loop,
   and one jitted call per exchange), raw mpi4py ``Sendrecv`` per round (with and without the
   NumPy weighted sum), ``MPI_Allreduce`` of the same bytes and torch.distributed gloo; plus
   the alpha-beta model's prediction, fitted to raw mpi4py ping-pong times measured by
   :mod:`mpi_ranks` (:mod:`cost_report`).

C. **Mixing scaling** - :mod:`mixing_scaling`'s full sweep (one ``neighbor_allreduce`` vs
   dense and sparse ``W @ X``, n in {8, 64, 256}, d in {1e3, 1e5, 1e6}) with fitted
   exponents (``--no-mixing`` skips it).

Every number is a median over repeats; every ratio is between numbers of this same run. The
simulator and its no-communication limit are timed in interleaved repetitions (warm-up
excluded) and their ratio is reported as the min and median of the per-repetition ratios;
this workload is compute-heavy (200 x 1000 per agent), so that ratio says little about
communication cost at small ``d``. The
markdown goes to stdout and, with ``--write-readme`` (what ``make compare`` does), between
the ``<!-- perf-table -->``, ``<!-- cost-table -->`` and ``<!-- mixing-table -->`` markers
of README.md. About 5
minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bluefog_sim import SimComm

from . import _workload as W
from .cost_report import table as cost_table
from ._mpi import mpiexec_path, rank_env, run_ranks
from ._timing import fmt_time, machine_load, median_time
from ._topologies import make_topology

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BEGIN, END = "<!-- perf-table -->", "<!-- /perf-table -->"


# ---- A: simulator ------------------------------------------------------------------------
def sim_rows(n: int, steps: int, repeats: int) -> dict:
    """Seconds per DGD step for the simulator, the no-communication limit and NumPy."""
    topo = make_topology("exponential", n)
    A, y = W.data(n)
    Aj, yj = jnp.asarray(A), jnp.asarray(y)
    comm = SimComm(n)
    X0 = jnp.zeros((n, W.DIM), jnp.float32)

    def program(communicate: bool):
        mix = (lambda v: comm.neighbor_allreduce(v, topo)) if communicate else (lambda v: v)

        def agent(x, a, b):
            return lax.fori_loop(0, steps, lambda k, v: W.dgd_step(v, a, b, mix), x)

        return jax.jit(jax.vmap(agent, axis_name=comm.axis_name))

    sim, local = program(True), program(False)
    out = {}
    # interleaved repetitions (warm-up excluded): each repetition times both programs, so a
    # load change hits both; the ratio is taken per repetition
    fns = {"simulator": sim, "no-communication limit": local}
    for fn in fns.values():
        fn(X0, Aj, yj).block_until_ready()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(median_time(lambda fn=fn: fn(X0, Aj, yj).block_until_ready(),
                                             repeats=1, warmup=0, min_time=0.1) / steps)
    for name, ts in samples.items():
        out[name] = statistics.median(ts)
    ratios = [a / b for a, b in zip(samples["simulator"], samples["no-communication limit"])]
    out["sim / no-comm per repetition"] = (min(ratios), statistics.median(ratios))

    Wm = topo.weights.astype(np.float32)
    # Independent check: the simulator's trajectory equals the dense NumPy recursion.
    np_steps = max(2, steps // 5)

    def numpy_run():
        X = np.zeros((n, W.DIM), np.float32)
        for _ in range(np_steps):
            X = Wm @ X - W.LR * W.numpy_grads(X, A, y)
        return X

    Xs = numpy_run()
    short = jax.jit(jax.vmap(lambda x, a, b: lax.fori_loop(
        0, np_steps, lambda k, v: W.dgd_step(v, a, b, lambda u: comm.neighbor_allreduce(u, topo)),
        x), axis_name=comm.axis_name))
    err = float(np.abs(np.asarray(short(X0, Aj, yj)) - Xs).max() / (np.abs(Xs).max() + 1e-30))
    if not err < 1e-3:
        raise RuntimeError(f"simulator and NumPy DGD disagree (relative error {err:.1e})")
    out["dense NumPy"] = median_time(numpy_run, repeats=max(3, repeats // 2), warmup=0) / np_steps
    return out


def mpi_dgd(ranks: int, steps: int) -> float | str:
    """Seconds per DGD step with one process per agent, or the reason it is unavailable."""
    exe = mpiexec_path()
    if exe is None:
        return "mpiexec not found"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "dgd.json")
        proc = subprocess.run([exe, "-n", str(ranks), sys.executable, "-m",
                               "benchmarks.dgd_ranks", "--steps", str(steps),
                               "--json", out], capture_output=True, text=True, timeout=600,
                              env=rank_env(ranks), cwd=ROOT)
        if proc.returncode or not os.path.exists(out):
            return f"mpiexec failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
        with open(out) as f:
            return json.load(f)["per_step"]


# ---- B: MPI ops ----------------------------------------------------------------------------
#: mpi_exchange.py method -> row label, in table order.
EXCHANGE_METHODS = [
    ("bluefog_loop", "MpiComm.neighbor_allreduce, K per jitted loop"),
    ("bluefog_call", "MpiComm.neighbor_allreduce, 1 jitted call each"),
    ("raw_sendrecv", "raw mpi4py Sendrecv per round (no arithmetic)"),
    ("raw_sendrecv_mix", "raw mpi4py Sendrecv + NumPy weighted sum"),
    ("mpi_allreduce", "MPI_Allreduce, same bytes (mpi4py)"),
    ("gloo", "torch.distributed gloo isend/irecv + sum"),
]


def mpi_exchange(ranks: int, nbytes: list[int], repeats: int) -> dict | str:
    """One ``mpiexec`` run of ``benchmarks/mpi_exchange.py --json`` (the MPI engineer's
    side-by-side script: all MPI methods, gloo included, in the same run)."""
    if not os.path.exists(os.path.join(HERE, "mpi_exchange.py")):
        return "benchmarks/mpi_exchange.py not present"
    exe = mpiexec_path()
    if exe is None:
        return "mpiexec not found"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.json")
        proc = subprocess.run(
            [exe, "-n", str(ranks), sys.executable, "-m", "benchmarks.mpi_exchange",
             "--topologies", "exponential", "--sizes", ",".join(map(str, nbytes)),
             "--repeats", str(repeats), "--json", out],
            capture_output=True, text=True, timeout=900, env=rank_env(ranks), cwd=ROOT)
        if proc.returncode or not os.path.exists(out):
            return f"mpi_exchange.py failed (rc={proc.returncode}): {proc.stderr.strip()[-500:]}"
        with open(out) as f:
            return json.load(f)


def mpi_text(data, pingpong, ranks: int) -> str:
    """The MPI table: every method of one mpi_exchange.py run, ratio to raw mpi4py, plus the
    alpha-beta prediction fitted to a separate raw ping-pong run."""
    if isinstance(data, str):
        return f"**MPI**: not measured ({data})."
    from .cost_report import fit_from

    from bluefog.cost_model import exponential_exchange_time

    recs = data["results"]
    sizes = sorted({r["bytes"] for r in recs})
    by = {(r["method"], r["bytes"]): r["seconds"] for r in recs}
    meta = data.get("meta", {})
    topo = make_topology("exponential", ranks)
    L = [f"**MPI, {ranks} ranks on this machine, exponential graph "
         f"({topo.schedule.num_rounds} rounds)**, from one run of `benchmarks/mpi_exchange.py` "
         f"(load {meta.get('load_before', '?')} before, {meta.get('load_after', '?')} after): "
         "time per neighbor exchange, slowest rank, median; ratio to raw mpi4py Sendrecv:", "",
         "| method | " + " | ".join(f"{b} B" for b in sizes) + " |",
         "|---|" + "---|" * len(sizes)]
    for method, label in EXCHANGE_METHODS:
        if not any((method, b) in by for b in sizes):
            continue
        cells = []
        for b in sizes:
            v, ref = by.get((method, b)), by.get(("raw_sendrecv", b))
            cells.append("-" if v is None else
                         f"{fmt_time(v)} ({v / ref:.2g}x)" if ref else fmt_time(v))
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    if not isinstance(pingpong, str):
        model = fit_from(pingpong)
        cells = [fmt_time(float(exponential_exchange_time(model, ranks, b))) for b in sizes]
        L.append("| alpha-beta model, `R (alpha + m beta)` | " + " | ".join(cells) + " |")
        L.append("")
        L.append(f"Model fitted to raw mpi4py ping-pong (`benchmarks/mpi_ranks.py`, a separate "
                 f"run): alpha = {fmt_time(model.alpha)}, 1/beta = "
                 f"{model.bandwidth / 1e9:.3g} GB/s.")
    if meta.get("gloo_note"):
        L.append("")
        L.append(f"gloo: {meta['gloo_note']}")
    return "\n".join(L)


# ---- report --------------------------------------------------------------------------------
def render(sim64, sim4, dgd_mpi, mpi_table, load_before, load_after, ranks) -> str:
    L = []
    L.append(f"Generated by `make compare` (`benchmarks/compare.py`) on "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} (CPU); "
             f"{load_before} before, {load_after.split(' on ')[0]} after. The machine was "
             "shared with other jobs: compare ratios (same run), not absolute times.")
    L.append("")
    L.append(f"**Simulator, DGD on logistic regression** ({W.M} x {W.DIM} local data per "
             "agent, exponential graph): time per step, ratio to the simulator:")
    L.append("")
    L.append(f"| method | 64 agents | {ranks} agents |")
    L.append("|---|---|---|")
    for name in ("simulator", "no-communication limit", "dense NumPy"):
        cells = []
        for d in (sim64, sim4):
            cells.append(f"{fmt_time(d[name])} ({d[name] / d['simulator']:.2g}x)")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [f"{lo:.2f} / {med:.2f}" for lo, med in
             (d["sim / no-comm per repetition"] for d in (sim64, sim4))]
    L.append("| simulator / no-communication, min / median of per-repetition ratios "
             "(interleaved) | " + " | ".join(cells) + " |")
    mp = (f"{fmt_time(dgd_mpi)} ({dgd_mpi / sim4['simulator']:.2g}x)"
          if isinstance(dgd_mpi, float) else f"n/a ({dgd_mpi})")
    L.append(f"| one process per agent (mpiexec -n {ranks}, MpiComm) | - | {mp} |")
    L.append("")
    L.append(mpi_table)
    return "\n".join(L)


def write_readme(text: str, path: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what lies between the ``begin`` and ``end`` markers of ``path`` by ``text``."""
    with open(path) as f:
        readme = f.read()
    if begin not in readme or end not in readme:
        raise SystemExit(f"compare: {path} has no {begin} ... {end} markers; add them first.")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: f"{begin}\n{text}\n{end}", readme, count=1)
    with open(path, "w") as f:
        f.write(new)


def mixing_text(repeats: int) -> str:
    """The mixing-scaling table (:mod:`mixing_scaling`) with its fitted exponents."""
    from . import mixing_scaling as ms

    load = machine_load()
    rows = [ms.measure(n, d, repeats=repeats) for n, d in ms.FULL_GRID]
    return (f"Measured by `make compare` ({load}); time per mix, ratio to `sim` "
            f"(one jitted call per mix) in brackets; `sim x K` = {ms.LOOP} mixes inside one "
            "jitted `fori_loop`.\n\n" + ms.table(rows) + "\n\nFitted exponents (log-log "
            "least squares):\n\n" + ms.scaling_summary(rows))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=50, help="DGD steps per timed program")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--bytes", type=int, nargs="+", default=[1024, 65536, 1048576],
                   help="message sizes per rank for the MPI exchange table")
    p.add_argument("--write-readme", action="store_true",
                   help="replace the table between the perf-table markers of README.md")
    p.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    p.add_argument("--no-mixing", action="store_true", help="skip the mixing-scaling sweep")
    args = p.parse_args(argv)

    load_before = machine_load()
    print(f"# compare ({load_before})", file=sys.stderr, flush=True)
    sim64 = sim_rows(64, args.steps, args.repeats)
    print(f"  simulator, 64 agents: {sim64}", file=sys.stderr, flush=True)
    sim4 = sim_rows(args.ranks, args.steps, args.repeats)
    print(f"  simulator, {args.ranks} agents: {sim4}", file=sys.stderr, flush=True)
    dgd_mpi = mpi_dgd(args.ranks, args.steps)
    print(f"  one process per agent: {dgd_mpi}", file=sys.stderr, flush=True)
    pingpong = run_ranks(floats=[2, 256, 4096, 65536, 262144], ranks=args.ranks)
    data = mpi_exchange(args.ranks, args.bytes, args.repeats)
    print("  mpi_exchange: " + ("ok" if isinstance(data, dict) else data), file=sys.stderr,
          flush=True)
    text = render(sim64, sim4, dgd_mpi, mpi_text(data, pingpong, args.ranks), load_before,
                  machine_load(), args.ranks)
    print(text)
    mix = None if args.no_mixing else mixing_text(max(3, args.repeats))
    if mix:
        print("\n" + mix)
    cost = None
    if not isinstance(pingpong, str):
        cost = (f"Measured inside `mpiexec -n {args.ranks}` ranks by `benchmarks/mpi_ranks.py` "
                f"in this run ({machine_load()}):\n\n" + cost_table(pingpong))
        print("\n" + cost)
    if args.write_readme:
        write_readme(text, args.readme)
        if cost:
            write_readme(cost, args.readme, "<!-- cost-table -->", "<!-- /cost-table -->")
        if mix:
            write_readme(mix, args.readme, "<!-- mixing-table -->", "<!-- /mixing-table -->")
        print(f"\nwrote the table into {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
