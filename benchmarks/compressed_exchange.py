"""Compressed vs dense neighbor_allreduce under MPI: time per exchange and bytes per message.

Run on every rank, from the repository root::

    bfrun -np 4 python -m benchmarks.compressed_exchange --sizes-mib 0.25 4 16 64 --markdown

For each model size (float32) and compressor, every rank runs ``K`` exchanges on the ring
inside one jitted ``fori_loop`` (one dispatch, warm-up excluded), dense and compressed
interleaved repetition by repetition (order rotated; slowest rank per sample; the shared
``benchmarks._timing`` helpers), so both see the same machine state. Reported per row:
the bytes each rank sends per exchange (payload arrays, counted from their static shapes;
the timeline test checks they are what crosses ``sendrecv``), the median seconds per
exchange of both, and the min and median over repetitions of the per-repetition ratio
compressed / dense. Both sides do the same work around the wire: the dense side mixes
``W @ X`` in float32; the compressed side compresses, sends the payload, decompresses and
mixes. The machine load is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bluefog import compression as C
from bluefog.topology import ring_graph

from ._timing import interleaved, machine_load, ratio_stats, slowest_rank_sample

COMPRESSORS = {"top_k(1%)": C.top_k(0.01), "int8": C.blockwise(8, 1024),
               "top_k(1%)>int8": C.chain(C.top_k(0.01), C.blockwise(8, 1024)),
               "sign": C.scaled_sign()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes-mib", type=float, nargs="+", default=[0.25, 4.0, 16.0, 64.0])
    p.add_argument("--compressors", nargs="+", default=list(COMPRESSORS),
                   choices=list(COMPRESSORS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the rows as JSON (rank 0)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (rank 0)")
    return p.parse_args(argv)


def _loop(comm, topology, K, compressor):
    def body(i, carry):
        x, key = carry
        if compressor is None:
            y = comm.neighbor_allreduce(x, topology)
        else:
            k = jax.random.fold_in(key, i)
            y = comm.neighbor_allreduce(x, topology, compressor=compressor, key=k)
        return (y, key)

    return jax.jit(lambda x, key: lax.fori_loop(0, K, body, (x, key))[0])


def measure(comm, d: int, name: str, repeats: int) -> dict:
    topology = ring_graph(comm.size)
    nbytes = 4 * d
    K = int(max(2, min(50, (256 << 20) // max(nbytes, 1))))
    x = jnp.asarray(np.random.default_rng(comm.rank()).normal(size=d), jnp.float32)
    key = jax.random.PRNGKey(comm.rank())
    dense, comp = _loop(comm, topology, K, None), _loop(comm, topology, K, COMPRESSORS[name])
    # one warm-up each (compile; excluded), then interleaved repetitions, order rotated,
    # slowest rank per sample (benchmarks._timing)
    times = interleaved({"dense": lambda: jax.block_until_ready(dense(x, key)),
                         "compressed": lambda: jax.block_until_ready(comp(x, key))},
                        repeats, sample=lambda fn: slowest_rank_sample(comm.comm, fn, K))
    lo, med = ratio_stats(times["compressed"], times["dense"])
    rounds = sum(1 for r in topology.schedule.rounds if r.sources[comm.rank()] != comm.rank())
    return {"size_mib": nbytes / 2**20, "compressor": name, "ranks": comm.size, "K": K,
            "dense_bytes_per_exchange": rounds * nbytes,
            "compressed_bytes_per_exchange": rounds * C.payload_bits(COMPRESSORS[name], d) // 8,
            "dense_s": statistics.median(times["dense"]),
            "compressed_s": statistics.median(times["compressed"]),
            "ratio_min": lo, "ratio_median": med}


def markdown(rows, load: str) -> str:
    lines = [f"Ring, {rows[0]['ranks'] if rows else '?'} ranks, float32; {load}.", "",
             "| model | compressor | bytes/exchange dense -> compressed | dense ms | "
             "compressed ms | compressed/dense min | median |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['size_mib']:g} MiB | {r['compressor']} | {r['dense_bytes_per_exchange']:,} -> "
            f"{r['compressed_bytes_per_exchange']:,} | {1e3 * r['dense_s']:.2f} | "
            f"{1e3 * r['compressed_s']:.2f} | {r['ratio_min']:.2f} | {r['ratio_median']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from bluefog_dist import MpiComm

    comm = MpiComm()
    rows = []
    for mib in args.sizes_mib:
        d = max(1, int(mib * 2**20) // 4)
        for name in args.compressors:
            rows.append(measure(comm, d, name, args.repeats))
    if comm.rank() == 0:
        load = machine_load()
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"rows": rows, "load": load}, fh, indent=1)
        if args.markdown:
            print(markdown(rows, load))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
