"""Run under ``mpiexec -n 4`` by tests/test_replay.py: record asynchronous MPI runs.

``python replay_program.py PREFIX``: rank 0 sleeps 50 ms before each step, the others 10 ms,
no barrier between steps (a genuinely asynchronous interleaving). Two recorded runs on the
exponential graph of 4, float64:

* ``PREFIX-ps``: ``algorithms.async_push_sum()`` on ``quadratic(B)``, ``x0 = B``, 24 steps;
* ``PREFIX-sgp``: ``algorithms.async_sgp(0.02)`` on the least-squares problem of the test
  (``A``, ``y`` from ``default_rng(1)``), 24 steps;
* ``PREFIX-adpsgd``: ``algorithms.ad_psgd(0.02)``, same problem, on ``ring_graph(4)`` (it
  needs symmetric edges), 24 steps;
* ``PREFIX-pd``: ``algorithms.async_push_diging(0.02)``, same problem, 24 steps;
* ``PREFIX-osgp``: ``algorithms.async_sgp(0.02, overlap=True)`` (non-blocking sends), same
  problem, 24 steps, with ``run_async(..., jit=True)`` (window ops as host callbacks);
* ``PREFIX-sgpjit``: ``algorithms.async_sgp(0.02)`` with ``jit=True``, same problem;
* ``PREFIX-adpsgdjit``: ``algorithms.ad_psgd(0.02)`` on the ring with ``jit=True`` (traced
  per-round weights, ``win_put``).

Each writes ``PREFIX-*.rank{r}.json`` (bluefog_dist.window_trace); the parent test replays
them in the simulator. Prints ``recorded ok`` on rank 0.
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import algorithms  # noqa: E402
from algorithms.problems import least_squares, quadratic  # noqa: E402
from bluefog.topology import exponential_graph, ring_graph  # noqa: E402
from bluefog_dist import failfast  # noqa: E402
from bluefog_dist.window_comm import MpiWindowComm, run_async  # noqa: E402
from bluefog_dist.windows import MpiWindows  # noqa: E402

failfast.install()

prefix = sys.argv[1]
comm = MPI.COMM_WORLD
rank, n = comm.Get_rank(), comm.Get_size()
topo = exponential_graph(n)
B = np.arange(n * 3, dtype=np.float64).reshape(n, 3) ** 1.5
rng = np.random.default_rng(1)
A, y = rng.normal(size=(n, 6, 3)), rng.normal(size=(n, 6))
delay = 5e-2 if rank == 0 else 1e-2
wins = MpiWindows()
for tag, alg, prob, x0 in [("ps", algorithms.async_push_sum(), quadratic(jnp.asarray(B)),
                            jnp.asarray(B)),
                           ("sgp", algorithms.async_sgp(0.02),
                            least_squares(jnp.asarray(A), jnp.asarray(y)), None),
                           ("adpsgd", algorithms.ad_psgd(0.02),
                            least_squares(jnp.asarray(A), jnp.asarray(y)), None),
                           ("pd", algorithms.async_push_diging(0.02),
                            least_squares(jnp.asarray(A), jnp.asarray(y)), None),
                           ("osgp", algorithms.async_sgp(0.02, overlap=True),
                            least_squares(jnp.asarray(A), jnp.asarray(y)), None),
                           ("sgpjit", algorithms.async_sgp(0.02),
                            least_squares(jnp.asarray(A), jnp.asarray(y)), None),
                           ("adpsgdjit", algorithms.ad_psgd(0.02),
                            least_squares(jnp.asarray(A), jnp.asarray(y)), None)]:
    state, wcomm = run_async(alg, prob, ring_graph(n) if "adpsgd" in tag else topo, 24,
                             x0=x0, compute_delay=delay, comm=MpiWindowComm(wins),
                             trace=f"{prefix}-{tag}", jit=tag in ("osgp", "sgpjit", "adpsgdjit"))
    wcomm.win_free(state.windows)
wins.close()
if rank == 0:
    print("recorded ok", flush=True)
