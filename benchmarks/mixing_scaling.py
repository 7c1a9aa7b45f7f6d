"""How the cost of one ``neighbor_allreduce`` scales with agents n and message size d.

Times, side by side in one process, one mixing step ``X <- W X`` (n agents x d float32
values, exponential graph) done by

* ``sim``        : the simulator, ``jit(spmd(comm.neighbor_allreduce))``, one call per mix;
* ``sim x K``    : the same inside one jitted ``fori_loop`` of K mixes (per-mix time);
* ``dense jnp``  : ``jit(W @ X)`` (dense matmul, O(n^2 d));
* ``dense numpy``: ``W @ X`` in NumPy;
* ``gather jnp`` : sparse gather, ``sum_k w[:, k] * X[idx[:, k]]`` jitted (O(n deg d));
* ``scipy.sparse``: CSR ``W @ X``;
* ``jax sparse`` : ``jax.experimental.sparse.BCOO`` ``W @ X`` jitted.

Every method's result is checked against NumPy's ``W @ X`` before it is timed (float32
inputs for every method). The methods of one (n, d) point are timed in interleaved
repetitions (warm-up excluded, order rotated, ``block_until_ready``); times are medians,
and each method's ratio to ``sim`` is the min and median of the per-repetition ratio
(same repetitions). The load average is printed before and after. Usage::

    python -m benchmarks.mixing_scaling            # full sweep (a few minutes)
    python -m benchmarks.mixing_scaling --quick    # small sizes, seconds
    python -m benchmarks.mixing_scaling --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bluefog_sim import SimComm, spmd

from ._timing import block, call_time, fmt_time, interleaved, machine_load, ratio_stats
from ._topologies import make_topology

#: (n, d) points of the full sweep: d in {1e3, 1e5, 1e6} at n = 64, n in {8, 64, 256} at 1e5.
FULL_GRID = [(64, 1000), (64, 100_000), (64, 1_000_000), (8, 100_000), (256, 100_000)]
#: Mixes per jitted fori_loop in the ``sim x K`` column.
LOOP = 20
METHODS = ("sim", "sim x K", "dense jnp", "dense numpy", "gather jnp", "scipy.sparse",
           "jax sparse")


def _gather_table(W: np.ndarray):
    """Neighbor index/weight table ``idx[i, k], w[i, k]`` of the nonzeros of row i."""
    n = W.shape[0]
    deg = int((W != 0).sum(axis=1).max())
    idx = np.zeros((n, deg), dtype=np.int32)
    w = np.zeros((n, deg), dtype=np.float32)
    for i in range(n):
        nz = np.flatnonzero(W[i])
        idx[i, : nz.size] = nz
        w[i, : nz.size] = W[i, nz]
    return idx, w


def build_methods(topology, X: np.ndarray, *, loop: int = 20):
    """``{name: zero-argument callable that mixes once and blocks}`` for one (n, d) point,
    plus the per-call divisor of each (``loop`` for the fori_loop variant)."""
    import scipy.sparse as sp
    from jax.experimental import sparse as jsparse

    W = topology.weights
    Wf = W.astype(np.float32)
    Xj = jnp.asarray(X)
    mix = spmd(lambda comm, x: comm.neighbor_allreduce(x, topology), topology.size)
    # ``loop`` mixes in one jitted program: the runners' form (docs/architecture.md, "Jit the whole loop").
    comm = SimComm(topology.size)
    mix_all = jax.vmap(lambda x: comm.neighbor_allreduce(x, topology), axis_name=comm.axis_name)
    mix_loop = jax.jit(lambda x: lax.fori_loop(0, loop, lambda _, v: mix_all(v), x))
    Wj = jnp.asarray(Wf)
    dense = jax.jit(lambda x: Wj @ x)
    idx, w = _gather_table(W)
    idx_j, w_j = jnp.asarray(idx), jnp.asarray(w)

    @jax.jit
    def gather(x):
        out = w_j[:, 0, None] * x[idx_j[:, 0]]
        for k in range(1, idx.shape[1]):
            out = out + w_j[:, k, None] * x[idx_j[:, k]]
        return out

    csr = sp.csr_matrix(Wf)
    bcoo = jsparse.BCOO.fromdense(jnp.asarray(Wf))
    jsp = jax.jit(lambda x: bcoo @ x)

    ref = W @ X.astype(np.float64)
    fns = {
        "sim": (lambda: block(mix(Xj)), 1),
        "sim x K": (lambda: block(mix_loop(Xj)), loop),
        "dense jnp": (lambda: block(dense(Xj)), 1),
        "dense numpy": (lambda: Wf @ X, 1),
        "gather jnp": (lambda: block(gather(Xj)), 1),
        "scipy.sparse": (lambda: csr @ X, 1),
        "jax sparse": (lambda: block(jsp(Xj)), 1),
    }
    # Correctness first: every method computes W @ X (K mixes: W^K @ X).
    scale = np.abs(ref).max() + 1e-30
    for name, (fn, _) in fns.items():
        got = np.asarray(fn())
        want = ref if name != "sim x K" else np.linalg.matrix_power(W, loop) @ X
        err = np.abs(got - want).max() / scale
        if not err < 1e-4:
            raise RuntimeError(f"{name} disagrees with numpy W @ X: relative error {err:.2e}")
    return fns


def measure(n: int, d: int, *, family: str = "exponential", repeats: int = 5, loop: int = LOOP,
            seed: int = 0) -> dict:
    """Per-mix times (seconds) of every method in :data:`METHODS` at one (n, d).

    The methods are timed in ``repeats`` interleaved repetitions (``_timing.interleaved``:
    one warm-up call each, excluded; order rotated; a sample loops a method for >= 20 ms).
    ``row[m]`` is the median per-mix time, ``row["min"][m]`` the fastest sample and
    ``row["vs_sim"][m]`` the (min, median) of the per-repetition ratio ``m / sim``,
    ``row["samples"][m]`` the per-repetition per-mix times.
    """
    topology = make_topology(family, n)
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    fns = build_methods(topology, X, loop=loop)
    out = {"n": n, "d": d, "family": family, "repeats": repeats,
           "rounds": int(topology.schedule.num_rounds), "min": {}, "vs_sim": {}}
    raw = interleaved({name: fns[name][0] for name in METHODS}, repeats,
                      sample=functools.partial(call_time, min_time=0.02))
    per_mix = {name: [t / fns[name][1] for t in raw[name]] for name in METHODS}
    out["samples"] = per_mix
    for name in METHODS:
        out[name] = statistics.median(per_mix[name])
        out["min"][name] = min(per_mix[name])
        out["vs_sim"][name] = ratio_stats(per_mix[name], per_mix["sim"])
    return out


def table(rows: list[dict]) -> str:
    """A markdown table: median time per mix of each method and, in brackets, the min and
    median of its per-repetition ratio to ``sim`` (interleaved repetitions)."""
    head = "| n | d | rounds | " + " | ".join(METHODS) + " |"
    sep = "|" + "---|" * (3 + len(METHODS))
    lines = [head, sep]
    for r in rows:
        cells = [fmt_time(r["sim"])] + [
            f"{fmt_time(r[m])} ({r['vs_sim'][m][0]:.2g}, {r['vs_sim'][m][1]:.2g}x)"
            for m in METHODS[1:]]
        lines.append(f"| {r['n']} | {r['d']:,} | {r['rounds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_summary(rows: list[dict]) -> str:
    """Empirical exponents of the simulator's per-mix time in d (at n = 64) and n."""
    lines = []
    for key, other, fixed in (("d", "n", 64), ("n", "d", None)):
        sel = [r for r in rows if (r[other] == fixed if fixed is not None else True)]
        if key == "n":
            ds = sorted({r["d"] for r in rows if sum(1 for s in rows if s["d"] == r["d"]) >= 2})
            if not ds:
                continue
            sel = [r for r in rows if r["d"] == ds[-1]]
        sel = sorted({r[key]: r for r in sel}.values(), key=lambda r: r[key])
        if len(sel) < 2:
            continue
        for m in ("sim x K", "dense jnp", "gather jnp"):
            xs = np.log([r[key] for r in sel])
            ys = np.log([r[m] for r in sel])
            slope = np.polyfit(xs, ys, 1)[0]
            lines.append(f"- `{m}`: time ~ {key}^{slope:.2f} (over {key} = "
                         f"{', '.join(str(int(r[key])) for r in sel)})")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.quick:
        grid = [(64, 1000), (64, 10000), (8, 10000), (256, 10000)]
    else:
        grid = FULL_GRID
    load_before = machine_load()
    print(f"# mixing scaling ({load_before}, jax {jax.__version__}, "
          f"{jax.devices()[0].platform})", flush=True)
    rows = []
    for n, d in grid:
        rows.append(measure(n, d, repeats=args.repeats))
        print(f"  n={n} d={d}: sim {fmt_time(rows[-1]['sim'])}", file=sys.stderr, flush=True)
    print(table(rows))
    print()
    print(scaling_summary(rows))
    load_after = machine_load()
    print(f"\n(after the run: {load_after})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_before": load_before, "load_after": load_after, "rows": rows}, f,
                      indent=1)
    return rows


if __name__ == "__main__":
    main()
