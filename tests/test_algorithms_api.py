"""Argument validation (pinned error text), float32 by default, pytree parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algorithms as A
import bluefog_sim
from algorithms import problems as P
from bluefog import Problem
from bluefog.topology import Topology, exponential_graph, one_peer_exponential_graph, ring_graph


def col_only(n=4):
    """Directed ring with a chord and out-degree weights: column- but not row-stochastic."""
    adj = np.eye(n)
    for j in range(n):
        adj[(j + 1) % n, j] = 1
    adj[2, 0] = 1
    return Topology(adj / adj.sum(axis=0, keepdims=True), require="column")


def test_hyper_parameter_errors():
    with pytest.raises(ValueError, match=r"dgd: lr must be a positive finite float; got 0.0"):
        A.dgd(0)
    with pytest.raises(ValueError, match=r"extra: lr must be a positive finite float; got nan"):
        A.extra(float("nan"))
    with pytest.raises(TypeError, match=r"nids: lr must be a positive finite float; got '0.1'"):
        A.nids("0.1")
    with pytest.raises(ValueError, match=r"diffusion: style must be one of 'atc', 'awc'; got 'cta'"):
        A.diffusion(0.1, style="cta")
    with pytest.raises(ValueError, match=r"gradient_tracking: style must be one of 'awc', 'atc'"):
        A.gradient_tracking(0.1, style="ATC")
    with pytest.raises(ValueError, match=r"dsgd: momentum must be in \[0, 1\); got 1.0"):
        A.dsgd(0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"steps_per_communication must be an integer >= 1; got 0"):
        A.dsgd(0.1, steps_per_communication=0)
    with pytest.raises(TypeError, match=r"steps_per_communication must be an integer >= 1; got 2.5"):
        A.dsgd(0.1, steps_per_communication=2.5)
    with pytest.raises(TypeError, match=r"gradient_allreduce: stochastic must be True or False; got 'yes'"):
        A.gradient_allreduce(0.1, stochastic="yes")
    with pytest.raises(ValueError, match=r"gradient_allreduce: momentum must be in \[0, 1\)"):
        A.gradient_allreduce(0.1, momentum=-0.1)


CONSENSUS = ("consensus", "push_sum", "robust_push_sum")  # the factories without a step size
WITH_LR = sorted(name for name in A.REGISTRY if name not in CONSENSUS)


@pytest.mark.parametrize("name", WITH_LR)
@pytest.mark.parametrize("lr", [float("inf"), float("nan"), -1.0])
def test_every_factory_refuses_non_finite_or_non_positive_lr(name, lr):
    with pytest.raises(ValueError, match=rf"{name}: lr must be a positive finite float; got {lr}\. "
                                         rf"Pass e\.g\. {name}\(lr=0\.1\)\."):
        A.REGISTRY[name](lr)


@pytest.mark.parametrize("make,where", [
    (lambda v: A.dsgd(0.1, momentum=v), "dsgd"),
    (lambda v: A.gradient_allreduce(0.1, momentum=v), "gradient_allreduce"),
    (lambda v: A.dmsgd(0.1, momentum=v), "dmsgd"),
    (lambda v: A.qg_dsgdm(0.1, momentum=v), "qg_dsgdm"),
    (lambda v: A.nids(0.1, c=v), "nids"),
])
def test_non_finite_second_hyper_parameter_is_refused(make, where):
    with pytest.raises(ValueError, match=rf"{where}: (momentum|c) must be"):
        make(float("nan"))
    with pytest.raises(ValueError, match=rf"{where}: (momentum|c) must be"):
        make(float("inf"))


def _quad(n):
    return P.quadratic(np.arange(2.0 * n).reshape(n, 2))


def test_topology_requirements_are_checked_before_running():
    prob = _quad(4)
    with pytest.raises(ValueError, match=r"extra needs a static topology.*gradient_tracking \(DIGing\)"):
        bluefog_sim.run(A.extra(0.1), prob, one_peer_exponential_graph(4), 5)
    with pytest.raises(ValueError, match=r"nids needs a static topology"):
        bluefog_sim.run(A.nids(0.1), prob, one_peer_exponential_graph(4), 5)
    # the directed exponential graph is doubly stochastic but not symmetric
    prob16 = _quad(16)
    with pytest.raises(ValueError, match=r"exact_diffusion needs symmetric doubly-stochastic mixing "
                                         r"weights; pattern 'exponential\(n=16, base=2\)' has asymmetry"):
        bluefog_sim.run(A.exact_diffusion(0.1), prob16, exponential_graph(16), 5)
    with pytest.raises(ValueError, match=r"push_sum needs column-stochastic mixing weights.*"
                                         r"require='column'"):
        W = np.array([[0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5], [0.3, 0.3, 0, 0.4]])
        bluefog_sim.run(A.push_sum(), prob, Topology(W), 5)
    with pytest.raises(ValueError, match=r"gradient_tracking needs doubly-stochastic mixing weights.*"
                                         r"row sums in"):
        bluefog_sim.run(A.gradient_tracking(0.1), prob, col_only(), 5)
    with pytest.raises(ValueError, match=r"nids: c \* lr must be <= 1 / \(1 - lambda_min\(W\)\)"):
        bluefog_sim.run(A.nids(0.1, c=20.0), prob, ring_graph(4), 5)


def test_integer_params_are_refused():
    prob = Problem(lambda x, b: jnp.sum((x - b) ** 2), jnp.zeros((4, 2)), jnp.zeros(2, jnp.int32))
    with pytest.raises(TypeError, match="params must be floating-point arrays"):
        bluefog_sim.run(A.dgd(0.1), prob, ring_graph(4), 5)


def _default(name):
    factory = A.REGISTRY[name]
    return factory() if name in CONSENSUS else factory(0.05)


@pytest.fixture
def x32():
    """The default precision (float32), whatever other tests did before."""
    with jax.enable_x64(False):
        yield


@pytest.mark.parametrize("name", sorted(A.REGISTRY))
def test_float32_by_default_and_pytree_params(x32, name):
    """Every algorithm keeps float32 state and handles a dict of parameters."""
    assert not jax.config.jax_enable_x64
    n = 4
    rng = np.random.default_rng(0)
    data = {"w": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(n,)), jnp.float32)}

    def loss(p, d):
        return 0.5 * jnp.sum((p["w"] - d["w"]) ** 2) + 0.5 * (p["b"] - d["b"]) ** 2

    optimum = {"w": data["w"].mean(axis=0), "b": data["b"].mean()}
    prob = Problem(loss, data, {"w": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.float32)},
                   optimum=optimum)
    W = np.full((n, n), 1.0 / n)  # complete graph: symmetric, doubly (hence column) stochastic
    topo = Topology(W, require="doubly")
    x0 = data if name in CONSENSUS else None
    res = bluefog_sim.run(_default(name), prob, topo, 400, x0=x0, record_every=400)
    for leaf in jax.tree_util.tree_leaves(res.state):
        assert leaf.dtype in (jnp.float32, jnp.int32), (name, leaf.dtype)
    assert set(res.params) == {"w", "b"} and res.params["w"].shape == (n, 3)
    np.testing.assert_array_equal(res.state.count, 400)
    # complete graph (W = J = 11^T/n) and exact gradients (no stochastic_loss): every method
    # but DGD reaches the optimum; DGD's fixed point X = J X - lr (X - B) has the exact mean
    # and the deviation X - J X = lr / (1 + lr) (B - J B)
    if name == "dgd":
        Bm = np.concatenate([data["w"], data["b"][:, None]], axis=1)
        dev = Bm - Bm.mean(axis=0)
        want = 0.05 / 1.05 * np.sqrt(np.mean(np.sum(dev ** 2, axis=1)))
        np.testing.assert_allclose(res.history["distance_to_optimum"][-1], want, rtol=1e-4)
    else:
        err = float(res.history["relative_error"][-1])
        # float32: the bias-corrected methods keep a conserved correction (e.g. mean(x - psi)
        # in exact diffusion) in which rounding errors accumulate, amplified by 1/(lr mu);
        # measured floors here: 1e-8 (consensus) .. 1e-4 (exact diffusion, NIDS)
        assert err < 1e-3, (name, err)
