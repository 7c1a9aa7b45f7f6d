"""The one comparison command (``make compare``): side-by-side runs -> README performance table.

In ONE run of this script, on this machine, it measures

A. **Simulator** - DGD on logistic regression (:mod:`_workload`: 200 samples x 1000
   features per agent, exponential graph), time per step, with 64 agents and with 4:

   * ``simulator``: ``jit(vmap(fori_loop(dgd_step)))`` with ``SimComm.neighbor_allreduce``;
   * ``no-communication limit``: the same program with the mixing replaced by the identity
     (what the step costs if communication were free);
   * ``dense NumPy``: ``X <- W @ X - lr * grads(X)`` with NumPy (the usual hand-written
     simulation);
   * ``one process per agent`` (4 agents only): ``mpiexec -n 4``, ``bluefog_dist.MpiComm``,
     the same per-agent step (:mod:`dgd_ranks`), slowest rank.

B. **MPI** - one neighbour exchange on the exponential graph over ``mpiexec -n 4`` ranks,
   timed inside the ranks (:mod:`mpi_ranks`): ``MpiComm.neighbor_allreduce`` (many inside
   one jitted loop, and one jitted call per exchange), the same schedule with raw mpi4py
   ``Sendrecv`` + NumPy, ``MPI_Allreduce`` (mpi4py), ``MpiComm.allreduce``, torch.distributed
   gloo (from ``benchmarks/mpi_exchange.py --json`` when that script and torch are present),
   and the alpha-beta model's prediction (:mod:`cost_report`).

Every number is a median over repeats; every ratio is between numbers of this same run. The
markdown goes to stdout and, with ``--write-readme`` (what ``make compare`` does), between
the ``<!-- perf-table -->`` markers of README.md. About 2-4 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _workload as W  # noqa: E402
from _timing import fmt_time, machine_load, median_time  # noqa: E402
from _topologies import make_topology  # noqa: E402

from bluefog_sim import SimComm  # noqa: E402

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
    for name, fn in (("simulator", sim), ("no-communication limit", local)):
        fn(X0, Aj, yj).block_until_ready()
        out[name] = median_time(lambda: fn(X0, Aj, yj).block_until_ready(),
                                repeats=repeats, warmup=0) / steps

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
    from asv_bench.mpi_ops import _mpiexec

    exe = _mpiexec()
    if exe is None:
        return "mpiexec not found"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "dgd.json")
        proc = subprocess.run([exe, "-n", str(ranks), sys.executable,
                               os.path.join(HERE, "dgd_ranks.py"), "--steps", str(steps),
                               "--json", out], capture_output=True, text=True, timeout=600)
        if proc.returncode or not os.path.exists(out):
            return f"mpiexec failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
        with open(out) as f:
            return json.load(f)["per_step"]


# ---- B: MPI ops ----------------------------------------------------------------------------
def gloo_times(ranks: int, floats: list[int]) -> dict | str:
    """``{floats: seconds}`` for a torch.distributed gloo exchange, from mpi_exchange.py."""
    script = os.path.join(HERE, "mpi_exchange.py")
    if not os.path.exists(script):
        return "benchmarks/mpi_exchange.py not present"
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch not installed"
    from asv_bench.mpi_ops import _mpiexec

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.json")
        proc = subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, script, "--json",
                               out], capture_output=True, text=True, timeout=600)
        if proc.returncode or not os.path.exists(out):
            return f"mpi_exchange.py failed: {proc.stderr.strip()[-300:]}"
        with open(out) as f:
            data = json.load(f)
    found = {}
    # Accept any record that names gloo with a message size and a time in seconds.
    recs = data if isinstance(data, list) else data.get("results", data.get("rows", []))
    for r in recs if isinstance(recs, list) else []:
        text = json.dumps(r).lower()
        if "gloo" in text:
            nbytes = r.get("bytes", r.get("nbytes"))
            t = r.get("seconds", r.get("time", r.get("median")))
            if nbytes is not None and t is not None:
                found[int(nbytes) // 4] = float(t)
    return found or "mpi_exchange.py --json has no gloo records"


def mpi_rows(res: dict, gloo) -> list[tuple[str, dict]]:
    from cost_report import fit_from

    from bluefog.cost_model import exponential_exchange_time, ring_allreduce_time

    ops = res["ops"]
    model = fit_from(res)
    n = res["size"]
    rows = [
        ("MpiComm.neighbor_allreduce, 20 per jitted loop", ops.get("bluefog_neighbor_allreduce_loop", {})),
        ("MpiComm.neighbor_allreduce, 1 jitted call each", ops.get("bluefog_neighbor_allreduce", {})),
        ("raw mpi4py Sendrecv per round + NumPy", ops.get("raw_exchange_exponential", {})),
        ("MPI_Allreduce (mpi4py)", ops.get("raw_allreduce", {})),
        ("MpiComm.allreduce, 20 per jitted loop", ops.get("bluefog_allreduce_loop", {})),
    ]
    if isinstance(gloo, dict):
        rows.append(("torch.distributed gloo (mpi_exchange.py)", {str(k): v for k, v in gloo.items()}))
    sizes = sorted(ops.get("raw_exchange_exponential", {}), key=int)
    rows.append(("alpha-beta model: exponential exchange",
                 {s: float(exponential_exchange_time(model, n, 4 * int(s))) for s in sizes}))
    rows.append(("alpha-beta model: ring allreduce",
                 {s: float(ring_allreduce_time(model, n, 4 * int(s))) for s in sizes}))
    return rows


# ---- report --------------------------------------------------------------------------------
def render(sim64, sim4, dgd_mpi, mpi_res, gloo, load_before, load_after, rounds64) -> str:
    L = []
    L.append(f"Generated by `make compare` (`benchmarks/compare.py`) on "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} (CPU); "
             f"{load_before} before, {load_after.split(' on ')[0]} after. The machine was "
             "shared; ratios within a column block were measured in the same run.")
    L.append("")
    L.append(f"**Simulator, DGD on logistic regression** ({W.M} x {W.DIM} local data, "
             f"exponential graph; time per step, ratio to the simulator):")
    L.append("")
    L.append("| method | 64 agents | 4 agents |")
    L.append("|---|---|---|")
    for name in ("simulator", "no-communication limit", "dense NumPy"):
        cells = []
        for d in (sim64, sim4):
            cells.append(f"{fmt_time(d[name])} ({d[name] / d['simulator']:.2g}x)")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    mp = (f"{fmt_time(dgd_mpi)} ({dgd_mpi / sim4['simulator']:.2g}x)"
          if isinstance(dgd_mpi, float) else f"n/a ({dgd_mpi})")
    L.append(f"| one process per agent (mpiexec -n 4, MpiComm) | - | {mp} |")
    L.append("")
    if isinstance(mpi_res, str):
        L.append(f"**MPI**: not measured ({mpi_res}).")
        return "\n".join(L)
    rows = mpi_rows(mpi_res, gloo)
    sizes = sorted(mpi_res["ops"]["raw_exchange_exponential"], key=int)
    base = dict(mpi_res["ops"]["raw_exchange_exponential"])
    L.append(f"**MPI, {mpi_res['size']} ranks on this machine, exponential graph "
             f"({mpi_res.get('exponential_rounds', '?')} rounds)**: time per operation inside "
             "the ranks (slowest rank, median), ratio to raw mpi4py:")
    L.append("")
    L.append("| operation | " + " | ".join(f"{4 * int(s)} B" for s in sizes) + " |")
    L.append("|---|" + "---|" * len(sizes))
    for name, vals in rows:
        cells = []
        for s in sizes:
            v = vals.get(s)
            cells.append("-" if v is None else f"{fmt_time(v)} ({v / base[s]:.2g}x)")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    if isinstance(gloo, str):
        L.append("")
        L.append(f"torch.distributed gloo: not measured ({gloo}).")
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
    import mixing_scaling as ms

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
    p.add_argument("--floats", type=int, nargs="+", default=[256, 65536, 262144])
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
    from asv_bench.mpi_ops import run_ranks

    # 8-byte messages are always included: they pin the alpha of the cost-model fit.
    mpi_res = run_ranks(floats=sorted(set(args.floats) | {2}), ranks=args.ranks)
    gloo = gloo_times(args.ranks, args.floats)
    print(f"  gloo: {gloo}", file=sys.stderr, flush=True)
    text = render(sim64, sim4, dgd_mpi, mpi_res, gloo, load_before, machine_load(),
                  make_topology("exponential", 64).schedule.num_rounds)
    print(text)
    mix = None if args.no_mixing else mixing_text(max(3, args.repeats))
    if mix:
        print("\n" + mix)
    if args.write_readme:
        write_readme(text, args.readme)
        if mix:
            write_readme(mix, args.readme, "<!-- mixing-table -->", "<!-- /mixing-table -->")
        print(f"\nwrote the table into {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
