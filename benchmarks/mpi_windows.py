"""Rank program: latency and bandwidth of ``MpiWindows`` ops vs raw ``MPI.Win`` Put / Get.

Run as ``mpiexec -n 2 python -m benchmarks.mpi_windows --json out.json``. Rank 0 is the
origin, rank 1 the target (it waits in a barrier, inside MPI, for both methods). For each
message size the methods are interleaved repetition by repetition (one warm-up repetition
excluded); a repetition times ``--ops`` operations of one method:

* ``raw_put``: ``Lock(SHARED) / Put / Unlock`` of the payload on a window over a NumPy buffer;
* ``bluefog_put``: ``MpiWindows.put`` (payload ``REPLACE`` + version counter ``SUM`` in one
  epoch, then this rank's own value under an exclusive self-lock);
* ``bluefog_accumulate``: ``MpiWindows.accumulate`` (``SUM`` instead of ``REPLACE``);
* ``raw_get`` / ``bluefog_get``: ``Lock / Get / Unlock`` vs ``MpiWindows.get``.

Output: seconds per op (median over repetitions) and the per-repetition ratios bluefog/raw
(min and median), with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from mpi4py import MPI

from bluefog.topology import Topology
from bluefog_dist.windows import MpiWindows


def _pair_topology() -> Topology:
    return Topology(np.array([[0.5, 0.5], [0.5, 0.5]]), name="pair")


def _raw(comm, floats):
    buf = np.zeros(floats)
    win = MPI.Win.Create(buf, disp_unit=buf.itemsize, comm=comm)
    payload = np.ones(floats)

    def put():
        win.Lock(1, MPI.LOCK_SHARED)
        win.Put(payload, 1)
        win.Unlock(1)

    def get():
        win.Lock(1, MPI.LOCK_SHARED)
        win.Get(payload, 1)
        win.Unlock(1)

    return win, put, get


def measure(floats: int, ops: int, repeats: int) -> dict:
    comm = MPI.COMM_WORLD
    wins = MpiWindows()
    x = np.ones(floats)
    wins.create(x, "w", _pair_topology())
    raw_win, raw_put, raw_get = _raw(comm, floats)
    methods = {"raw_put": raw_put, "bluefog_put": lambda: wins.put(x, "w"),
               "bluefog_accumulate": lambda: wins.accumulate(x, "w"), "raw_get": raw_get,
               "bluefog_get": lambda: wins.get("w")}
    times = {k: [] for k in methods}
    for rep in range(repeats + 1):
        for name, fn in methods.items():
            comm.Barrier()
            if comm.Get_rank() == 0:
                t0 = time.perf_counter()
                for _ in range(ops):
                    fn()
                if rep:  # repetition 0 is warm-up
                    times[name].append((time.perf_counter() - t0) / ops)
            comm.Barrier()
    raw_win.Free()
    wins.close()
    if comm.Get_rank():
        return {}
    t = {k: np.asarray(v) for k, v in times.items()}
    out = {"floats": floats, "seconds": {k: float(np.median(v)) for k, v in t.items()}}
    for b, r in (("bluefog_put", "raw_put"), ("bluefog_accumulate", "raw_put"),
                 ("bluefog_get", "raw_get")):
        ratio = t[b] / t[r]
        out[f"{b}/{r}"] = {"min": float(ratio.min()), "median": float(np.median(ratio))}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--floats", default="1,131072", help="payload sizes in float64s")
    p.add_argument("--ops", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if MPI.COMM_WORLD.Get_size() != 2:
        raise SystemExit("benchmarks.mpi_windows needs exactly 2 ranks (mpiexec -n 2)")
    load0 = os.getloadavg()
    results = [measure(int(f), args.ops, args.repeats) for f in args.floats.split(",")]
    if MPI.COMM_WORLD.Get_rank() == 0:
        data = {"results": results, "load_before": load0, "load_after": os.getloadavg()}
        print(json.dumps(data, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f)


if __name__ == "__main__":
    main()
