"""Per-step oracle: every algorithm's trajectory equals a dense NumPy re-implementation of
its update rule, written from the papers' matrix form (``X`` is ``n x d``, ``W @ X`` mixes).

The NumPy code uses the papers' original recursions (e.g. EXTRA's two-step form, NIDS's
``W~(2x^k - x^{k-1} - ...)``), not the one-exchange forms of the library, so agreement checks
the algebra of the reformulations too.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import algorithms as A
from algorithms import problems as P
from bluefog.algorithm import AgentContext
from bluefog.topology import Topology
from bluefog_sim import SimComm, agent_keys

N, M, D, STEPS = 6, 5, 3, 25


def metropolis(adj):
    deg = adj.sum(axis=1)
    W = np.where(adj > 0, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
    np.fill_diagonal(W, 1.0 - W.sum(axis=1))
    return W


def sym_weights():
    adj = np.zeros((N, N))
    for i, j in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3), (1, 4)]:
        adj[i, j] = adj[j, i] = 1
    adj[0, 2] = adj[2, 0] = 1  # non-regular
    return metropolis(adj)


def col_weights():
    C = np.eye(N)
    for j, i in [(j, (j + 1) % N) for j in range(N)] + [(0, 3), (2, 5), (4, 1), (0, 4)]:
        C[i, j] = 1.0
    return C / C.sum(axis=0, keepdims=True)


def data():
    rng = np.random.default_rng(7)
    A_ = rng.normal(size=(N, M, D)) + rng.normal(size=(N, 1, D))
    y = rng.normal(size=(N, M)) + rng.normal(size=(N, 1))
    return A_, y


def grad(X, A_, y):
    """Dense gradients of f_i(x) = 1/(2M) ||A_i x - y_i||^2, one row per agent."""
    return np.einsum("nmd,nm->nd", A_, np.einsum("nmd,nd->nm", A_, X) - y) / M


def trajectory(alg, problem, topology, steps, x0):
    """Iterates ``params`` after steps 1..steps, shape (steps, n, d), from the library."""
    comm = SimComm(problem.size)
    keys = agent_keys(0, problem.size)

    def ctx(d, k):
        return AgentContext(comm, topology, problem, d, k)

    def run(x0, data, keys):
        s = alg.init(x0, ctx(data, keys))

        def body(s, _):
            s = alg.step(s, ctx(data, keys))
            return s, alg.params(s)

        return lax.scan(body, s, None, length=steps)[1]

    f = jax.jit(jax.vmap(run, axis_name=comm.axis_name, out_axes=1))
    return np.asarray(f(jnp.asarray(x0), problem.data, keys))


def oracle(name, W, X0, A_, y, lr, steps):
    g = lambda X: grad(X, A_, y)  # noqa: E731
    I = np.eye(N)
    out = []
    if name == "dgd":
        X = X0
        for _ in range(steps):
            X = W @ X - lr * g(X)
            out.append(X)
    elif name == "diffusion_atc":
        X = X0
        for _ in range(steps):
            X = W @ (X - lr * g(X))
            out.append(X)
    elif name == "extra":  # Shi et al. (2015), eq. (2.2)-(2.3)
        Wt = (I + W) / 2
        Xp, X = X0, W @ X0 - lr * g(X0)
        out.append(X)
        for _ in range(steps - 1):
            Xp, X = X, (I + W) @ X - Wt @ Xp - lr * (g(X) - g(Xp))
            out.append(X)
    elif name in ("exact_diffusion", "nids"):  # Yuan et al. (2019); Li, Shi, Yan (2019)
        Wb = (I + W) / 2
        X1 = Wb @ (X0 - lr * g(X0)) if name == "exact_diffusion" else X0 - lr * g(X0)
        Xp, X = X0, X1
        out.append(X)
        for _ in range(steps - 1):
            Xp, X = X, Wb @ (2 * X - Xp - lr * (g(X) - g(Xp)))
            out.append(X)
    elif name in ("gradient_tracking", "gradient_tracking_atc"):
        X, Y = X0, g(X0)
        for _ in range(steps):
            if name == "gradient_tracking":  # DIGing
                Xn = W @ X - lr * Y
                Y = W @ Y + g(Xn) - g(X)
            else:  # ATC tracking (Xu et al. 2015)
                Xn = W @ (X - lr * Y)
                Y = W @ (Y + g(Xn) - g(X))
            X = Xn
            out.append(X)
    elif name == "push_diging":  # Nedic, Olshevsky, Shi (2017), Alg. 2
        U, V, Y, X = X0, np.ones((N, 1)), g(X0), X0
        for _ in range(steps):
            U = W @ (U - lr * Y)
            V = W @ V
            Xn = U / V
            Y = W @ Y + g(Xn) - g(X)
            X = Xn
            out.append(X)
    elif name == "push_sum":
        Xs, V = X0, np.ones((N, 1))
        for _ in range(steps):
            Xs, V = W @ Xs, W @ V
            out.append(Xs / V)
    elif name == "dsgd_local":  # J = 3 local steps, momentum 0.5, exact gradients
        X, Mo = X0, np.zeros_like(X0)
        for k in range(steps):
            Mo = 0.5 * Mo + g(X)
            X = X - lr * Mo
            if (k + 1) % 3 == 0:
                X = W @ X
            out.append(X)
    elif name == "gradient_allreduce":  # centralized momentum GD, momentum 0.9
        X, Mo = X0, np.zeros_like(X0)
        for _ in range(steps):
            Mo = 0.9 * Mo + g(X).mean(axis=0, keepdims=True)
            X = X - lr * Mo
            out.append(X)
    return np.stack(out)


CASES = {
    "dgd": lambda lr: A.dgd(lr),
    "diffusion_atc": lambda lr: A.diffusion(lr, style="atc"),
    "extra": lambda lr: A.extra(lr),
    "exact_diffusion": lambda lr: A.exact_diffusion(lr),
    "nids": lambda lr: A.nids(lr),
    "gradient_tracking": lambda lr: A.gradient_tracking(lr),
    "gradient_tracking_atc": lambda lr: A.gradient_tracking(lr, style="atc"),
    "push_diging": lambda lr: A.push_diging(lr),
    "push_sum": lambda lr: A.push_sum(),
    "dsgd_local": lambda lr: A.dsgd(lr, momentum=0.5, steps_per_communication=3),
    "gradient_allreduce": lambda lr: A.gradient_allreduce(lr, momentum=0.9, stochastic=False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_trajectory_matches_dense_numpy_oracle(x64, name):
    A_, y = data()
    directed = name in ("push_diging", "push_sum")
    W = col_weights() if directed else sym_weights()
    topo = Topology(W, require="column" if directed else "doubly")
    # exact gradients, so that dsgd's ctx.stochastic_grad is deterministic
    problem = dataclasses.replace(P.least_squares(A_, y), stochastic_loss=None)
    X0 = np.random.default_rng(1).normal(size=(N, D))
    lr = 0.05
    got = trajectory(CASES[name](lr), problem, topo, STEPS, X0)
    want = oracle(name, W, X0, A_, y, lr, STEPS)
    assert got.shape == want.shape == (STEPS, N, D)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_awc_diffusion_is_dgd(x64):
    A_, y = data()
    topo = Topology(sym_weights(), require="doubly")
    problem = P.least_squares(A_, y)
    X0 = np.random.default_rng(2).normal(size=(N, D))
    want = oracle("dgd", sym_weights(), X0, A_, y, 0.05, 10)
    got = trajectory(A.diffusion(0.05, style="awc"), problem, topo, 10, X0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def oracle_time_varying(name, Wt, X0, A_, y, lr, steps):
    """Dense recursions with the mixing matrix ``Wt(k)`` of step ``k``."""
    g = lambda X: grad(X, A_, y)  # noqa: E731
    I = np.eye(N)
    out = []
    X = X0
    if name == "dgd":
        for k in range(steps):
            X = Wt(k) @ X - lr * g(X)
            out.append(X)
    elif name == "exact_diffusion":
        Psi = X0
        for k in range(steps):
            Psin = X - lr * g(X)
            X = (I + Wt(k)) / 2 @ (Psin + X - Psi)
            Psi = Psin
            out.append(X)
    elif name == "gradient_tracking":
        Y = g(X0)
        for k in range(steps):
            Xn = Wt(k) @ X - lr * Y
            Y = Wt(k) @ Y + g(Xn) - g(X)
            X = Xn
            out.append(X)
    elif name == "push_diging":
        U, V, Y = X0, np.ones((N, 1)), g(X0)
        for k in range(steps):
            U, V = Wt(k) @ (U - lr * Y), Wt(k) @ V
            Xn = U / V
            Y = Wt(k) @ Y + g(Xn) - g(X)
            X = Xn
            out.append(X)
    elif name == "dsgd_local":  # J = 2: the pattern advances once per communication round
        for k in range(steps):
            X = X - lr * g(X)
            if (k + 1) % 2 == 0:
                X = Wt(k // 2) @ X
            out.append(X)
    return np.stack(out)


@pytest.mark.parametrize("name,family", [
    ("dgd", "one_peer"), ("gradient_tracking", "one_peer"), ("push_diging", "one_peer"),
    ("exact_diffusion", "matching"), ("dsgd_local", "one_peer"),
])
def test_time_varying_trajectory_matches_dense_oracle(x64, name, family):
    from bluefog.topology import one_peer_exponential_graph, random_matching

    topo = one_peer_exponential_graph(N) if family == "one_peer" else random_matching(N, seed=5)
    make = {"dgd": A.dgd, "gradient_tracking": A.gradient_tracking, "push_diging": A.push_diging,
            "exact_diffusion": A.exact_diffusion,
            "dsgd_local": lambda lr: A.dsgd(lr, steps_per_communication=2)}[name]
    A_, y = data()
    problem = dataclasses.replace(P.least_squares(A_, y), stochastic_loss=None)
    X0 = np.random.default_rng(3).normal(size=(N, D))
    got = trajectory(make(0.05), problem, topo, STEPS, X0)
    # the NumPy rule topology.at(k) (independent of the traced lax.switch index)
    want = oracle_time_varying(name, lambda k: topo.at(k).weights, X0, A_, y, 0.05, STEPS)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
