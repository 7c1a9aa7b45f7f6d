"""Problems and data splitting, checked against independent oracles (NumPy/SciPy solves,
hand-computed statistics)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from algorithms import problems as P


def _global_grad(problem, x):
    return np.asarray(jax.grad(problem.global_loss)(jnp.asarray(x)))


def test_quadratic_optimum_is_mean(x64):
    b = np.random.default_rng(0).normal(size=(6, 4))
    prob = P.quadratic(b)
    np.testing.assert_allclose(prob.optimum, b.mean(axis=0), rtol=0, atol=1e-15)
    assert prob.size == 6 and prob.stochastic_loss is None
    # the gradient of f_i is x - b_i
    np.testing.assert_allclose(jax.grad(prob.loss)(jnp.ones(4), jnp.asarray(b[2])), 1 - b[2], atol=1e-15)


def test_quadratic_stochastic_gradient_is_unbiased(x64):
    b = np.random.default_rng(1).normal(size=(3, 5))
    prob = P.quadratic(b, noise_std=2.0)
    x = jnp.arange(5.0)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    g = jax.vmap(lambda k: jax.grad(prob.stochastic_loss)(x, prob.agent_data(1), k))(keys)
    exact = np.asarray(x) - b[1]
    # mean within 5 standard errors (sigma = 2, 4000 draws), spread matches sigma
    np.testing.assert_allclose(np.mean(g, axis=0), exact, atol=5 * 2.0 / np.sqrt(4000))
    np.testing.assert_allclose(np.std(g, axis=0), 2.0, rtol=0.08)


def test_least_squares_optimum_matches_scipy_lstsq(x64):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(5, 7, 4))
    y = rng.normal(size=(5, 7))
    xs, *_ = np.linalg.lstsq(A.reshape(35, 4), y.reshape(35), rcond=None)
    prob = P.least_squares(A, y)
    np.testing.assert_allclose(prob.optimum, xs, rtol=1e-12, atol=1e-12)
    # ridge: the stacked system [A; sqrt(N lam) I] x = [y; 0]
    lam = 0.3
    Aa = np.vstack([A.reshape(35, 4), np.sqrt(35 * lam) * np.eye(4)])
    ya = np.concatenate([y.reshape(35), np.zeros(4)])
    xr, *_ = np.linalg.lstsq(Aa, ya, rcond=None)
    prob_r = P.least_squares(A, y, l2=lam)
    np.testing.assert_allclose(prob_r.optimum, xr, rtol=1e-12, atol=1e-12)
    assert np.linalg.norm(_global_grad(prob_r, xr)) < 1e-13


def test_logistic_optimum_matches_scipy_on_breast_cancer(x64):
    X, y = P.breast_cancer()
    assert X.shape == (569, 31) and set(np.unique(y)) == {0, 1}
    np.testing.assert_allclose(X[:, :30].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(X[:, :30].std(axis=0), 1, atol=1e-12)
    Xs, ys = P.split_dataset(X, y, 8, method="label_sorted", seed=0)
    lam = 1e-2
    prob = P.logistic_regression(Xs, ys, l2=lam)
    Z = Xs.reshape(-1, 31)
    s = 2.0 * ys.reshape(-1) - 1.0

    def f(w):
        return np.mean(np.logaddexp(0, -s * (Z @ w))) + 0.5 * lam * w @ w

    def g(w):
        p = 0.5 * (1 + np.tanh(0.5 * s * (Z @ w)))  # sigma(s z)
        return -(Z.T @ (s * (1 - p))) / len(s) + lam * w

    def h(w):
        p = 0.5 * (1 + np.tanh(0.5 * s * (Z @ w)))
        return (Z.T * (p * (1 - p))) @ Z / len(s) + lam * np.eye(31)

    ref = scipy.optimize.minimize(f, np.zeros(31), jac=g, hess=h, method="trust-exact",
                                  options={"gtol": 1e-13})
    assert np.linalg.norm(g(ref.x)) < 1e-12
    np.testing.assert_allclose(prob.optimum, ref.x, rtol=0, atol=1e-10 * np.linalg.norm(ref.x))
    # the JAX loss is the same objective
    np.testing.assert_allclose(float(prob.global_loss(jnp.asarray(ref.x))), f(ref.x), rtol=1e-13)


def test_logistic_accepts_pm1_labels_and_minibatch_is_unbiased(x64):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2, 20, 3))
    y01 = (rng.random((2, 20)) > 0.5).astype(float)
    p1 = P.logistic_regression(X, y01, l2=0.1, batch_size=5)
    p2 = P.logistic_regression(X, 2 * y01 - 1, l2=0.1)
    np.testing.assert_allclose(p1.optimum, p2.optimum, atol=1e-14)
    x = jnp.asarray([0.3, -0.2, 0.5])
    d0 = p1.agent_data(0)
    keys = jax.random.split(jax.random.PRNGKey(1), 20000)
    gs = jax.vmap(lambda k: jax.grad(p1.stochastic_loss)(x, d0, k))(keys)
    exact = jax.grad(p1.loss)(x, d0)
    se = np.std(gs, axis=0) / np.sqrt(len(keys))
    assert np.all(np.abs(np.mean(gs, axis=0) - exact) < 5 * se + 1e-12)


@pytest.mark.parametrize("method", ["iid", "label_sorted", "dirichlet"])
def test_split_dataset_partitions_deterministically(method):
    rng = np.random.default_rng(4)
    N = 103
    X = np.arange(N)[:, None] * np.ones((1, 2))
    y = rng.integers(0, 3, size=N)
    Xs, ys = P.split_dataset(X, y, 7, method=method, alpha=0.3, seed=11)
    assert Xs.shape == (7, 14, 2) and ys.shape == (7, 14)
    ids = Xs[..., 0].astype(int).ravel()
    assert len(set(ids.tolist())) == 7 * 14  # no sample used twice
    np.testing.assert_array_equal(y[ids], ys.ravel())  # labels travel with their samples
    Xs2, ys2 = P.split_dataset(X, y, 7, method=method, alpha=0.3, seed=11)
    np.testing.assert_array_equal(Xs, Xs2)
    Xs3, _ = P.split_dataset(X, y, 7, method=method, alpha=0.3, seed=12)
    assert not np.array_equal(Xs, Xs3)


def test_label_sorted_and_dirichlet_are_heterogeneous():
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(4), 50)
    X = rng.normal(size=(200, 3))
    _, ys = P.split_dataset(X, y, 8, method="label_sorted", seed=0)
    # 25 samples per agent, 50 per class: each agent holds exactly one class
    assert all(len(np.unique(row)) == 1 for row in ys)
    _, yi = P.split_dataset(X, y, 8, method="iid", seed=0)
    _, yd = P.split_dataset(X, y, 8, method="dirichlet", alpha=0.05, seed=0)

    def dominant(ys_):  # mean share of an agent's most common class
        return np.mean([np.bincount(r, minlength=4).max() / len(r) for r in ys_])

    assert dominant(yd) > 0.7 > 0.45 > dominant(yi)


def test_problem_errors():
    with pytest.raises(ValueError, match=r"b must have 2 dimensions .* got shape \(3,\)"):
        P.quadratic(np.zeros(3))
    with pytest.raises(ValueError, match=r"quadratic: noise_std must be a finite real number in \[0, inf\]; "
                                         r"got -1\.0\. Pass e\.g\. noise_std=0\.1\."):
        P.quadratic(np.zeros((2, 2)), noise_std=-1)
    with pytest.raises(ValueError, match="does not have full column rank and l2 = 0"):
        P.least_squares(np.ones((2, 3, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"y must have shape A.shape\[:2\] = \(2, 3\)"):
        P.least_squares(np.ones((2, 3, 2)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="l2 must be > 0"):
        P.logistic_regression(np.ones((2, 3, 2)), np.ones((2, 3)), l2=0.0)
    with pytest.raises(ValueError, match=r"binary labels in \{0, 1\} or \{-1, \+1\}"):
        P.logistic_regression(np.ones((2, 3, 2)), 2 * np.ones((2, 3)), l2=1.0)
    with pytest.raises(ValueError, match=r"batch_size must be <= the number of samples per agent \(3\)"):
        P.logistic_regression(np.ones((2, 3, 2)), np.ones((2, 3)), l2=1.0, batch_size=4)
    with pytest.raises(ValueError, match="method must be one of 'iid', 'label_sorted', 'dirichlet'"):
        P.split_dataset(np.ones((4, 1)), np.zeros(4), 2, method="sorted")
    with pytest.raises(ValueError, match=r"n must be <= the number of samples \(4\)"):
        P.split_dataset(np.ones((4, 1)), np.zeros(4), 5)
    with pytest.raises(ValueError, match="alpha must be a positive finite float"):
        P.split_dataset(np.ones((4, 1)), np.zeros(4), 2, method="dirichlet", alpha=0)
    with pytest.raises(ValueError, match="same N"):
        P.split_dataset(np.ones((4, 1)), np.zeros(5), 2)


def test_split_dataset_seed_and_n_use_the_one_validation_rule():
    with pytest.raises(TypeError, match=r"split_dataset: seed must be an int.*got 1\.5"):
        P.split_dataset(np.ones((4, 1)), np.zeros(4), 2, seed=1.5)
    with pytest.raises(TypeError, match=r"split_dataset: n must be an integer >= 1; got True"):
        P.split_dataset(np.ones((4, 1)), np.zeros(4), True)
    with pytest.raises(ValueError, match=r"least_squares: l2 must be a finite real number in \[0, inf\]; got inf"):
        P.least_squares(np.ones((2, 3, 2)), np.ones((2, 3)), l2=float("inf"))


# ---- hand-made Problem: refused at construction with the argument, what came, and the fix ----

from bluefog import Problem  # noqa: E402


def _lsq_data(d=3, dtype=jnp.float32):
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.normal(size=(4, 6, d)), dtype), jnp.asarray(rng.normal(size=(4, 6)), dtype))


def _lsq_loss(x, data):
    a, t = data
    return 0.5 * jnp.mean((a @ x - t) ** 2)


def test_problem_refuses_nan_in_data_naming_leaf_index_and_agent():
    a, t = _lsq_data()
    a = a.at[2, 1, 0].set(jnp.nan)
    with pytest.raises(ValueError, match=r"Problem: data must be finite; data\[0\] \(shape \(4, 6, 3\)\) has 1 "
                                         r"NaN/inf value\(s\), the first at index \(2, 1, 0\) \(agent 2\)\. "
                                         r"Clean or impute the data"):
        Problem(_lsq_loss, (a, t), jnp.zeros(3, jnp.float32))
    with pytest.raises(ValueError, match=r"Problem: init_params must be finite; init_params \(shape \(3,\)\) "
                                         r"has 1 NaN/inf value\(s\), the first at index \(1,\)"):
        Problem(_lsq_loss, _lsq_data(), jnp.array([0.0, jnp.inf, 0.0], jnp.float32))


def test_problem_integer_labels_are_not_checked_for_nan():
    a, _ = _lsq_data()
    labels = jnp.zeros((4, 6), jnp.int32)
    prob = Problem(lambda x, d: _lsq_loss(x, (d[0], d[1].astype(x.dtype))), (a, labels),
                   jnp.zeros(3, jnp.float32))
    assert prob.size == 4


def test_problem_refuses_init_params_that_do_not_fit_the_data():
    """d = 5 parameters for data with 3 features: found by abstract evaluation (eval_shape)."""
    with pytest.raises(ValueError, match=r"Problem: loss\(init_params, data_i\) cannot be evaluated: "
                                         r"TypeError: dot_general requires contracting dimensions.*"
                                         r"init_params is \{x: \(5,\) float32\} and one agent's data is "
                                         r"\{\[0\]: \(6, 3\) float32, \[1\]: \(6,\) float32\}.* e\.g\. "
                                         r"init_params=jnp\.zeros\(d\)"):
        Problem(_lsq_loss, _lsq_data(3), jnp.zeros(5, jnp.float32))
    with pytest.raises(ValueError, match=r"Problem: stochastic_loss\(init_params, data_i, key\) cannot be "
                                         r"evaluated: TypeError"):
        Problem(_lsq_loss, _lsq_data(3), jnp.zeros(3, jnp.float32),
                stochastic_loss=lambda x, d, k: _lsq_loss(jnp.concatenate([x, x]), d))


def test_problem_refuses_a_loss_that_is_not_a_float_scalar():
    data, x0 = _lsq_data(), jnp.zeros(3, jnp.float32)
    with pytest.raises(ValueError, match=r"Problem: loss must return a scalar \(shape \(\)\); got shape "
                                         r"\(6,\)\. Reduce it with jnp\.sum\(\.\.\.\) or jnp\.mean\(\.\.\.\)"):
        Problem(lambda x, d: (d[0] @ x - d[1]) ** 2, data, x0)
    with pytest.raises(TypeError, match=r"Problem: loss must return a scalar array; got a dict"):
        Problem(lambda x, d: {"loss": _lsq_loss(x, d)}, data, x0)
    with pytest.raises(TypeError, match=r"Problem: loss must return a real floating-point scalar .* got "
                                        r"dtype int32"):
        Problem(lambda x, d: jnp.sum(x).astype(jnp.int32), data, x0)
    with pytest.raises(ValueError, match=r"Problem: stochastic_loss must return a scalar \(shape \(\)\); "
                                         r"got shape \(2,\)"):
        Problem(_lsq_loss, data, x0, stochastic_loss=lambda x, d, k: jnp.ones(2))
    with pytest.raises(TypeError, match=r"Problem: loss must be callable \(params, data_i\) -> scalar; got int"):
        Problem(3, data, x0)


def test_problem_refuses_optimum_of_another_shape():
    with pytest.raises(ValueError, match=r"Problem: optimum must have the structure and shapes of init_params "
                                         r"\{x: \(3,\) float32\}; got \{x: \(4,\) float32\}"):
        Problem(_lsq_loss, _lsq_data(), jnp.zeros(3, jnp.float32), optimum=jnp.zeros(4, jnp.float32))


def test_problem_checks_do_not_evaluate_the_loss_concretely():
    """eval_shape traces abstractly: a loss with a Python side effect on concrete values
    (float()) would fail here if it were run; it must only be traced."""
    calls = []

    def loss(x, d):
        calls.append(type(x).__name__)
        return _lsq_loss(x, d)

    Problem(loss, _lsq_data(), jnp.zeros(3, jnp.float32))
    assert calls and all("Tracer" in c for c in calls)
