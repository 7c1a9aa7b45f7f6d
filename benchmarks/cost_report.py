"""Alpha-beta cost model beside measurement (MPI, ``mpiexec -n N`` on this machine).

1. Run :mod:`mpi_ranks` under ``mpiexec -n N`` (or read its ``--json`` output).
2. Fit :math:`T(m) = \\alpha + \\beta m` to the raw mpi4py ping-pong one-way times
   (:func:`bluefog.cost_model.fit_alpha_beta`, relative least squares).
3. Print, per message size, predicted vs measured time for one ring ``Sendrecv`` (1 round),
   the exponential graph's schedule (raw mpi4py and ``MpiComm.neighbor_allreduce``),
   the one-peer exponential graph, and allreduce (ring formula; MPICH picks recursive
   doubling / Rabenseifner by size, so that row shows how far the ring model is from it).

Usage::

    python -m benchmarks.cost_report                 # runs mpiexec -n 4 (about a minute)
    python -m benchmarks.cost_report --from out.json # from an earlier mpi_ranks.py --json

The ranks share this machine's cores, so "measured / predicted" above 1 shows CPU contention
and per-call overhead that the network model does not contain.
"""

from __future__ import annotations

import argparse
import json
import sys

from bluefog.cost_model import (
    exponential_exchange_time,
    fit_alpha_beta,
    one_peer_exponential_time,
    recursive_doubling_allreduce_time,
    ring_allreduce_time,
)

from ._timing import fmt_time, machine_load

#: (row label, measured op in mpi_ranks' JSON, prediction(model, n, nbytes))
ROWS = [
    ("ring Sendrecv, raw mpi4py (1 round)", "raw_sendrecv_ring",
     lambda mdl, n, b: mdl.p2p(b)),
    ("exponential graph, raw mpi4py", "raw_exchange_exponential", exponential_exchange_time),
    ("exponential graph, MpiComm (in fori_loop)", "bluefog_neighbor_allreduce_loop",
     exponential_exchange_time),
    ("exponential graph, MpiComm (1 call per op)", "bluefog_neighbor_allreduce",
     exponential_exchange_time),
    ("one-peer exponential, MpiComm (in fori_loop)", "bluefog_one_peer_loop",
     one_peer_exponential_time),
    ("MPI_Allreduce, raw mpi4py (ring model)", "raw_allreduce", ring_allreduce_time),
    ("MPI_Allreduce, raw mpi4py (recursive-doubling model)", "raw_allreduce",
     recursive_doubling_allreduce_time),
    ("allreduce, MpiComm (in fori_loop; ring model)", "bluefog_allreduce_loop",
     ring_allreduce_time),
]


def fit_from(res: dict):
    """The alpha-beta fit of ``res["ops"]["raw_pingpong"]`` (sizes in float32 values)."""
    pp = res["ops"].get("raw_pingpong")
    if not pp or len(pp) < 2:
        raise ValueError("the MPI run has no raw_pingpong timings for >= 2 sizes; "
                         "run mpi_ranks.py with at least 2 ranks and 2 --floats values")
    sizes = sorted(pp, key=int)
    return fit_alpha_beta([4 * int(s) for s in sizes], [pp[s] for s in sizes])


def rows(res: dict) -> list[dict]:
    """Predicted vs measured rows for every op and size in ``res``."""
    model = fit_from(res)
    n = res["size"]
    out = []
    for label, op, predict in ROWS:
        for s, measured in sorted(res["ops"].get(op, {}).items(), key=lambda kv: int(kv[0])):
            nbytes = 4 * int(s)
            pred = float(predict(model, n, nbytes))
            out.append({"op": label, "bytes": nbytes, "predicted": pred, "measured": measured})
    return out


def table(res: dict) -> str:
    model = fit_from(res)
    lines = [f"alpha-beta fit to raw ping-pong, {res['size']} ranks: alpha = "
             f"{fmt_time(model.alpha)}, beta = {model.beta * 1e9:.3g} ns/byte "
             f"({model.bandwidth / 1e9:.3g} GB/s)", "",
             "| operation | message | predicted | measured | measured / predicted |",
             "|---|---|---|---|---|"]
    for r in rows(res):
        lines.append(f"| {r['op']} | {r['bytes']} B | {fmt_time(r['predicted'])} | "
                     f"{fmt_time(r['measured'])} | {r['measured'] / r['predicted']:.2g} |")
    return "\n".join(lines)


#: mpi_ranks' ratio key -> label of the same-work comparison.
RATIO_LABELS = {
    "bluefog_neighbor_allreduce_loop / raw_exchange_exponential":
        "MpiComm.neighbor_allreduce in fori_loop / raw Sendrecv + NumPy float32 weighted sum",
    "bluefog_neighbor_allreduce / raw_exchange_exponential":
        "MpiComm.neighbor_allreduce, 1 call per op / raw Sendrecv + NumPy float32 weighted sum",
    "bluefog_allreduce_loop / raw_allreduce": "MpiComm.allreduce in fori_loop / raw Allreduce",
    "mpi4jax_sendrecv_loop / raw_sendrecv_ring":
        "mpi4jax.sendrecv ring in fori_loop / raw Sendrecv ring",
}


def ratio_table(res: dict) -> str:
    """Markdown table of the same-work ratios of an :mod:`mpi_ranks` run: min and median of
    the per-repetition ratio (interleaved repetitions), per message size; ``""`` if the run
    has none (an older JSON)."""
    ratios = res.get("ratios") or {}
    if not ratios:
        return ""
    sizes = sorted({int(s) for per in ratios.values() for s in per})
    lines = [f"Ours vs raw MPI doing the same work (float32), {res['size']} ranks, "
             f"{res.get('repeats', '?')} interleaved repetitions (warm-up excluded), load "
             f"{res.get('load_before', '?')} -> {res.get('load_after', '?')}: min, median of "
             "the per-repetition ratio (< 1: ours faster).", "",
             "| comparison | " + " | ".join(f"{4 * s} B" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for key, per in ratios.items():
        cells = [f"{per[str(s)]['min']:.2f}, {per[str(s)]['median']:.2f}" if str(s) in per
                 else "-" for s in sizes]
        lines.append(f"| {RATIO_LABELS.get(key, key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="src", metavar="JSON", help="mpi_ranks.py --json output")
    p.add_argument("-n", "--ranks", type=int, default=4)
    p.add_argument("--floats", type=int, nargs="+", default=[2, 256, 4096, 65536, 262144])
    args = p.parse_args(argv)
    if args.src:
        with open(args.src) as f:
            res = json.load(f)
    else:
        from ._mpi import run_ranks

        res = run_ranks(floats=args.floats, ranks=args.ranks)
        if isinstance(res, str):
            sys.exit(f"cost_report: {res}")
    print(f"# cost model vs measurement ({machine_load()})\n")
    print(table(res))
    ratios = ratio_table(res)
    if ratios:
        print("\n" + ratios)


if __name__ == "__main__":
    main()
