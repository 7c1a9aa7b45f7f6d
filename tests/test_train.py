"""Models, data splits, metrics and the bluefog-train CLI, against independent NumPy oracles."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bluefog_sim
from bluefog_train.data import (label_histogram, load_digits, partition, synthetic_classification)
from bluefog_train.models import classification_problem, cnn, cross_entropy, mlp
from bluefog_train.cli import main
from bluefog_train.evaluation import classification_metrics, split_test_set, with_test_data


# ---------------------------------------------------------------------------- models
def np_relu(a):
    return np.maximum(a, 0)


def test_mlp_matches_numpy_forward():
    model = mlp(hidden=(7, 5), num_classes=3, input_dim=4)
    p = model.init(jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    P = jax.tree_util.tree_map(np.asarray, p)
    h = np_relu(x @ P["dense0"]["w"] + P["dense0"]["b"])
    h = np_relu(h @ P["dense1"]["w"] + P["dense1"]["b"])
    want = h @ P["dense2"]["w"] + P["dense2"]["b"]
    np.testing.assert_allclose(np.asarray(model.apply(p, x)), want, rtol=1e-5, atol=1e-5)


def np_conv_same(x, w, b):
    """x (B,H,W,C), w (3,3,C,K): cross-correlation with zero padding 1, loops."""
    B, H, W, C = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((B, H, W, w.shape[-1]))
    for i in range(H):
        for j in range(W):
            out[:, i, j, :] = np.einsum("bhwc,hwck->bk", xp[:, i:i + 3, j:j + 3, :], w)
    return out + b


def test_cnn_matches_numpy_convolution():
    model = cnn(channels=(3, 4), num_classes=5, image_shape=(8, 8))
    p = jax.tree_util.tree_map(np.asarray, model.init(jax.random.PRNGKey(1)))
    x = np.random.default_rng(1).normal(size=(2, 64)).astype(np.float32)
    h = x.reshape(2, 8, 8, 1).astype(np.float64)
    for k in range(2):
        h = np_relu(np_conv_same(h, p[f"conv{k}"]["w"], p[f"conv{k}"]["b"]))
        B, H, W, C = h.shape
        pooled = np.zeros((B, H // 2, W // 2, C))
        for i in range(H // 2):
            for j in range(W // 2):
                pooled[:, i, j, :] = h[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2, :].mean(axis=(1, 2))
        h = pooled
    want = h.reshape(2, -1) @ p["dense"]["w"] + p["dense"]["b"]
    np.testing.assert_allclose(np.asarray(model.apply(p, x)), want, rtol=1e-4, atol=1e-4)


def test_cross_entropy_and_unbiased_minibatch(x64):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 3))
    y = np.array([0, 2, 1, 1, 0])
    lse = np.log(np.exp(z).sum(1))
    assert float(cross_entropy(jnp.asarray(z), jnp.asarray(y))) == pytest.approx(
        np.mean(lse - z[np.arange(5), y]), rel=1e-12)
    model = mlp(hidden=(3,), num_classes=3, input_dim=2)
    X = rng.normal(size=(1, 12, 2))
    Y = rng.integers(0, 3, size=(1, 12))
    prob = classification_problem(model, X, Y, batch_size=1, l2=0.1)
    d = prob.agent_data(0)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), prob.init_params)
    per_sample = np.asarray(jax.vmap(lambda xk, yk: prob.loss(params, {"x": xk[None], "y": yk[None]}))(
        d["x"], d["y"]))
    assert float(prob.loss(params, d)) == pytest.approx(per_sample.mean(), rel=1e-12)
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    draws = np.asarray(jax.vmap(lambda k: prob.stochastic_loss(params, d, k))(keys))
    se = per_sample.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - per_sample.mean()) < 4 * se


# ---------------------------------------------------------------------------- data
def labelled(N=200, C=10):
    return np.arange(N, dtype=np.float32)[:, None], (np.arange(N) % C).astype(np.int32)


def test_partition_iid_is_a_disjoint_equal_split():
    X, y = labelled(203)
    Xs, ys = partition(X, y, 10, "iid", seed=3)
    assert Xs.shape == (10, 20, 1) and ys.shape == (10, 20)
    ids = Xs.reshape(-1).astype(int)
    assert len(set(ids)) == 200  # disjoint
    np.testing.assert_array_equal(ys.reshape(-1), y[ids])  # labels travel with samples
    Xs2, _ = partition(X, y, 10, "iid", seed=3)
    np.testing.assert_array_equal(Xs, Xs2)  # deterministic by seed
    assert not np.array_equal(Xs, partition(X, y, 10, "iid", seed=4)[0])


def test_partition_label_sorted_gives_one_class_per_agent():
    X, y = labelled(200)
    _, ys = partition(X, y, 10, "label_sorted", seed=0)
    H = label_histogram(ys, 10)
    assert (np.count_nonzero(H, axis=1) == 1).all() and (H.sum(1) == 20).all()


def test_partition_dirichlet_heterogeneity_follows_alpha():
    X, y = labelled(2000)
    glob = np.full(10, 0.1)

    def tv(alpha):
        _, ys = partition(X, y, 20, "dirichlet", alpha=alpha, seed=5)
        H = label_histogram(ys, 10)
        assert (H.sum(1) == 100).all()
        return 0.5 * np.abs(H / 100 - glob).sum(1).mean()

    assert tv(0.05) > 0.6 > 0.15 > tv(1000.0)
    _, a = partition(X, y, 20, "dirichlet", alpha=0.3, seed=1)
    _, b = partition(X, y, 20, "dirichlet", alpha=0.3, seed=1)
    np.testing.assert_array_equal(a, b)


def test_digits_and_synthetic():
    Xtr, ytr, Xte, yte = load_digits(seed=0)
    assert Xtr.shape == (1437, 64) and Xte.shape == (360, 64) and Xtr.dtype == np.float32
    assert 0 <= Xtr.min() and Xtr.max() <= 1
    assert np.abs(np.bincount(yte, minlength=10) - 36).max() <= 1  # stratified
    X, y = synthetic_classification(3000, 16, 4, separation=3.0, seed=0)
    assert X.shape == (3000, 16) and set(np.unique(y)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(X, synthetic_classification(3000, 16, 4, separation=3.0, seed=0)[0])
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=500).fit(X[:2000], y[:2000])
    assert clf.score(X[2000:], y[2000:]) > 0.95  # separable as documented


def test_data_and_model_errors():
    X, y = labelled(20)
    with pytest.raises(ValueError, match="method must be one of 'iid', 'label_sorted', 'dirichlet'; got 'random'"):
        partition(X, y, 2, "random")
    with pytest.raises(ValueError, match=r"n must be <= the number of samples \(20\); got n=21"):
        partition(X, y, 21)
    with pytest.raises(ValueError, match="alpha must be a positive finite float"):
        partition(X, y, 2, "dirichlet", alpha=0)
    with pytest.raises(ValueError, match="X must have shape \\(N, ...\\) and y shape \\(N,\\) with the same N"):
        partition(X[:5], y, 2)
    with pytest.raises(ValueError, match=r"test_fraction must be a finite real number in \(0, 1\); got 1.5"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="image_shape must be divisible by 2\\*\\*len\\(channels\\) = 8"):
        cnn(channels=(2, 2, 2), image_shape=(4, 4))
    with pytest.raises(ValueError, match="hidden must be a non-empty sequence of positive ints"):
        mlp(hidden=(0,))
    with pytest.raises(ValueError, match="X_shards must be \\(n, m, input_dim\\)"):
        classification_problem(mlp(), np.zeros((2, 3)), np.zeros((2, 3), int), batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        classification_problem(mlp(), np.zeros((2, 3, 64)), np.zeros((2, 3), int), batch_size=0)
    with pytest.raises(ValueError, match=r"l2 must be a finite real number in \[0, inf\]; got nan"):
        classification_problem(mlp(), np.zeros((2, 3, 64)), np.zeros((2, 3), int), batch_size=2,
                               l2=float("nan"))
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2; got 1"):
        synthetic_classification(10, 4, 1)


# ---------------------------------------------------------------------------- metrics
def test_classification_metrics_against_numpy(x64):
    n = 4
    rng = np.random.default_rng(7)
    model = mlp(hidden=(5,), num_classes=3, input_dim=2)
    Xs, ys = rng.normal(size=(n, 6, 2)), rng.integers(0, 3, size=(n, 6))
    Xte, yte = rng.normal(size=(11, 2)), rng.integers(0, 3, size=11)  # 11 = not a multiple of n
    prob = with_test_data(classification_problem(model, Xs, ys, batch_size=2), Xte, yte)
    P = jax.tree_util.tree_map(
        lambda a: jnp.asarray(np.stack([np.asarray(a) + rng.normal(size=a.shape) for _ in range(n)])),
        prob.init_params)
    fn = classification_metrics(model, Xte, yte, n, agent_accuracy=True)
    from bluefog.algorithm import AgentContext

    def per_agent(comm, p, d):
        return fn(p, AgentContext(comm, None, prob, d, jax.random.PRNGKey(0)))

    got = {k: float(v[0]) for k, v in bluefog_sim.spmd(per_agent, n)(P, prob.data).items()}
    Pn = jax.tree_util.tree_map(np.asarray, P)
    bar = jax.tree_util.tree_map(lambda a: a.mean(0), Pn)

    def fwd(p, x):
        return np_relu(x @ p["dense0"]["w"] + p["dense0"]["b"]) @ p["dense1"]["w"] + p["dense1"]["b"]

    def ce(p, x, y):
        z = fwd(p, x)
        return np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y])

    agent = [jax.tree_util.tree_map(lambda a: a[i], Pn) for i in range(n)]
    accs = [np.mean(fwd(a, Xte).argmax(1) == yte) for a in agent]
    flat = np.stack([np.concatenate([a["dense0"]["b"], a["dense0"]["w"].ravel(), a["dense1"]["b"],
                                     a["dense1"]["w"].ravel()]) for a in agent])
    assert got["test_accuracy"] == pytest.approx(np.mean(fwd(bar, Xte).argmax(1) == yte), abs=1e-12)
    assert got["loss"] == pytest.approx(np.mean([ce(bar, Xs[i], ys[i]) for i in range(n)]), rel=1e-10)
    assert got["local_loss"] == pytest.approx(np.mean([ce(agent[i], Xs[i], ys[i]) for i in range(n)]), rel=1e-10)
    assert got["agent_accuracy_mean"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert got["agent_accuracy_min"] == pytest.approx(min(accs)) and got["agent_accuracy_max"] == pytest.approx(max(accs))
    cd = np.sqrt(np.mean(np.sum((flat - flat.mean(0)) ** 2, 1)))
    assert got["consensus_distance"] == pytest.approx(cd, rel=1e-8)


def test_test_slices_cover_the_test_set_once_and_follow_the_shard():
    X, y = np.arange(22.0).reshape(11, 2), np.arange(11) % 3
    s = split_test_set(X, y, 4)  # k = 3, one padding row
    assert s["test_x"].shape == (4, 3, 2) and s["test_mask"].sum() == 11
    real = s["test_mask"].reshape(-1) == 1
    np.testing.assert_array_equal(s["test_x"].reshape(-1, 2)[real], X)
    np.testing.assert_array_equal(s["test_y"].reshape(-1)[real], y)
    model = mlp(hidden=(3,), num_classes=3, input_dim=2)
    full = classification_problem(model, np.zeros((4, 5, 2)), np.zeros((4, 5), int), batch_size=2)
    shard = with_test_data(full.restrict(2, 2), X, y)  # agents 2 and 3 of 4
    np.testing.assert_array_equal(shard.agent_data(3)["test_x"], s["test_x"][3])
    with pytest.raises(ValueError, match="must be a dict without the keys"):
        with_test_data(shard, X, y)
    with pytest.raises(ValueError, match="split_test_set: n must be an integer >= 1; got 0"):
        split_test_set(X, y, 0)
    with pytest.raises(ValueError, match=r"got X \(11, 2\) and y \(10,\). Pass one label"):
        split_test_set(X, y[:10], 4)


# ---------------------------------------------------------------------------- CLI
def test_cli_smoke_writes_json_and_png(tmp_path, capsys):
    out, png = tmp_path / "run.json", tmp_path / "run.png"
    rc = main(["--agents", "8", "--steps", "150", "--lr", "0.1", "--record-every", "30",
               "--no-progress", "--track-agents", "--out", str(out), "--plot", str(png)])
    assert rc == 0
    r = json.loads(out.read_text())
    h = r["history"]
    assert h["step"] == [0, 30, 60, 90, 120, 150]
    assert r["final"]["test_accuracy"] > 0.85  # sensible accuracy on held-out digits
    assert h["loss"][-1] < 0.3 * h["loss"][0]
    assert len(r["per_agent_test_accuracy"]) == 8
    # in-loop allgather of the agents' accuracies == evaluation of the final stacked params
    assert min(r["per_agent_test_accuracy"]) == pytest.approx(h["agent_accuracy_min"][-1])
    assert max(r["per_agent_test_accuracy"]) == pytest.approx(h["agent_accuracy_max"][-1])
    assert np.mean(r["per_agent_test_accuracy"]) == pytest.approx(h["agent_accuracy_mean"][-1], abs=1e-6)
    # exponential graph on 8 agents: in-neighbors i-1, i-2, i-4 -> 3 messages of 4810 floats
    assert r["bytes_sent_per_agent_per_step"] == 3 * 4 * (64 * 64 + 64 + 64 * 10 + 10)
    assert r["bytes_sent_per_agent_total"] == 150 * r["bytes_sent_per_agent_per_step"]
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 600
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["--model", "cnn", "--optimizer", "qg_dsgdm", "--split", "dirichlet", "--alpha", "0.3",
     "--topology", "one_peer_exponential", "--lr", "0.05"],
    ["--communication", "hierarchical", "--local-size", "2", "--machine-topology", "ring",
     "--style", "awc", "--optimizer", "adam", "--lr", "0.01", "--steps-per-communication", "2"],
])
def test_cli_variants_run_and_learn(tmp_path, args):
    out = tmp_path / "r.json"
    assert main(["--agents", "8", "--steps", "40", "--record-every", "20", "--no-progress",
                 "--out", str(out), *args]) == 0
    r = json.loads(out.read_text())
    assert r["history"]["loss"][-1] < r["history"]["loss"][0]


@pytest.mark.parametrize("args, message", [
    (["--checkpoint-every", "10"], "--checkpoint-every and --resume need --checkpoint-dir DIR"),
    (["--agents", "0"], "--agents must be an integer >= 1; got 0"),
    (["--steps", "100", "--record-every", "30", "--checkpoint-dir", "x", "--checkpoint-every", "40"],
     "--checkpoint-every must be a multiple of --record-every"),
    (["--agents", "6", "--topology", "hypercube"], "needs a power-of-two number of agents; got 6"),
    (["--communication", "hierarchical", "--local-size", "3"], "--local-size must divide --agents"),
])
def test_cli_errors(capsys, args, message):
    agents = [] if "--agents" in args else ["--agents", "8"]
    assert main(["--steps", "10", "--no-progress", *agents, *args]) == 2
    assert message in capsys.readouterr().err


def test_console_script_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "bluefog-train")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--checkpoint-every" in proc.stdout and "--backend" in proc.stdout
    assert "(default: 1000)" in proc.stdout and "(default: dmsgd)" in proc.stdout  # defaults shown


# ---------------------------------------------------------------------------- MPI
@pytest.mark.mpi
def test_mpi_backend_matches_simulator(tmp_path):
    """``mpiexec -n 4 bluefog-train --backend mpi`` equals the simulator's 4-agent run (to
    float32 rounding of MPI_Allreduce), and its checkpoint (one shard per rank) holds the
    rows of the simulator's stacked state."""
    from mpi_support import assert_mpi_ok, run_mpi

    from bluefog_train import checkpoint as ckpt
    from bluefog_train import sharded

    common = ["--agents", "4", "--steps", "60", "--record-every", "20", "--no-progress",
              "--checkpoint-every", "60", "--optimizer", "dmsgd", "--topology", "exponential"]
    proc = run_mpi(4, ["-c", "import sys; from bluefog_train.cli import main; sys.exit(main())",
                       "--backend", "mpi", *common, "--out", str(tmp_path / "mpi.json"),
                       "--checkpoint-dir", str(tmp_path / "ck_mpi")], timeout=600)
    assert_mpi_ok(proc)
    assert main(["--backend", "sim", *common, "--out", str(tmp_path / "sim.json"),
                 "--checkpoint-dir", str(tmp_path / "ck_sim")]) == 0
    a = json.loads((tmp_path / "mpi.json").read_text())
    b = json.loads((tmp_path / "sim.json").read_text())
    assert a["history"]["step"] == b["history"]["step"] == [0, 20, 40, 60]
    for k in ("loss", "local_loss", "test_accuracy", "consensus_distance"):
        np.testing.assert_allclose(a["history"][k], b["history"][k], rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(a["per_agent_test_accuracy"], b["per_agent_test_accuracy"], atol=1 / 360 + 1e-9)
    shards = sharded.step_dir(tmp_path / "ck_mpi", 60)  # one shard per rank, no gather
    assert sharded.read_manifest(shards)["size"] == 4
    with np.load(ckpt.latest(tmp_path / "ck_sim")) as zb:
        mb = json.loads(bytes(zb["__manifest__"]).decode())
        assert mb["step"] == 60
        for r in range(4):
            with np.load(os.path.join(shards, sharded.shard_name(r, 4))) as za:
                ma = json.loads(bytes(za["__manifest__"]).decode())
                assert [leaf["path"] for leaf in ma["leaves"]] == [leaf["path"] for leaf in mb["leaves"]]
                assert ma["step"] == 60 and ma["metadata"] == {"shard": r, "shards": 4}
                for k in range(len(ma["leaves"])):  # rank r's shard = row r of the simulator's
                    x, y = za[f"leaf_{k:05d}"], zb[f"leaf_{k:05d}"][r]
                    assert x.shape == y.shape
                    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
