"""Small things users notice: the Apache-2.0 LICENSE, accuracy axes from zero, and the
documented recipe for Bluefog's ``neighbor_allgather`` order (in-neighbors sorted by rank)."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

import bluefog_sim
from bluefog.topology import Topology, exponential_graph
from mpi_support import ROOT

#: SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt (the canonical text).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_license_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
    assert b"END OF TERMS AND CONDITIONS" in text


def test_accuracy_axes_start_at_zero(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bluefog_train.plotting import plot_history

    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    per = [0.86, 0.9, 0.95, 0.97]
    results = {"history": {"step": [0, 10], "loss": [2.0, 0.5], "local_loss": [2.0, 0.4],
                           "test_accuracy": [0.1, 0.9], "consensus_distance": [0.0, 0.1]},
               "per_agent_test_accuracy": per, "algorithm": {"name": "dmsgd"},
               "topology": "ring", "bytes_sent_per_agent_per_step": 1e3,
               "config": {"model": "mlp", "data": "digits", "split": "iid", "agents": 4}}
    plot_history(results, str(tmp_path / "p.png"))
    axes = figs[0].axes
    titles = {a.get_title(): a for a in axes}
    for title in ("test accuracy (%)", "final test accuracy per agent (%)"):
        assert titles[title].get_ylim() == (0.0, 100.0), title


def test_bluefog_order_recipe_sorts_in_neighbors_by_rank():
    n = 6
    rng = np.random.default_rng(3)
    A = (rng.random((n, n)) < 0.4) | np.eye(n, dtype=bool)
    A[np.arange(n), (np.arange(n) + 1) % n] = True
    W = A / A.sum(1, keepdims=True)
    for topo in (exponential_graph(n), Topology(W, require="row")):
        X = jnp.arange(n, dtype=jnp.float32)[:, None] * jnp.ones((n, 2))

        def agent(comm, x):
            nv = comm.neighbor_allgather(x, topo)
            order = jnp.argsort(jnp.where(nv.weights > 0, nv.sources, comm.size))
            return nv.values[order], jnp.where(nv.weights > 0, nv.sources, -1)[order]

        vals, srcs = jax.tree_util.tree_map(np.asarray, bluefog_sim.spmd(agent, n)(X))
        for i in range(n):
            want = [j for j in range(n) if j != i and topo.weights[i, j] > 0]  # Bluefog order
            assert list(srcs[i][:len(want)]) == want
            np.testing.assert_array_equal(vals[i][:len(want), 0], np.asarray(want, np.float32))
