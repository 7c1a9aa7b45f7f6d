"""Under ``mpiexec -n 2`` every rank holds only its own agents' rows (``Problem.shard``), trains
like the simulator, and a shard that misses a rank's agents raises on every rank (no hang).

The program is ``tests/mpi/shard_program.py`` (one launch, cases in sequence). Oracles,
computed here in the test process: the full split of the IDX files this test writes
(``load_agent_shards`` without ``agents``), the simulator's ``bluefog-train`` run on the same
files (one process, every agent's data), the simulator's DGD run on the full quadratic
problem, and the closed-form least-squares gradient at the mean of the old parameters.
"""

import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.mpi

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    from mpi_support import run_mpi
    from test_datasets import write_mnist

    data, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("out")
    write_mnist(data)
    proc = run_mpi(2, [str(ROOT / "tests" / "mpi" / "shard_program.py"), str(data), str(out)],
                   timeout=600)
    cases = {(m[0], int(m[1])): m[2] for m in
             re.findall(r"CASE (\w+) rank (\d) (ok|\w+Error: .*?)(?=CASE |\n|$)", proc.stdout)}
    assert proc.returncode == 0 and len(cases) == 12, proc.stdout[-4000:]
    return data, out, cases


def test_each_rank_holds_exactly_its_rows_of_the_split(launched):
    from bluefog_train.datasets import load_agent_shards

    data, out, cases = launched
    assert cases[("train", 0)] == cases[("train", 1)] == "ok"
    X, y = load_agent_shards("mnist", data, 2, method="dirichlet", alpha=0.5, seed=3,
                             verify="off")
    for r in range(2):
        held = np.load(out / f"rows{r}.npz")
        assert tuple(held["shard"]) == (r, 2)
        np.testing.assert_array_equal(held["x"], X[r:r + 1])
        np.testing.assert_array_equal(held["y"], y[r:r + 1])


def test_mpi_training_on_own_rows_equals_the_simulator_on_all_rows(launched):
    import jax

    from bluefog_train.cli import build_parser
    from bluefog_train.training import train

    data, out, _ = launched
    argv = ["--backend", "sim", "--dataset", "mnist", "--data-dir", str(data), "--data-verify",
            "off", "--agents", "2", "--hidden", "8", "--steps", "20", "--record-every", "10",
            "--no-progress", "--split", "dirichlet", "--alpha", "0.5", "--seed", "3"]
    sim = train(vars(build_parser().parse_args(argv)), progress=False)
    mpi = np.load(out / "final.npz")
    leaves = jax.tree_util.tree_leaves(sim["_final_params"])
    assert len(leaves) == len([k for k in mpi.files if k.startswith("p")])
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(mpi[f"p{i}"], np.asarray(leaf), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mpi["loss"], sim["history"]["loss"], rtol=1e-5)
    assert mpi["loss"][-1] < mpi["loss"][0]


def test_block_backend_on_own_rows_equals_the_simulator(launched):
    import bluefog_sim
    from algorithms import dgd, problems
    from bluefog.topology import ring_graph

    _, out, cases = launched
    assert cases[("block", 0)] == cases[("block", 1)] == "ok"
    b = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)  # as the program's
    ref = bluefog_sim.run(dgd(0.1), problems.quadratic(b), ring_graph(4), 10, record_every=10,
                          progress=False)
    got = np.concatenate([np.load(out / f"block{r}.npy") for r in range(2)])
    np.testing.assert_allclose(got, np.asarray(ref.params), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, needs", [
    ("wrong", ["agent 0's", "agent 1's"]),
    ("block_wrong", ["agents 0..1'", "agents 2..3'"]),
    ("async_wrong", ["agent 0's", "agent 1's"]),
])
def test_a_shard_without_the_rank_agents_raises_on_every_rank(launched, name, needs):
    _, _, cases = launched
    what = "run_async" if name == "async_wrong" else "bluefog_dist.run"
    for r in range(2):
        msg = cases[(name, r)]
        assert msg.startswith(f"AgreementError: {what}: start-up check failed on rank(s) 0, 1: "
                              "rank 0: ValueError: Problem: "), msg
        for rank, want in enumerate(needs):
            held = f"agents {2 * (1 - rank)}..{2 * (1 - rank) + 1} of 4" if "block" in name \
                else f"agents {1 - rank}..{1 - rank} of 2"
            assert f"rank {rank}: ValueError: Problem: {want} data is not held here; this " \
                   f"Problem holds {held}" in msg, msg


def test_elastic_reshard_initialises_each_rank_agent_on_its_own_rows(launched):
    _, out, cases = launched
    assert cases[("elastic", 0)] == cases[("elastic", 1)] == "ok"
    for r in range(2):
        z = np.load(out / f"elastic{r}.npz")
        xbar = z["x_old"].astype(np.float64).mean(0).astype(np.float32)
        A, b = z["A"][r].astype(np.float64), z["b"][r].astype(np.float64)
        g = A.T @ (A @ xbar - b) / A.shape[0]  # grad of 1/(2m) ||A x - b||^2 at the mean
        np.testing.assert_array_equal(z["new_x"], xbar)
        np.testing.assert_allclose(z["new_y"], g, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(z["new_grad"], g, rtol=2e-5, atol=2e-6)
        assert int(z["new_count"]) == 9
