"""exact_diffusion / EXTRA / NIDS on a non-symmetric doubly stochastic W: refused by default,
an explicit opt-in (``allow_asymmetric=True``) warns, and the step sizes for which the runs
converge match a dense oracle: the spectral radius of each method's error recursion, written
from the papers' matrix form in NumPy (float64, 16-agent directed exponential graph, least
squares). These are the measurements quoted in the docstrings."""

import numpy as np
import pytest

import algorithms as A
import bluefog_sim
from algorithms import problems as P
from bluefog.topology import exponential_graph, symmetric_exponential_graph

N, M, D = 16, 10, 5


@pytest.fixture(scope="module")
def lsq():
    rng = np.random.default_rng(0)
    A_ = rng.normal(size=(N, M, D)) + rng.normal(size=(N, 1, D))
    y = rng.normal(size=(N, M)) + rng.normal(size=(N, 1))
    H = np.einsum("nmd,nme->nde", A_, A_) / M  # Hessian of f_i = 1/(2m) ||A_i x - y_i||^2
    L = max(np.linalg.eigvalsh(h).max() for h in H)
    xstar, *_ = np.linalg.lstsq(A_.reshape(-1, D), y.reshape(-1), rcond=None)
    return A_, y, H, L, xstar


def error_radius(W, H, lr, method):
    """Spectral radius of the linear error recursion (state (e^k, e^{k-1})), without the
    d modes at exactly 1 that the initialization never excites (conserved sums)."""
    I = np.eye(N * D)
    Wk = np.kron(W, np.eye(D))
    Wb = (I + Wk) / 2
    Hb = np.zeros((N * D, N * D))
    for i in range(N):
        Hb[i * D:(i + 1) * D, i * D:(i + 1) * D] = H[i]
    if method == "exact_diffusion":  # X+ = Wb (2X - X_ - lr H (X - X_))
        top = [Wb @ (2 * I - lr * Hb), -Wb @ (I - lr * Hb)]
    else:  # EXTRA: X++ = (I + W) X+ - Wb X - lr H (X+ - X)
        top = [I + Wk - lr * Hb, -(Wb - lr * Hb)]
    ev = np.linalg.eigvals(np.block([top, [I, np.zeros_like(I)]]))
    return np.abs(ev[np.abs(ev - 1) > 1e-8]).max()


def relative_error(alg, lsq, topo, steps):
    A_, y, _, _, xstar = lsq
    res = bluefog_sim.run(alg, P.least_squares(A_, y), topo, steps, record_every=steps,
                          on_nonfinite="continue")  # divergence is what some cases measure
    X = np.asarray(res.params)
    with np.errstate(over="ignore", invalid="ignore"):  # diverged runs overflow here
        return np.sqrt(np.mean(np.sum((X - xstar) ** 2, axis=1))) / np.linalg.norm(xstar)


def test_asymmetric_w_is_refused_by_default_with_the_opt_in_named(x64, lsq):
    for make, name in [(A.exact_diffusion, "exact_diffusion"), (A.extra, "extra"), (A.nids, "nids")]:
        with pytest.raises(ValueError, match=rf"{name} needs symmetric doubly-stochastic mixing "
                                             r"weights; pattern 'exponential\(n=16, base=2\)' has "
                                             r"asymmetry .* Or, knowingly, "
                                             rf"{name}\(\.\.\., allow_asymmetric=True\)"):
            relative_error(make(0.1), lsq, exponential_graph(N), 2)
    with pytest.raises(TypeError, match=r"exact_diffusion: allow_asymmetric must be True or False"):
        A.exact_diffusion(0.1, allow_asymmetric="yes")


def test_opt_in_warns_with_the_small_step_radius(x64, lsq):
    W = exponential_graph(N).weights
    # oracle: roots of lam^2 - 2 nu lam + nu for every eigenvalue nu of (I + W) / 2
    nu = (1 + np.linalg.eigvals(W)) / 2
    rho0 = max(np.abs(np.roots([1, -2 * v, v])).max() for v in nu)
    assert rho0 > 1.03
    for make, name in [(A.exact_diffusion, "exact_diffusion"), (A.extra, "extra"), (A.nids, "nids")]:
        with pytest.warns(UserWarning, match=rf"{name}: running on the non-symmetric pattern "
                                             r"'exponential\(n=16, base=2\)' \(allow_asymmetric=True\)"
                                             rf".* spectral radius {rho0:.4g} on this W"):
            relative_error(make(1.0 / lsq[3], allow_asymmetric=True), lsq, exponential_graph(N), 2)


def test_no_warning_on_symmetric_w_with_opt_in(x64, lsq, recwarn):
    relative_error(A.exact_diffusion(0.1, allow_asymmetric=True), lsq,
                   symmetric_exponential_graph(N), 2)
    assert not [w for w in recwarn if "non-symmetric" in str(w.message)]


@pytest.mark.filterwarnings("ignore:.*non-symmetric pattern")
@pytest.mark.parametrize("method,factor", [
    ("exact_diffusion", 0.3), ("exact_diffusion", 1.0), ("exact_diffusion", 2.0),
    ("exact_diffusion", 3.0), ("extra", 0.25), ("extra", 1.0), ("extra", 2.0),
])
def test_directed_exponential_graph_converges_exactly_where_the_recursion_contracts(
        x64, lsq, method, factor):
    _, _, H, L, _ = lsq
    W = exponential_graph(N).weights
    lr = factor / L
    rho = error_radius(W, H, lr, method)
    make = {"exact_diffusion": A.exact_diffusion, "extra": A.extra}[method]
    err = relative_error(make(lr, allow_asymmetric=True), lsq, exponential_graph(N), 1500)
    if rho < 1:
        assert rho < 0.99 and err < 1e-9, (rho, err)
    else:
        assert rho > 1.005 and not err < 1e3, (rho, err)  # NaN/inf count as diverged


def test_measured_windows_quoted_in_the_docstrings(lsq):
    """The step-size windows (grid 0.05/L) quoted by exact_diffusion and extra."""
    _, _, H, L, _ = lsq
    grid = np.round(np.arange(0.05, 3.0, 0.05), 2)

    def window(W, method):
        ok = [f for f in grid if error_radius(W, H, f / L, method) < 1]
        assert ok == [f for f in grid if ok[0] <= f <= ok[-1]]  # one interval
        return ok[0], ok[-1]

    directed, sym = exponential_graph(N).weights, symmetric_exponential_graph(N).weights
    assert window(directed, "exact_diffusion") == (0.55, 2.3)
    assert window(sym, "exact_diffusion") == (0.05, 2.35)
    assert window(directed, "extra") == (0.4, 1.35)
    assert window(sym, "extra") == (0.05, 1.3)
    for text in (A.exact_diffusion.__doc__, A.nids.__doc__ + A.exact_diffusion.__doc__):
        assert "0.55/L" in text and "2.3/L" in text
    assert "0.4/L" in A.extra.__doc__ and "1.35/L" in A.extra.__doc__
