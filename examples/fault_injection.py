"""Fault injection: consensus error vs step under message loss, plain vs robust push-sum.

    source .venv/bin/activate
    python examples/fault_injection.py [--agents 64] [--steps 300] [--out docs/figures/fault_injection.png]
    python examples/fault_injection.py --agents 8 --steps 10 --out ""     # a quick check, no plot

For each loss rate p in {0, 1%, 10%, 30%} (i.i.d. per message, ``bluefog.faults.MessageLoss``)
it runs, on ``exponential_graph(n)`` in float64, plain push-sum (receivers renormalise over
what arrived) and robust push-sum (running sums, Hadjicostis et al. 2016), and records the
error to the exact average, :math:`\\sqrt{\\frac1n\\sum_i \\|z_i - \\bar x(0)\\|^2}` (the
``distance_to_optimum`` metric of ``algorithms.problems.quadratic(b)`` with ``x0 = b``). It
prints the final errors and the machine load, and writes the plot.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import algorithms as A  # noqa: E402
import bluefog_sim  # noqa: E402
from algorithms import problems as P  # noqa: E402
from bluefog.faults import Faults, MessageLoss  # noqa: E402
from bluefog.topology import exponential_graph  # noqa: E402

RATES = (0.0, 0.01, 0.1, 0.3)
METHODS = {"push_sum (renormalise)": A.push_sum, "robust_push_sum": A.robust_push_sum}


def sweep(n: int, steps: int, record_every: int, seed: int = 0) -> tuple[dict, dict]:
    """``({(method, p): (steps, error)}, {method: compile seconds of its runs})``.

    One algorithm object per method serves every loss rate: the rate and the seed are inputs
    of the compiled program (:mod:`bluefog.faults.tables`), so each method compiles once."""
    b = np.random.default_rng(seed).normal(size=(n, 4))
    prob, topo = P.quadratic(b), exponential_graph(n)
    out, compile_s = {}, {}
    for name, factory in METHODS.items():
        alg = factory()
        for p in RATES:
            r = bluefog_sim.run(alg, prob, topo, steps, x0=b, record_every=record_every,
                                faults=Faults(MessageLoss(p, seed=seed)), progress=False)
            out[name, p] = (r.history["step"], r.history["distance_to_optimum"])
            compile_s[name] = compile_s.get(name, 0.0) + r.compile_seconds
    return out, compile_s


def plot(curves: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = dict(zip(RATES, ("black", "tab:blue", "tab:orange", "tab:red")))
    for (name, p), (steps, err) in curves.items():
        style = "--" if name.startswith("push_sum") else "-"
        ax.semilogy(steps, np.maximum(err, 1e-17), style, color=colors[p],
                    label=f"{name}, loss {p:.0%}")
    ax.set_xlabel("step")
    ax.set_ylabel("error to the exact average (RMS over agents)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--record-every", type=int, default=5)
    ap.add_argument("--out", default="docs/figures/fault_injection.png",
                    help='where to write the plot ("": no plot)')
    args = ap.parse_args(argv)
    if args.agents < 2 or args.steps < 1 or not 1 <= args.record_every <= args.steps:
        ap.error(f"need --agents >= 2, --steps >= 1 and 1 <= --record-every <= --steps; got "
                 f"{args.agents}, {args.steps}, {args.record_every}")
    t0 = time.perf_counter()
    curves, compile_s = sweep(args.agents, args.steps, args.record_every)
    seconds = time.perf_counter() - t0
    load = os.getloadavg()
    print(f"final error to the exact average after {args.steps} steps, exponential_graph("
          f"{args.agents}), float64:")
    for (name, p), (_, err) in curves.items():
        print(f"  {name:24s} loss {p:4.0%}: {err[-1]:.2e}")
    for name, c in compile_s.items():
        print(f"  {name}: {c:.1f} s of compile for its {len(RATES)} loss rates (one program)")
    print(f"{seconds:.0f} s, load average {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on "
          f"{os.cpu_count()} cores")
    if args.out:
        plot(curves, args.out, f"exponential_graph({args.agents}), i.i.d. message loss "
             f"(load {load[0]:.1f} on {os.cpu_count()} cores)")
        print(f"wrote {args.out}")
    return curves


if __name__ == "__main__":
    main()
