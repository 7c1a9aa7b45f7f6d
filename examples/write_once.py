"""One algorithm file, two backends.

A user-defined decentralized gradient descent (DGD), written once from one agent's point of
view, run either for all agents in one process (the vmap simulator) or one agent per MPI rank:

    source .venv/bin/activate            # once per shell (or prefix each command with .venv/bin/)
    python examples/write_once.py --backend sim --agents 4
    bfrun -np 4 python examples/write_once.py --backend mpi

Both print the same numbers, to float tolerance: the simulator's row ``i`` *is* rank
``i``'s trajectory.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bluefog import Algorithm, Problem
from bluefog.topology import exponential_graph


class DGDState(NamedTuple):
    x: jax.Array      # (d,) this agent's iterate
    count: jax.Array  # () int32 step counter (selects the pattern of dynamic topologies)


def my_dgd(lr: float) -> Algorithm:
    r"""Decentralized gradient descent: :math:`x_i^{+} = \sum_j W_{ij} x_j - \alpha \nabla f_i(x_i)`
    (Nedic & Ozdaglar, IEEE TAC 54(1), 2009)."""

    def init(x, ctx):
        return DGDState(x, jnp.zeros((), jnp.int32))

    def step(s, ctx):
        mixed = ctx.comm.neighbor_allreduce(s.x, ctx.topology, t=s.count)
        return DGDState(mixed - lr * ctx.grad(s.x), s.count + 1)

    return Algorithm(init, step, params=lambda s: s.x, name="my_dgd", config={"lr": lr})


def quadratic_problem(n: int, d: int, seed: int = 0) -> Problem:
    """f_i(x) = 1/2 ||x - b_i||^2; the optimum of the average is mean_i b_i."""
    b = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return Problem(loss=lambda x, bi: 0.5 * jnp.sum((x - bi) ** 2), data=jnp.asarray(b),
                   init_params=jnp.zeros(d, jnp.float32), optimum=jnp.asarray(b.mean(0)),
                   name="quadratic", config={"n": n, "d": d, "seed": seed})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", choices=["sim", "mpi"], default="sim",
                   help="sim: all agents in this process; mpi: one agent per rank (bfrun -np N)")
    p.add_argument("--agents", type=int, default=8, help="simulator only; MPI uses the world size")
    p.add_argument("--steps", type=int, default=500, help="iterations")
    p.add_argument("--lr", type=float, default=0.05, help="step size")
    args = p.parse_args(argv)

    if args.backend == "sim":
        import bluefog_sim as backend

        n = args.agents
    else:
        import bluefog_dist as backend

        n = backend.default_comm().size
    problem = quadratic_problem(n, d=10)
    result = backend.run(my_dgd(args.lr), problem, exponential_graph(n), args.steps,
                         record_every=args.steps // 5)
    h = result.history
    if args.backend == "sim" or backend.default_comm().rank() == 0:
        for step, err, cons in zip(h["step"], h["relative_error"], h["consensus_distance"]):
            print(f"step {int(step):5d}  relative error {err:.6e}  consensus distance {cons:.3e}")


if __name__ == "__main__":
    main()
