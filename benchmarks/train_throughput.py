r"""Decentralized training throughput and accuracy (issue 5), measured side by side.

Throughput: 64 agents, MLP(64) on scikit-learn's digits (iid split, batch 16 per agent),
DmSGD (ATC, momentum 0.9). One compiled ``jit(vmap(fori_loop(step)))`` per variant, timed
in interleaved repetitions (so every variant sees the same machine load) and reported as
the minimum and median microseconds per step and the ratio to the no-communication limit:

* ``none`` - the same vmapped training with no communication (the limit),
* ``exponential`` - neighbor averaging over the static exponential graph (6 rounds),
* ``one_peer_exponential`` - the dynamic one-peer exponential graph (1 round per step),
* ``gradient_allreduce`` - the Horovod baseline (``psum`` of gradients).

``bluefog_sim.run`` end to end (metrics every 20 steps, as the CLI) is timed as well.
With ``--mpi 2,4`` the same per-agent step runs under ``mpiexec -n k`` for the same
``--agents`` agents (a contiguous block of ``agents / k`` per rank under ``vmap``,
:class:`bluefog_dist.BlockComm`; exponential graph over all agents), measured in interleaved
repetitions like the simulator's rows: nothing is extrapolated.

Accuracy (``--accuracy``): test accuracy of the averaged model after the same budget
(steps, lr, batch) for ATC over the exponential graph vs gradient allreduce, over seeds,
iid and non-iid (Dirichlet(0.1), label-sorted), with DmSGD and QG-DSGDm.

Usage::

    python -m benchmarks.train_throughput --reps 15 --mpi 2,4 --accuracy --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(agents, *extra):
    from bluefog_train.cli import build_parser
    from bluefog_train.config import validate_config

    cfg = vars(build_parser().parse_args(["--agents", str(agents), "--no-progress", *extra]))
    return validate_config(cfg)


def _variants():
    return {"none": ["--communication", "none"],
            "exponential": ["--topology", "exponential"],
            "one_peer_exponential": ["--topology", "one_peer_exponential"],
            "gradient_allreduce": ["--communication", "gradient_allreduce"]}


def _loop(algorithm, problem, topology, comm, K):
    """Per-agent ``(state, data, key) -> state`` running ``K`` steps."""
    from jax import lax

    from bluefog.algorithm import AgentContext

    def fn(state, data, key):
        ctx = AgentContext(comm, topology, problem, data, key)
        return lax.fori_loop(0, K, lambda _, s: algorithm.step(s, ctx), state)

    return fn


def sim_throughput(agents=64, K=200, reps=9, batch_size=16):
    """Interleaved timings (us/step) of the variants in the simulator."""
    import jax

    import bluefog_sim
    from bluefog.algorithm import AgentContext
    from bluefog_train.experiment import make_experiment

    fns, states, keys = {}, {}, bluefog_sim.agent_keys(0, agents)
    for name, extra in _variants().items():
        exp = make_experiment(_cfg(agents, "--batch-size", str(batch_size), *extra))
        comm = bluefog_sim.SimComm(agents)
        alg, prob, topo = exp["algorithm"], exp["problem"], exp["topology"]
        f = jax.jit(jax.vmap(_loop(alg, prob, topo, comm, K), axis_name=comm.axis_name))
        s0 = jax.jit(jax.vmap(
            lambda d, k, alg=alg, prob=prob, topo=topo, comm=comm: alg.init(
                prob.init_params, AgentContext(comm, topo, prob, d, k)),
            axis_name=comm.axis_name))(prob.data, keys)
        jax.block_until_ready(f(s0, prob.data, keys))  # compile + warm up
        fns[name], states[name] = (f, prob.data), s0
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, (f, data) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(states[name], data, keys))
            times[name].append((time.perf_counter() - t0) / K * 1e6)
    return times


def sim_run_end_to_end(agents=64, steps=1000, record_every=20):
    """``bluefog_sim.run`` with the CLI's metrics: (run_seconds, compile_seconds)."""
    import bluefog_sim
    from bluefog_train.experiment import make_experiment

    out = {}
    for name in ("none", "exponential"):
        exp = make_experiment(_cfg(agents, *_variants()[name]))
        r = bluefog_sim.run(exp["algorithm"], exp["problem"], exp["topology"], steps,
                            record_every=record_every, progress=False, metrics=exp["metrics"])
        out[name] = {"us_per_step": r.run_seconds / steps * 1e6, "compile_s": r.compile_seconds}
    return out


def _rank_program(name, agents, batch_size, K):
    """This rank's compiled K-step program, state, data and keys for variant ``name``:
    ``agents / ranks`` agents per rank (``BlockComm`` under ``vmap``; plain ``MpiComm``
    for one agent per rank)."""
    import jax
    import jax.numpy as jnp

    import bluefog_dist
    from bluefog.algorithm import AgentContext
    from bluefog.engine import agent_key
    from bluefog_train.experiment import make_experiment

    mpi_comm = bluefog_dist.default_comm()
    ranks, rank = mpi_comm.size, mpi_comm.rank()
    per = agents // ranks
    exp = make_experiment(_cfg(agents, "--batch-size", str(batch_size), *_variants()[name]))
    alg, prob, topo = exp["algorithm"], exp["problem"], exp["topology"]
    if per == 1:
        comm, lift = mpi_comm, (lambda f: f)
        data = jax.tree_util.tree_map(lambda a: a[rank], prob.data)
        keys = agent_key(0, rank)
    else:
        comm = bluefog_dist.BlockComm(mpi_comm, per)
        lift = lambda f: jax.vmap(f, axis_name=comm.axis_name)  # noqa: E731
        data = jax.tree_util.tree_map(lambda a: a[rank * per:(rank + 1) * per], prob.data)
        keys = jax.vmap(lambda i: agent_key(0, i))(
            jnp.arange(rank * per, (rank + 1) * per, dtype=jnp.uint32))
    f = jax.jit(lift(_loop(alg, prob, topo, comm, K)))
    s0 = jax.jit(lift(lambda d, k: alg.init(prob.init_params,
                                             AgentContext(comm, topo, prob, d, k))))(data, keys)
    jax.block_until_ready(f(s0, data, keys))  # compile + warm up (excluded)
    return f, s0, data, keys


def mpi_worker(K, reps, batch_size, agents):
    """Run under mpiexec: ``agents`` agents over the ranks (a contiguous block per rank),
    repetitions of the variants interleaved; rank 0 prints one JSON line."""
    import jax

    import bluefog_dist

    mpi = bluefog_dist.default_comm().comm
    programs = {name: _rank_program(name, agents, batch_size, K)
                for name in ("none", "exponential")}
    result = {name: [] for name in programs}
    for _ in range(reps):
        for name, (f, s0, data, keys) in programs.items():
            mpi.Barrier()
            t0 = time.perf_counter()
            jax.block_until_ready(f(s0, data, keys))
            mpi.Barrier()
            result[name].append((time.perf_counter() - t0) / K * 1e6)
    if mpi.Get_rank() == 0:
        print("RESULT " + json.dumps({"ranks": mpi.Get_size(), "agents": agents,
                                      "us_per_step": result}), flush=True)


def mpi_throughput(ranks, K, reps, batch_size, agents):
    from bluefog_dist.launcher import oversubscription_env

    out = {}
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    for k in ranks:
        if agents % k:
            raise ValueError(f"--mpi: every rank count must divide --agents {agents}; got {k}.")
        env = dict(os.environ, JAX_PLATFORMS="cpu", **oversubscription_env(k))
        cmd = [mpiexec, "-n", str(k), sys.executable, "-m", "benchmarks.train_throughput",
               "--mpi-worker", "--K", str(K), "--reps", str(reps), "--batch-size",
               str(batch_size), "--agents", str(agents)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            raise RuntimeError(f"mpiexec -n {k} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        out[k] = json.loads(line[0][7:])["us_per_step"]
    return out


def accuracy_study(seeds=(0, 1, 2), steps=1000, agents=64):
    """Final test accuracy (averaged model) for each (split, method) over seeds."""
    from bluefog_train.training import train

    splits = {"iid": [], "dirichlet(0.1)": ["--split", "dirichlet", "--alpha", "0.1"],
              "label_sorted": ["--split", "label_sorted"]}
    methods = {"ATC DmSGD, exponential": ["--topology", "exponential"],
               "ATC QG-DSGDm, exponential": ["--topology", "exponential", "--optimizer", "qg_dsgdm"],
               "gradient allreduce (DmSGD)": ["--communication", "gradient_allreduce"]}
    out = {}
    for split, sx in splits.items():
        for method, mx in methods.items():
            accs, agent_mean = [], []
            for seed in seeds:
                cfg = _cfg(agents, "--steps", str(steps), "--record-every", str(steps), "--seed",
                           str(seed), *sx, *mx)
                r = train(cfg, progress=False)
                accs.append(r["final"]["test_accuracy"])
                agent_mean.append(r["final"]["agent_accuracy_mean"])
            out[(split, method)] = (accs, agent_mean)
    return out


def _fmt_sim(times):
    base = times["none"]
    rows = ["| variant | min us/step | median us/step | ratio to no-comm (min / median of per-rep ratios) |",
            "|---|---|---|---|"]
    for name, v in times.items():
        ratios = [a / b for a, b in zip(v, base)]
        rows.append(f"| {name} | {min(v):.0f} | {statistics.median(v):.0f} | "
                    f"{min(v) / min(base):.2f} / {statistics.median(ratios):.2f} |")
    return "\n".join(rows)


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=64)
    p.add_argument("--K", type=int, default=200, help="steps per timed call")
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--mpi", default="", help="comma-separated rank counts, e.g. 2,4")
    p.add_argument("--accuracy", action="store_true")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--markdown", default=None, help="also write the tables to this file")
    p.add_argument("--json", default=None)
    p.add_argument("--mpi-worker", action="store_true", help=argparse.SUPPRESS)
    return p


def _mpi_section(a, t, record) -> list:
    """Measured rows only: each MPI row is k processes holding all ``a.agents`` agents
    (``a.agents / k`` per rank); nothing is extrapolated."""
    ranks = [int(k) for k in a.mpi.split(",")]
    m = mpi_throughput(ranks, max(20, a.K // 4), max(3, a.reps // 2), a.batch_size, a.agents)
    record["mpi_us_per_step"] = m
    rows = ["| backend | agents | us/step, exponential (min) | us/step, no comm (min) |",
            "|---|---|---|---|",
            f"| simulator | {a.agents} | {min(t['exponential']):.0f} | {min(t['none']):.0f} |"]
    for k, v in m.items():
        rows.append(f"| mpiexec -n {k}, {a.agents // k} agents/rank | {a.agents} | "
                    f"{min(v['exponential']):.0f} | {min(v['none']):.0f} |")
    return ["**MPI, the same agents over k processes** (processes time-share the cores):", "",
            *rows, ""]


def _accuracy_section(a, record) -> list:
    acc = accuracy_study(tuple(range(a.seeds)), agents=a.agents)
    record["accuracy"] = {f"{s} | {m}": v for (s, m), v in acc.items()}
    rows = ["| split | method | test acc. of averaged model (mean over seeds) | per seed | "
            "mean agent acc. |", "|---|---|---|---|---|"]
    for (s, m), (accs, am) in acc.items():
        rows.append(f"| {s} | {m} | {100 * np.mean(accs):.2f}% | "
                    f"{', '.join(f'{100 * x:.1f}' for x in accs)} | {100 * np.mean(am):.2f}% |")
    return [f"**Accuracy**, {a.agents} agents, 1000 steps, lr 0.1, momentum 0.9, batch 16/agent, "
            f"seeds 0..{a.seeds - 1}:", "", *rows, ""]


def _printed(lines: list) -> list:
    print("\n".join(lines), flush=True)
    return lines


def main(argv=None):
    a = _parser().parse_args(argv)
    if a.mpi_worker:
        mpi_worker(a.K, a.reps, a.batch_size, a.agents)
        return 0
    load = os.getloadavg()
    md = [f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} (1/5/15 min) at start.", ""]
    record = {"load_start": load}
    t = sim_throughput(a.agents, a.K, a.reps, a.batch_size)
    record["sim_us_per_step"] = t
    md += [f"**Simulator, {a.agents} agents, MLP(64) on digits, batch {a.batch_size}/agent, "
           f"DmSGD** ({a.reps} interleaved repetitions of {a.K} steps):", "", _fmt_sim(t), ""]
    e2e = sim_run_end_to_end(a.agents)
    record["sim_run_end_to_end"] = e2e
    md += [f"`bluefog_sim.run` end to end, metrics every 20 steps: exponential "
           f"{e2e['exponential']['us_per_step']:.0f} us/step vs none "
           f"{e2e['none']['us_per_step']:.0f} us/step (ratio "
           f"{e2e['exponential']['us_per_step'] / e2e['none']['us_per_step']:.2f}).", ""]
    print("\n".join(md), flush=True)
    if a.mpi:
        md += _printed(_mpi_section(a, t, record))
    if a.accuracy:
        md += _printed(_accuracy_section(a, record))
    load = os.getloadavg()
    md.append(f"Load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.")
    record["load_end"] = load
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(record, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
