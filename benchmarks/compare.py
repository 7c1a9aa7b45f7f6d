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
     the same per-agent step (:mod:`dgd_ranks`): one launch per repetition, timed inside
     the ranks after their own warm-up (slowest rank), alternating with the in-process
     methods.

   All methods of one agent count are timed in the same interleaved repetitions
   (``_timing.interleaved``: warm-up excluded, order rotated) and compared to the simulator
   by the min and median of the per-repetition ratio.

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

Every time is a median over interleaved repetitions; every ratio is the min and median of
per-repetition ratios between methods timed in the same repetitions of this run (the MPI
table from the per-repetition ``samples`` of the mpi_exchange JSON, against raw
``Sendrecv`` + the same float32 NumPy sum and against bare ``Sendrecv``). The DGD workload
is compute-heavy (200 x 1000 per agent), so the simulator / no-communication ratio says
little about communication cost at small ``d`` (``benchmarks/small_step.py`` measures that). The
markdown goes to stdout and, with ``--write-readme`` (what ``make compare`` does), between
the ``<!-- perf-table -->``, ``<!-- cost-table -->`` and ``<!-- mixing-table -->`` markers
of README.md, with the load average before and after.
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
from .cost_report import ratio_table, table as cost_table
from ._mpi import mpiexec_path, rank_env, run_module_json, run_ranks
from ._timing import call_time, fmt_time, interleaved, machine_load, ratio_stats
from ._topologies import make_topology

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BEGIN, END = "<!-- perf-table -->", "<!-- /perf-table -->"


# ---- A: simulator ------------------------------------------------------------------------
def _programs(n: int, steps: int, topo, comm):
    """``jit(vmap(fori_loop(dgd_step)))`` with and without the neighbor exchange."""
    def program(communicate: bool):
        mix = (lambda v: comm.neighbor_allreduce(v, topo)) if communicate else (lambda v: v)

        def agent(x, a, b):
            return lax.fori_loop(0, steps, lambda k, v: W.dgd_step(v, a, b, mix), x)

        return jax.jit(jax.vmap(agent, axis_name=comm.axis_name))

    return program(True), program(False)


def _check_against_numpy(n, topo, comm, A, y, np_steps) -> None:
    """Independent check: the simulator's trajectory equals the dense NumPy recursion."""
    Wm = topo.weights.astype(np.float32)
    X = np.zeros((n, W.DIM), np.float32)
    for _ in range(np_steps):
        X = Wm @ X - W.LR * W.numpy_grads(X, A, y)
    short = jax.jit(jax.vmap(lambda x, a, b: lax.fori_loop(
        0, np_steps, lambda k, v: W.dgd_step(v, a, b, lambda u: comm.neighbor_allreduce(u, topo)),
        x), axis_name=comm.axis_name))
    got = np.asarray(short(jnp.zeros((n, W.DIM), jnp.float32), jnp.asarray(A), jnp.asarray(y)))
    err = float(np.abs(got - X).max() / (np.abs(X).max() + 1e-30))
    if not err < 1e-3:
        raise RuntimeError(f"simulator and NumPy DGD disagree (relative error {err:.1e})")


def sim_rows(n: int, steps: int, repeats: int, mpi_ranks: bool = False) -> dict:
    """Seconds per DGD step of the simulator, the no-communication limit, dense NumPy and,
    with ``mpi_ranks``, one process per agent (``mpiexec -n n`` :mod:`dgd_ranks`), all in
    the same interleaved repetitions (``_timing.interleaved``, warm-up excluded).

    Returns the median per-step time of each method, ``"vs simulator"``: method -> (min,
    median) of its per-repetition ratio to the simulator, ``"sim / no-comm per
    repetition"``, and ``"mpi note"`` (why the MPI row is missing, if it is).
    """
    topo = make_topology("exponential", n)
    A, y = W.data(n)
    Aj, yj = jnp.asarray(A), jnp.asarray(y)
    comm = SimComm(n)
    X0 = jnp.zeros((n, W.DIM), jnp.float32)
    sim, local = _programs(n, steps, topo, comm)
    np_steps = max(2, steps // 5)
    _check_against_numpy(n, topo, comm, A, y, np_steps)
    Wm = topo.weights.astype(np.float32)  # float32 throughout, BLAS matmuls (numpy_grads)

    def numpy_run():
        X = np.zeros((n, W.DIM), np.float32)
        for _ in range(np_steps):
            X = Wm @ X - W.LR * W.numpy_grads(X, A, y)
        return X

    def per_step(fn, k):  # a self-timed method: seconds per step of one sample (>= 0.1 s)
        return lambda: call_time(fn, min_time=0.1) / k

    fns = {"simulator": per_step(lambda: sim(X0, Aj, yj).block_until_ready(), steps),
           "no-communication limit": per_step(
               lambda: local(X0, Aj, yj).block_until_ready(), steps),
           "dense NumPy": per_step(numpy_run, np_steps)}
    for fn in (sim, local):
        fn(X0, Aj, yj).block_until_ready()  # warm-up: compilation (excluded)
    numpy_run()
    out = {"mpi note": None}
    if mpi_ranks:
        probe = mpi_dgd(n, steps)  # warm-up launch (file cache; excluded), or why not
        if isinstance(probe, str):
            out["mpi note"] = probe
        else:
            fns["one process per agent"] = lambda: _checked(mpi_dgd(n, steps))
    times = interleaved(fns, repeats, sample=lambda fn: fn(), warmup=0)
    for name, ts in times.items():
        out[name] = statistics.median(ts)
    out["vs simulator"] = {name: ratio_stats(ts, times["simulator"])
                           for name, ts in times.items()}
    out["sim / no-comm per repetition"] = ratio_stats(times["simulator"],
                                                      times["no-communication limit"])
    return out


def _checked(value):
    if isinstance(value, str):
        raise RuntimeError(f"compare: an mpiexec launch of dgd_ranks failed: {value}")
    return value


def mpi_dgd(ranks: int, steps: int) -> float | str:
    """Seconds per DGD step with one process per agent: ONE ``mpiexec -n ranks`` launch of
    :mod:`dgd_ranks` (one sample of ``steps`` steps, timed inside the ranks after their own
    warm-up, slowest rank), or the reason it is unavailable."""
    exe = mpiexec_path()
    if exe is None:
        return "mpiexec not found"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "dgd.json")
        proc = subprocess.run([exe, "-n", str(ranks), sys.executable, "-m",
                               "benchmarks.dgd_ranks", "--steps", str(steps), "--samples", "1",
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
    """One ``mpiexec -n ranks`` run of ``benchmarks/mpi_exchange.py --json`` (all MPI
    methods, gloo included where torch is installed, interleaved in the same run), or why
    it could not run."""
    return run_module_json("mpi_exchange", ["--topologies", "exponential", "--sizes",
                                            ",".join(map(str, nbytes)), "--repeats", repeats],
                           ranks, 900, needs=("mpi4py", "mpi4jax"))


def exchange_ratios(data: dict) -> dict:
    """``(method, bytes) -> {"raw_sendrecv_mix": (min, median), "raw_sendrecv": ...}``: the
    per-repetition ratios of every method to the two raw baselines, from the per-repetition
    ``samples`` of one mpi_exchange.py JSON (all methods interleaved in the same repetitions)."""
    samples = {(r["method"], r["bytes"]): r["samples"] for r in data["results"]
               if r.get("samples")}
    out = {}
    for (method, b), ts in samples.items():
        out[(method, b)] = {base: ratio_stats(ts, samples[(base, b)])
                            for base in ("raw_sendrecv_mix", "raw_sendrecv")
                            if (base, b) in samples}
    return out


def mpi_text(data, pingpong, ranks: int) -> str:
    """The MPI table: every method of one mpi_exchange.py run, min and median of its
    per-repetition ratio to raw mpi4py Sendrecv + the same NumPy sum and to bare Sendrecv,
    plus the alpha-beta prediction fitted to a separate raw ping-pong run."""
    if isinstance(data, str):
        return f"**MPI**: not measured ({data})."
    from .cost_report import fit_from

    from bluefog.cost_model import exponential_exchange_time

    recs = data["results"]
    sizes = sorted({r["bytes"] for r in recs})
    by = {(r["method"], r["bytes"]): r["seconds"] for r in recs}
    rat = exchange_ratios(data)
    meta = data.get("meta", {})
    topo = make_topology("exponential", ranks)
    model = None if isinstance(pingpong, str) else fit_from(pingpong)
    L = [f"**MPI, {ranks} ranks on this machine, exponential graph "
         f"({topo.schedule.num_rounds} rounds)**, from one run of `benchmarks/mpi_exchange.py` "
         f"({meta.get('repeats', '?')} interleaved repetitions, warm-up excluded; load "
         f"{meta.get('load_before', '?')} before, {meta.get('load_after', '?')} after): time "
         "per neighbor exchange (slowest rank, median) and the min, median of the "
         "per-repetition ratio to raw mpi4py Sendrecv + the same float32 NumPy weighted sum "
         "(same work, same dtype; <= 1.11 = at least 0.9x its throughput) and to bare "
         "Sendrecv (no arithmetic):", "",
         "| size/rank | method | time | / (raw Sendrecv + NumPy sum) | / raw Sendrecv |",
         "|---|---|---|---|---|"]
    fmt = lambda r: "-" if r is None else f"{r[0]:.2f}, {r[1]:.2f}"  # noqa: E731
    for b in sizes:
        for method, label in EXCHANGE_METHODS:
            if (method, b) not in by:
                continue
            r = rat.get((method, b), {})
            L.append(f"| {b} B | {label} | {fmt_time(by[(method, b)])} | "
                     f"{fmt(r.get('raw_sendrecv_mix'))} | {fmt(r.get('raw_sendrecv'))} |")
        if model is not None:
            pred = fmt_time(float(exponential_exchange_time(model, ranks, b)))
            L.append(f"| {b} B | alpha-beta model, `R (alpha + m beta)` | {pred} | - | - |")
    if model is not None:
        L.append("")
        L.append(f"Model fitted to raw mpi4py ping-pong (`benchmarks/mpi_ranks.py`, a separate "
                 f"run): alpha = {fmt_time(model.alpha)}, 1/beta = "
                 f"{model.bandwidth / 1e9:.3g} GB/s.")
    if meta.get("gloo_note"):
        L.append("")
        L.append(f"gloo: {meta['gloo_note']}")
    return "\n".join(L)


# ---- report --------------------------------------------------------------------------------
def _sim_cell(d: dict, name: str) -> str:
    lo, med = d["vs simulator"][name]
    return f"{fmt_time(d[name])} ({lo:.2f}, {med:.2f}x)"


def render(sim64, sim4, mpi_table, load_before, load_after, ranks, repeats) -> str:
    """The perf-table markdown of one ``make compare`` run."""
    L = [f"Generated by `make compare` (`benchmarks/compare.py`) on "
         f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
         f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} (CPU); "
         f"{load_before} before, {load_after.split(' on ')[0]} after. The machine was "
         "shared with other jobs: compare ratios (same run), not absolute times.", "",
         f"**Simulator, DGD on logistic regression** ({W.M} x {W.DIM} local data per "
         f"agent, float32, exponential graph): time per step (median of {repeats} "
         "interleaved repetitions, warm-up excluded) and, in brackets, the min and median "
         "of the per-repetition ratio to the simulator:", "",
         f"| method | 64 agents | {ranks} agents |", "|---|---|---|"]
    for name in ("simulator", "no-communication limit", "dense NumPy"):
        L.append(f"| {name} | {_sim_cell(sim64, name)} | {_sim_cell(sim4, name)} |")
    cells = [f"{lo:.2f} / {med:.2f}" for lo, med in
             (d["sim / no-comm per repetition"] for d in (sim64, sim4))]
    L.append("| simulator / no-communication, min / median of per-repetition ratios "
             "(interleaved) | " + " | ".join(cells) + " |")
    name = "one process per agent"
    mp = _sim_cell(sim4, name) if name in sim4 else f"n/a ({sim4['mpi note']})"
    L.append(f"| {name} (one `mpiexec -n {ranks}` launch per repetition, rank-side time "
             f"after its warm-up, slowest rank) | - | {mp} |")
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


def mixing_text(repeats: int, grid=None) -> str:
    """The mixing-scaling table (:mod:`mixing_scaling`, ``grid`` of (n, d) points, default
    its full sweep) with its fitted exponents."""
    from . import mixing_scaling as ms

    load = machine_load()
    rows = [ms.measure(n, d, repeats=repeats) for n, d in (grid or ms.FULL_GRID)]
    return (f"Measured by `make compare` ({load} before, {machine_load().split(' on ')[0]} "
            f"after); the methods of each row timed in {repeats} interleaved repetitions "
            "(warm-up excluded); median time per mix and, in brackets, the min and median of "
            "the per-repetition ratio to `sim` (one jitted call per mix); `sim x K` = "
            f"{ms.LOOP} mixes inside one jitted `fori_loop`.\n\n" + ms.table(rows)
            + "\n\nFitted exponents (log-log least squares, medians):\n\n"
            + ms.scaling_summary(rows))


#: ``--quick``: a smoke run of every part (seconds to a few minutes), not for the README.
QUICK = {"steps": 5, "repeats": 2, "bytes": [1024, 65536], "floats": [2, 256],
         "mixing_grid": [(8, 1000), (16, 1000)]}
#: ping-pong / cost-table message sizes (float32 values per rank) of a full run.
FLOATS = [2, 256, 4096, 65536, 262144]


def _args(argv):
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
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and 2 repetitions: checks that every part runs")
    args = p.parse_args(argv)
    args.floats, args.mixing_grid = FLOATS, None
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    return args


def main(argv=None):
    args = _args(argv)
    load_before = machine_load()
    print(f"# compare ({load_before})", file=sys.stderr, flush=True)
    sim64 = sim_rows(64, args.steps, args.repeats)
    print(f"  simulator, 64 agents: {sim64}", file=sys.stderr, flush=True)
    sim4 = sim_rows(args.ranks, args.steps, args.repeats, mpi_ranks=True)
    print(f"  simulator, {args.ranks} agents (+ one process per agent): {sim4}",
          file=sys.stderr, flush=True)
    pingpong = run_ranks(floats=args.floats, ranks=args.ranks,
                         extra=["--samples", args.repeats] + (["--quick"] if args.quick else []))
    data = mpi_exchange(args.ranks, args.bytes, args.repeats)
    print("  mpi_exchange: " + ("ok" if isinstance(data, dict) else data), file=sys.stderr,
          flush=True)
    text = render(sim64, sim4, mpi_text(data, pingpong, args.ranks), load_before,
                  machine_load(), args.ranks, args.repeats)
    print(text)
    mix = None if args.no_mixing else mixing_text(max(3, args.repeats), args.mixing_grid)
    if mix:
        print("\n" + mix)
    cost = None
    if not isinstance(pingpong, str):
        cost = (f"Measured inside `mpiexec -n {args.ranks}` ranks by `benchmarks/mpi_ranks.py` "
                f"in this run (load average {pingpong.get('load_before')} -> "
                f"{pingpong.get('load_after')} on {os.cpu_count()} cores; ops interleaved, "
                f"{pingpong.get('repeats')} repetitions, warm-up excluded, slowest rank, "
                "median):\n\n"
                + cost_table(pingpong) + "\n\n" + ratio_table(pingpong))
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
