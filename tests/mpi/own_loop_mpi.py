"""Under ``mpiexec -n N``: ``optax_decentralized`` with ``MpiComm`` in a jitted step against
the NumPy oracle of ``tests/test_optax_transform.py`` (each rank checks its own row), then
``examples/own_loop.py --backend mpi`` for a few steps (rank 0 prints its history as JSON).
Launched by ``tests/test_own_loop.py``, all checks in one launch."""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import bluefog_dist
import test_optax_transform as oracle
from algorithms import optax_decentralized
from bluefog.topology import exponential_graph, one_peer_exponential_graph

ROOT = Path(__file__).resolve().parents[2]


def check_transform(comm):
    n, r = comm.size, comm.rank()
    oracle.N = n  # the oracle's agents are this job's ranks
    b_all = oracle._targets()
    b = {k: jnp.asarray(v[r], jnp.float32) for k, v in b_all.items()}
    for style, topo in (("atc", exponential_graph(n)), ("awc", one_peer_exponential_graph(n))):
        tx = optax_decentralized(comm, topo, style=style,
                                 inner=optax.adamw(oracle.SCHED, weight_decay=oracle.WD))

        @jax.jit
        def steps(x):
            state = tx.init(x)

            def body(carry, _):
                x, state = carry
                u, state = tx.update(oracle._grad(x, b), state, x)
                return (optax.apply_updates(x, u), state), None

            return jax.lax.scan(body, (x, state), None, length=oracle.STEPS)[0][0]

        x = steps({k: jnp.zeros_like(v) for k, v in b.items()})
        want = oracle._numpy_run("adamw", style, lambda k, t=topo: t.at(k).weights
                                 if hasattr(t, "at") else t.weights)
        err = max(float(np.max(np.abs(np.asarray(x[k]) - want[k][r]))) for k in want)
        if not err <= 1e-5:
            raise AssertionError(f"rank {r}: {style} differs from W @ X oracle by {err}")
        print(f"OWN-LOOP ORACLE OK {style} rank {r} {err:.2e}", flush=True)


def main():
    comm = bluefog_dist.MpiComm()
    check_transform(comm)
    spec = importlib.util.spec_from_file_location("own_loop", ROOT / "examples" / "own_loop.py")
    own_loop = importlib.util.module_from_spec(spec)
    sys.modules['own_loop'] = own_loop  # flax's dataclasses look their module up
    spec.loader.exec_module(own_loop)
    result = own_loop.main(["--backend", "mpi", "--steps", "20",
                            "--record-every", "10", "--warmup", "5",
                            "--quiet"] + sys.argv[1:])
    if comm.rank() == 0:
        print("OWN-LOOP HISTORY " + json.dumps(result["history"]), flush=True)


if __name__ == "__main__":
    main()
