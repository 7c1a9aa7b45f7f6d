"""Print the README's table of topology families (markdown), computed, not typed.

For each family at ``n`` agents (default 64): the per-step consensus contraction
``rho = ||W - 11^T/n||_2``, the number of schedule rounds per step (each round is one
full-permutation exchange: every agent sends one message), the bytes each agent sends per
``neighbor_allreduce`` of a ``--message-bytes`` message (default 1 MB = 10^6 bytes), and the
number of steps the bound ``rho^k <= 1e-3`` asks for (for exact averaging: the steps
until the product of the mixing matrices is ``11^T/n``). For time-varying topologies ``rho`` is
the per-step rate over one period, ``||W(P-1)...W(0) - J||_2^(1/P)`` (the pool of
``random_matching`` has no period: the rate over 64 steps is reported).

Usage::

    .venv/bin/python -m benchmarks.topology_table            # n = 64, 1 MB
    .venv/bin/python -m benchmarks.topology_table --n 128
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import bluefog.topology as T


def families(n: int):
    side = math.isqrt(n)
    while n % side:
        side -= 1
    dim = int(math.log2(n)) if n & (n - 1) == 0 else None
    p = min(1.0, round(2.5 * math.log(max(n, 2)) / n, 2))  # 2.5x the connectivity threshold
    rows = [
        ("ring_graph(n)", lambda: T.ring_graph(n)),
        ("ring_graph(n, directed=True)", lambda: T.ring_graph(n, directed=True)),
        ("star_graph(n)", lambda: T.star_graph(n)),
        (f"grid_2d_graph({side}, {n // side})", lambda: T.grid_2d_graph(side, n // side)),
        (f"torus_2d_graph({side}, {n // side})", lambda: T.torus_2d_graph(side, n // side)),
        ("random_regular_graph(n, 4, seed=0)", lambda: T.random_regular_graph(n, 4, seed=0)),
        (f"erdos_renyi_graph(n, {p:g}, seed=0)", lambda: T.erdos_renyi_graph(n, p, seed=0)),
        ("symmetric_exponential_graph(n, base=4)", lambda: T.symmetric_exponential_graph(n, 4)),
        ("exponential_graph(n, base=2)", lambda: T.exponential_graph(n)),
        ("exponential_graph(n, base=3)", lambda: T.exponential_graph(n, base=3)),
    ]
    if dim is not None:
        rows.append((f"hypercube_graph({dim})", lambda: T.hypercube_graph(dim)))
    rows += [
        ("fully_connected_graph(n)", lambda: T.fully_connected_graph(n)),
        ("one_peer_exponential_graph(n)", lambda: T.one_peer_exponential_graph(n)),
        ("random_matching(n, seed=0)", lambda: T.random_matching(n, seed=0)),
    ]
    return rows


def row_values(topo, n: int):
    """(rho per step, mean rounds per step, max degree or peers per step)."""
    if isinstance(topo, T.DynamicTopology):
        steps = topo.period if topo.period is not None else 64
        P = topo.mean_weights(steps)
        contraction = float(np.linalg.norm(P - np.full((n, n), 1.0 / n), ord=2))
        rho = contraction ** (1.0 / steps)
        rounds = float(np.mean([topo.at(t).schedule.num_rounds for t in range(steps)]))
        return rho, rounds
    return topo.rho, float(topo.schedule.num_rounds)


def table(n: int = 64, message_bytes: int = 10 ** 6) -> str:
    lines = [
        f"| family (n = {n}) | rho per step | rounds per step | MB sent per agent per step "
        f"({message_bytes / 1e6:g} MB message) | steps to rho^k <= 1e-3 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, make in families(n):
        topo = make()
        rho, rounds = row_values(topo, n)
        sent = rounds * message_bytes / 1e6
        if rho < 1e-12:  # exact averaging: after one step, or after one period
            k = str(getattr(topo, "period", 1) or 1)
        else:
            k = str(math.ceil(math.log(1e-3) / math.log(rho)))
        rho_s = "0 (exact)" if rho < 1e-12 else f"{rho:.4f}"
        rounds_s = f"{rounds:g}"
        lines.append(f"| `{label}` | {rho_s} | {rounds_s} | {sent:g} | {k} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="number of agents (default 64)")
    parser.add_argument("--message-bytes", type=int, default=10 ** 6,
                        help="message size in bytes (default 10**6)")
    args = parser.parse_args(argv)
    print(table(args.n, args.message_bytes))


if __name__ == "__main__":
    main()
