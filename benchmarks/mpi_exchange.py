"""Neighbor exchange under MPI: bluefog-jax vs raw mpi4py, MPI_Allreduce and gloo, side by side.

Run with ``mpiexec -n 4 .venv/bin/python -m benchmarks.mpi_exchange [--json out.json]
[--markdown]`` (or ``bfrun -np 4 python -m benchmarks.mpi_exchange ...``). For each topology
(exponential graph and ring over the world size) and each message size per rank, in ONE run,
it times one ``neighbor_allreduce`` (x_i <- sum_j W_ij x_j, float32) done by

* ``bluefog_loop``   ``MpiComm.neighbor_allreduce`` x K inside one jitted ``fori_loop``
                     (how the runners execute: docs/architecture.md, "Jit the whole loop"), time / K;
* ``bluefog_call``   one jitted call per exchange (dispatch included);
* ``raw_sendrecv``   mpi4py ``Sendrecv`` of NumPy buffers, one per schedule round, no
                     arithmetic: the communication limit the issue asks us to approach;
* ``raw_sendrecv_mix``  the same plus the NumPy weighted sum (the same exchange done by hand);
* ``mpi_allreduce``  mpi4py ``Allreduce`` of the same bytes (the global-average alternative);
* ``gloo``           torch.distributed (gloo backend) ``isend``/``irecv`` per round plus the
                     weighted sum in torch (skipped with a message when torch is absent).

Every sample is timed on every rank between barriers and the slowest rank is kept
(``_timing.slowest_rank_sample``). Each method is warmed up once (excluded); then the
``--repeats`` repetitions are **interleaved** (``_timing.interleaved``: every repetition
times every method once, the order rotated by one per repetition), and the table reports
medians plus the **min and median of the per-repetition ratio** (``_timing.ratio_stats``)
``bluefog_loop / raw_sendrecv_mix`` (the same exchange *and* the same float32 weighted sum
done by hand: same work, same dtype), ``bluefog_loop / raw_sendrecv`` (no arithmetic: the
communication limit) and ``gloo / bluefog_loop``; the JSON keeps every per-repetition
sample (the timeline's overhead is measured by ``benchmarks/timeline_overhead.py``).
Throughput is the bytes each rank sends per exchange
(rounds x message size) divided by the time. The load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys

import numpy as np

from ._raw import round_weights, weighted_sum
from ._timing import interleaved, load_average, ratio_stats, slowest_rank_sample

DEFAULT_SIZES = [1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20,
                 16 << 20, 64 << 20]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")],
                   default=DEFAULT_SIZES, help="bytes per rank, comma separated")
    p.add_argument("--topologies", default="exponential,ring")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget-bytes", type=float, default=128 << 20,
                   help="bytes per rank exchanged per sample (sets the loop length)")
    p.add_argument("--max-loop", type=int, default=200)
    p.add_argument("--no-gloo", action="store_true")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (rank 0)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 KiB and 64 KiB, exponential graph, 2 repetitions, "
                        "1 MiB per sample")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.topologies, args.repeats = [1 << 10, 64 << 10], "exponential", 2
        args.budget_bytes = 1 << 20
    return args


class Bench:
    def __init__(self, args):
        import jax
        from mpi4py import MPI

        from bluefog_dist import MpiComm

        self.jax, self.MPI, self.args = jax, MPI, args
        self.world = MPI.COMM_WORLD
        self.rank, self.size = self.world.Get_rank(), self.world.Get_size()
        self.comm = MpiComm()
        self.raw = self.world.Clone()
        self.results: list[dict] = []
        self.ratios: list[dict] = []
        self.torch = None
        self.gloo_note = None
        if not args.no_gloo:
            self._init_gloo()

    # ---- timing -----------------------------------------------------------------------------
    def sample(self, fn, inner: int) -> float:
        """Seconds per exchange of one sample: barrier, ``fn()``, slowest rank."""
        return slowest_rank_sample(self.raw, fn, inner)

    def loop_length(self, nbytes: int, rounds: int) -> int:
        k = int(self.args.budget_bytes // max(1, nbytes * max(rounds, 1)))
        return max(3, min(self.args.max_loop, k))

    # ---- methods -------------------------------------------------------------------------------
    def bluefog(self, topology, x, K):
        jax = self.jax
        comm = self.comm
        loop = jax.jit(lambda v: jax.lax.fori_loop(
            0, K, lambda _, u: comm.neighbor_allreduce(u, topology), v))
        call = jax.jit(lambda v: comm.neighbor_allreduce(v, topology))
        state = {"x": x}

        def run_loop():
            state["x"] = loop(state["x"]).block_until_ready()

        def run_calls():
            v = state["x"]
            for _ in range(K):
                v = call(v)
            state["x"] = v.block_until_ready()

        return run_loop, run_calls

    def raw_exchange(self, topology, x_np, K, mix: bool):
        """mpi4py ``Sendrecv`` per schedule round (+ the NumPy weighted sum if ``mix``)."""
        MPI = self.MPI
        sched = topology.schedule
        me = self.rank
        rounds = [(int(r.sources[me]), int(r.destinations[me])) for r in sched.rounds]
        recv = [np.empty_like(x_np) for _ in rounds]
        s_self, weights = round_weights(sched, me, x_np.dtype)  # float32: no promotion
        state = {"x": x_np.copy(), "acc": np.empty_like(x_np)}

        def exchange(x):
            for (src, dst), rb in zip(rounds, recv):
                if src == me:
                    rb[...] = x
                else:
                    self.raw.Sendrecv([x, MPI.FLOAT], dst, 0, [rb, MPI.FLOAT], src, 0)

        def run_mix():
            x, acc = state["x"], state["acc"]
            for _ in range(K):
                exchange(x)
                weighted_sum(x, recv, s_self, weights, acc)
                x, acc = acc, x
            state["x"], state["acc"] = x, acc

        def run_plain():
            for _ in range(K):
                exchange(state["x"])

        return run_mix if mix else run_plain

    def raw_allreduce(self, x_np, K):
        out = np.empty_like(x_np)

        def run():
            for _ in range(K):
                self.raw.Allreduce(x_np, out, op=self.MPI.SUM)
        return run

    def _init_gloo(self):
        try:
            import torch
            import torch.distributed as dist
        except ImportError:
            self.gloo_note = ("torch is not installed: gloo skipped (pip install torch==2.13.0 "
                              "into .venv for this benchmark only)")
            return
        if self.rank == 0:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
        else:
            port = None
        port = self.raw.bcast(port, root=0)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=self.rank, world_size=self.size)
        torch.set_num_threads(1)
        self.torch, self.dist = torch, dist

    def gloo(self, topology, x_np, K):
        torch, dist = self.torch, self.dist
        sched = topology.schedule
        me = self.rank
        rounds = [(int(r.sources[me]), int(r.destinations[me]), float(r.weights[me]))
                  for r in sched.rounds]
        x = torch.from_numpy(x_np.copy())
        recv = [torch.empty_like(x) for _ in rounds]
        s_self = float(sched.self_weights[me])
        state = {"x": x}

        def run():
            x = state["x"]
            for _ in range(K):
                for (src, dst, _), rb in zip(rounds, recv):
                    if src == me:
                        rb.copy_(x)
                        continue
                    reqs = [dist.isend(x, dst), dist.irecv(rb, src)]
                    for q in reqs:
                        q.wait()
                acc = x * s_self
                for (_, _, w), rb in zip(rounds, recv):
                    acc.add_(rb, alpha=w)
                x = acc
            state["x"] = x
        return run

    # ---- driver --------------------------------------------------------------------------------
    def record(self, topology, method, nbytes, seconds, rounds, **extra):
        sent = rounds * nbytes
        rec = {"topology": topology.name, "method": method, "bytes": nbytes,
               "seconds": seconds, "us": seconds * 1e6,
               "send_GBps": (sent / seconds / 1e9) if seconds > 0 else None, **extra}
        self.results.append(rec)
        if self.rank == 0:
            print(f"{topology.name:28s} {method:18s} {nbytes:>10d} B {seconds * 1e6:12.1f} us",
                  flush=True)

    def methods(self, topology, x, x_np, K):
        """Every method of one (topology, size) point: name -> function doing K exchanges."""
        run_loop, run_calls = self.bluefog(topology, x, K)
        out = {"bluefog_loop": run_loop, "bluefog_call": run_calls,
               "raw_sendrecv": self.raw_exchange(topology, x_np, K, mix=False),
               "raw_sendrecv_mix": self.raw_exchange(topology, x_np, K, mix=True),
               "mpi_allreduce": self.raw_allreduce(x_np, K)}
        if self.torch is not None:
            out["gloo"] = self.gloo(topology, x_np, K)
        return out

    def interleaved(self, fns: dict, K: int) -> dict:
        """Per-repetition seconds per exchange of every method (:func:`_timing.interleaved`:
        one warm-up each, excluded; repetitions interleaved, order rotated; slowest rank)."""
        return interleaved(fns, self.args.repeats, sample=lambda fn: self.sample(fn, K))

    def run(self):
        from bluefog.topology import exponential_graph, ring_graph

        makers = {"exponential": exponential_graph, "ring": ring_graph}
        for name in self.args.topologies.split(","):
            topology = makers[name](self.size)
            rounds = sum(1 for r in topology.schedule.rounds if r.sources[self.rank] != self.rank)
            rounds = self.raw.allreduce(rounds, op=self.MPI.MAX)
            for nbytes in self.args.sizes:
                self.point(topology, nbytes, rounds)

    #: (method, baseline) pairs reported as per-repetition ratios, where both were timed.
    PAIRS = [("bluefog_loop", "raw_sendrecv_mix"), ("bluefog_loop", "raw_sendrecv"),
             ("gloo", "bluefog_loop")]

    def point(self, topology, nbytes: int, rounds: int) -> None:
        """Every method at one (topology, size), interleaved; records times and ratios."""
        import jax.numpy as jnp

        K = self.loop_length(nbytes, rounds)
        x_np = np.random.default_rng(self.rank).standard_normal(max(1, nbytes // 4))
        x_np = x_np.astype(np.float32)
        times = self.interleaved(self.methods(topology, jnp.asarray(x_np), x_np, K), K)
        for method, ts in times.items():
            self.record(topology, method, nbytes, statistics.median(ts), rounds,
                        loop=K, min_seconds=min(ts), samples=ts)
        for method, base in self.PAIRS:
            if method in times and base in times:
                lo, med = ratio_stats(times[method], times[base])
                self.ratios.append({"topology": topology.name, "bytes": nbytes,
                                    "method": method, "vs": base, "min": lo, "median": med})

    def meta(self):
        import jax
        import mpi4jax

        return {"ranks": self.size, "host": platform.node(), "cpus": os.cpu_count(),
                "load_before": self.load_before, "load_after": load_average(),
                "mpi": self.MPI.Get_library_version().splitlines()[0].strip(),
                "jax": jax.__version__, "mpi4jax": mpi4jax.__version__,
                "torch": None if self.torch is None else self.torch.__version__,
                "gloo_note": self.gloo_note, "repeats": self.args.repeats,
                "mpich_yield": {k: os.environ.get(k) for k in
                                ("MPIR_CVAR_ENABLE_HEAVY_YIELD", "MPIR_CVAR_POLLS_BEFORE_YIELD")},
                "command": " ".join(sys.argv)}


def _fmt_size(b):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= scale:
            return f"{b // scale} {unit}"
    return f"{b} B"


#: Largest median ratio ``bluefog_loop / raw_sendrecv_mix`` that is still >= 0.9x the
#: throughput of raw MPI doing the same work (issue 13): 1 / 0.9.
TARGET_RATIO = 1 / 0.9


def markdown(results, meta, ratios=()) -> str:
    """Markdown tables of one run: median times per method, per-repetition ratios."""
    by = {(r["topology"], r["method"], r["bytes"]): r["seconds"] for r in results}
    rat = {(r["topology"], r.get("method", "bluefog_loop"), r["vs"], r["bytes"]): r
           for r in ratios}
    topologies = list(dict.fromkeys(r["topology"] for r in results))
    sizes = sorted({r["bytes"] for r in results})
    lines = [f"{meta['ranks']} ranks, {meta['cpus']} CPUs, load {meta['load_before']} -> "
             f"{meta['load_after']}; {meta['mpi']}; {meta['repeats']} interleaved repetitions "
             "(warm-up excluded, order rotated); us per exchange (slowest rank, median); "
             "loop / raw+mix and loop / raw = min and median of the per-repetition ratio of "
             "bluefog_loop to raw mpi4py Sendrecv with (without) the same float32 weighted "
             "sum in NumPy; >= 0.9x = median loop / raw+mix <= 1.11 (>= 0.9x its "
             "throughput); gloo / loop = min and median of the per-repetition ratio.", ""]
    for topo in topologies:
        lines += [f"**{topo}**", "",
                  "| size/rank | bluefog loop | bluefog 1 call | raw Sendrecv | raw Sendrecv+NumPy mix "
                  "| MPI_Allreduce | gloo | loop / raw+mix (min, med) | >= 0.9x | "
                  "loop / raw (min, med) | gloo / loop (min, med) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for b in sizes:
            g = lambda m: by.get((topo, m, b))  # noqa: E731
            cell = lambda v: "-" if v is None else f"{v * 1e6:.1f}"  # noqa: E731

            def ratio(method, vs):
                r = rat.get((topo, method, vs, b))
                return "-" if r is None else f"{r['min']:.2f}, {r['median']:.2f}"

            mix = rat.get((topo, "bluefog_loop", "raw_sendrecv_mix", b))
            met = "-" if mix is None else ("yes" if mix["median"] <= TARGET_RATIO else "no")
            lines.append(
                f"| {_fmt_size(b)} | {cell(g('bluefog_loop'))} | {cell(g('bluefog_call'))} | "
                f"{cell(g('raw_sendrecv'))} | {cell(g('raw_sendrecv_mix'))} | "
                f"{cell(g('mpi_allreduce'))} | {cell(g('gloo'))} | "
                f"{ratio('bluefog_loop', 'raw_sendrecv_mix')} | {met} | "
                f"{ratio('bluefog_loop', 'raw_sendrecv')} | {ratio('gloo', 'bluefog_loop')} |")
        lines.append("")
    if meta.get("gloo_note"):
        lines.append(meta["gloo_note"])
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    load = load_average()
    bench = Bench(args)
    bench.load_before = load
    if bench.rank == 0 and bench.gloo_note:
        print(bench.gloo_note, flush=True)
    bench.run()
    meta = bench.meta()
    if bench.rank == 0:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"meta": meta, "results": bench.results, "ratios": bench.ratios},
                          fh, indent=1)
        if args.markdown:
            print(markdown(bench.results, meta, bench.ratios))
    if bench.torch is not None:
        bench.dist.destroy_process_group()


if __name__ == "__main__":
    main()
