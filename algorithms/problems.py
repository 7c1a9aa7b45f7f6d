r"""Test problems with known centralized optima, and deterministic data splitting.

Every constructor returns a :class:`bluefog.Problem` whose global objective is
:math:`f(x) = \frac1n\sum_{i=1}^n f_i(x)`, with per-agent data stacked along a leading axis of
size ``n`` and, where one exists, the exact minimiser ``optimum`` computed in NumPy float64
independently of any decentralized method:

* :func:`quadratic`: closed form (the mean of the targets);
* :func:`least_squares`: the normal equations, solved with ``numpy.linalg.solve``;
* :func:`logistic_regression`: Newton's method with backtracking in NumPy float64, iterated
  until the gradient norm is below ``1e-13`` (quadratic convergence makes the result exact
  to float64 round-off).

:func:`split_dataset` distributes a data set across agents iid, sorted by label, or with
Dirichlet(alpha) label proportions, deterministically by seed and with equal shard sizes;
:func:`breast_cancer` loads scikit-learn's bundled breast-cancer data set (no download).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.algorithm import Problem
from bluefog.validation import (check_choice, check_positive_float, check_positive_int, check_real,
                                check_seed)

__all__ = ["quadratic", "least_squares", "logistic_regression", "split_dataset", "breast_cancer"]


def _as_array(value, name: str, ndim: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a numeric array {what}; got {type(value).__name__} ({exc}). Pass a "
            "NumPy or JAX array of numbers."
        ) from None
    if arr.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions {what}; got shape {arr.shape}. Reshape or stack "
            "it to that layout."
        )
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}. Pass at least one row.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} must be finite; it contains {int(np.sum(~np.isfinite(arr)))} NaN or inf "
            "value(s). Clean or impute them (e.g. drop the rows) first."
        )
    return arr


def _check_nonneg(value, name: str, where: str) -> float:
    """A finite float >= 0 (:func:`bluefog.validation.check_real`)."""
    return check_real(value, name, low=0.0, where=where, example=f"{name}=0.1")


def _dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _check_batch(batch_size, m: int, where: str) -> int:
    batch_size = check_positive_int(batch_size, "batch_size", where=where)
    if batch_size > m:
        raise ValueError(
            f"{where}: batch_size must be <= the number of samples per agent ({m}); got "
            f"{batch_size}. Pass batch_size={m} or smaller."
        )
    return batch_size


def quadratic(b, noise_std: float = 0.0) -> Problem:
    r"""Consensus-type quadratic :math:`f_i(x) = \tfrac12 \|x - b_i\|^2`.

    The minimiser of :math:`f = \frac1n\sum_i f_i` is :math:`x^\star = \bar b =
    \frac1n\sum_i b_i` (closed form). With ``noise_std > 0`` the stochastic loss adds a
    zero-mean linear perturbation, :math:`f_i(x) + \sigma\,\xi^\top x`,
    :math:`\xi \sim \mathcal N(0, I)`, so stochastic gradients are
    :math:`x - b_i + \sigma \xi` (unbiased, variance :math:`\sigma^2 d`).

    Parameters
    ----------
    b : array_like, shape (n, d)
        Agent ``i``'s target ``b[i]``.
    noise_std : float >= 0
        :math:`\sigma` of the stochastic gradient noise (0: no ``stochastic_loss``).

    Returns
    -------
    Problem
        ``init_params`` zeros of shape ``(d,)``, ``optimum`` the mean of ``b``.

    References
    ----------
    K. Yuan, Q. Ling, W. Yin, "On the convergence of decentralized gradient descent", SIAM
    J. Optim. 26(3) (2016) (the quadratic example used to exhibit DGD's bias).
    """
    B = _as_array(b, "b", 2, "of shape (n, d): one target per agent")
    sigma = _check_nonneg(noise_std, "noise_std", "quadratic")
    dt = _dtype()

    def loss(x, b_i):
        return 0.5 * jnp.sum((x - b_i) ** 2)

    stochastic = None
    if sigma > 0:
        def stochastic(x, b_i, key):
            xi = jax.random.normal(key, x.shape, x.dtype)
            return loss(x, b_i) + sigma * jnp.dot(xi, x)

    return Problem(loss, jnp.asarray(B, dt), jnp.zeros(B.shape[1], dt),
                   optimum=jnp.asarray(B.mean(axis=0), dt), stochastic_loss=stochastic,
                   name=f"quadratic(n={B.shape[0]}, d={B.shape[1]})",
                   config={"n": B.shape[0], "d": B.shape[1], "noise_std": sigma})


def least_squares(A, y, l2: float = 0.0, batch_size: int | None = None) -> Problem:
    r"""Distributed (ridge) least squares.

    .. math::

        f_i(x) = \frac{1}{2m}\|A_i x - y_i\|^2 + \frac{\lambda}{2}\|x\|^2, \qquad
        x^\star = \Bigl(\sum_i A_i^\top A_i + nm\lambda I\Bigr)^{-1} \sum_i A_i^\top y_i,

    the optimum solved in NumPy float64 from the normal equations. The stochastic loss uses
    ``batch_size`` rows of :math:`A_i` drawn uniformly with replacement (unbiased).

    Parameters
    ----------
    A : array_like, shape (n, m, d)
        Agent ``i`` holds ``m`` rows ``A[i]``.
    y : array_like, shape (n, m)
    l2 : float >= 0
        Ridge coefficient :math:`\lambda`; with ``l2 = 0`` the stacked ``A`` must have full
        column rank.
    batch_size : int, optional
        Minibatch size of the stochastic loss (default ``min(m, 8)``).

    References
    ----------
    G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed. (2013), Section 5.3.
    """
    A_ = _as_array(A, "A", 3, "of shape (n, m, d): m rows per agent")
    y_ = _as_array(y, "y", 2, "of shape (n, m)")
    if y_.shape != A_.shape[:2]:
        raise ValueError(
            f"y must have shape A.shape[:2] = {A_.shape[:2]}; got {y_.shape}. Give one target "
            "per row of A."
        )
    lam = _check_nonneg(l2, "l2", "least_squares")
    n, m, d = A_.shape
    bs = _check_batch(min(m, 8) if batch_size is None else batch_size, m, "least_squares")
    H = np.einsum("nmd,nme->de", A_, A_) + n * m * lam * np.eye(d)
    rhs = np.einsum("nmd,nm->d", A_, y_)
    if np.linalg.matrix_rank(H) < d:
        raise ValueError(
            f"least_squares: the stacked A (shape {(n * m, d)}) does not have full column rank "
            "and l2 = 0, so the minimiser is not unique. Pass l2 > 0 (ridge) or more rows."
        )
    xstar = np.linalg.solve(H, rhs)
    dt = _dtype()

    def loss(x, data):
        a, t = data
        r = a @ x - t
        return 0.5 * jnp.mean(r ** 2) + 0.5 * lam * jnp.sum(x ** 2)

    def stochastic(x, data, key):
        a, t = data
        idx = jax.random.randint(key, (bs,), 0, a.shape[0])
        return loss(x, (a[idx], t[idx]))

    return Problem(loss, (jnp.asarray(A_, dt), jnp.asarray(y_, dt)), jnp.zeros(d, dt),
                   optimum=jnp.asarray(xstar, dt), stochastic_loss=stochastic,
                   name=f"least_squares(n={n}, m={m}, d={d}, l2={lam:g})",
                   config={"n": n, "m": m, "d": d, "l2": lam, "batch_size": bs})


def _logistic_newton(X: np.ndarray, s: np.ndarray, lam: float, tol: float = 1e-13,
                     max_iter: int = 100) -> np.ndarray:
    r"""Minimise :math:`\frac1N\sum_k \log(1 + e^{-s_k a_k^\top x}) + \frac\lambda2\|x\|^2`
    by Newton's method with Armijo backtracking (NumPy float64)."""
    N, d = X.shape

    def obj(x):
        return np.mean(np.logaddexp(0.0, -s * (X @ x))) + 0.5 * lam * x @ x

    x = np.zeros(d)
    for _ in range(max_iter):
        z = s * (X @ x)
        sig = 0.5 * (1.0 + np.tanh(-0.5 * z))        # sigma(-z), overflow-free
        g = -(X.T @ (s * sig)) / N + lam * x
        if np.linalg.norm(g) < tol:
            return x
        D = sig * (1.0 - sig)
        H = (X.T * D) @ X / N + lam * np.eye(d)
        step = np.linalg.solve(H, -g)
        t, f0, slope = 1.0, obj(x), g @ step
        while obj(x + t * step) > f0 + 1e-4 * t * slope and t > 1e-10:
            t *= 0.5
        x = x + t * step
    raise RuntimeError(f"logistic_regression: Newton's method did not reach |grad| < {tol} in {max_iter} iterations.")


def logistic_regression(X, y, l2: float, batch_size: int | None = None) -> Problem:
    r"""Distributed l2-regularised logistic regression.

    With labels :math:`s_{ij} \in \{-1, +1\}` (0/1 labels are mapped to -1/+1):

    .. math::

        f_i(x) = \frac1m \sum_{j=1}^m \log\bigl(1 + e^{-s_{ij} a_{ij}^\top x}\bigr)
        + \frac{\lambda}{2}\|x\|^2 .

    :math:`f` is :math:`\lambda`-strongly convex and
    :math:`(\|A\|_2^2/(4nm) + \lambda)`-smooth. The optimum is computed independently by
    Newton's method with backtracking in NumPy float64 to a gradient norm below ``1e-13``.
    The stochastic loss averages ``batch_size`` samples drawn uniformly with replacement.

    Parameters
    ----------
    X : array_like, shape (n, m, d)
        Agent ``i``'s features ``X[i]`` (append a column of ones for an intercept; see
        :func:`breast_cancer`).
    y : array_like, shape (n, m)
        Labels in {0, 1} or {-1, +1}.
    l2 : float > 0
        :math:`\lambda`; must be positive (separable data has no finite minimiser otherwise).
    batch_size : int, optional
        Default ``min(m, 8)``.

    References
    ----------
    S. Boyd and L. Vandenberghe, "Convex Optimization" (2004), Sections 9.5 (Newton's method)
    and 7.1.1 (logistic regression).
    """
    X_ = _as_array(X, "X", 3, "of shape (n, m, d): m samples per agent")
    y_ = _as_array(y, "y", 2, "of shape (n, m)")
    if y_.shape != X_.shape[:2]:
        raise ValueError(
            f"y must have shape X.shape[:2] = {X_.shape[:2]}; got {y_.shape}. Give one label per "
            "sample of X."
        )
    labels = set(np.unique(y_).tolist())
    if labels <= {0.0, 1.0}:
        s = 2.0 * y_ - 1.0
    elif labels <= {-1.0, 1.0}:
        s = y_
    else:
        raise ValueError(
            f"y must hold binary labels in {{0, 1}} or {{-1, +1}}; got values {sorted(labels)[:6]}."
        )
    lam = _check_nonneg(l2, "l2", "logistic_regression")
    if lam == 0:
        raise ValueError("l2 must be > 0 so that the minimiser exists and is unique; got 0. Use e.g. l2=1e-2.")
    n, m, d = X_.shape
    bs = _check_batch(min(m, 8) if batch_size is None else batch_size, m, "logistic_regression")
    xstar = _logistic_newton(X_.reshape(n * m, d), s.reshape(n * m), lam)
    dt = _dtype()

    def loss(x, data):
        a, t = data
        return jnp.mean(jnp.logaddexp(0.0, -t * (a @ x))) + 0.5 * lam * jnp.sum(x ** 2)

    def stochastic(x, data, key):
        a, t = data
        idx = jax.random.randint(key, (bs,), 0, a.shape[0])
        return loss(x, (a[idx], t[idx]))

    return Problem(loss, (jnp.asarray(X_, dt), jnp.asarray(s, dt)), jnp.zeros(d, dt),
                   optimum=jnp.asarray(xstar, dt), stochastic_loss=stochastic,
                   name=f"logistic_regression(n={n}, m={m}, d={d}, l2={lam:g})",
                   config={"n": n, "m": m, "d": d, "l2": lam, "batch_size": bs})


def split_dataset(X, y, n: int, method: str = "iid", alpha: float = 0.5, seed: int = 0):
    r"""Split a data set across ``n`` agents with equal shard sizes, deterministically.

    ``m = N // n`` samples per agent (the ``N - n m`` left-over samples are dropped).

    * ``"iid"``: a uniformly random permutation, cut into ``n`` consecutive shards.
    * ``"label_sorted"``: samples sorted by label (ties in random order), cut into ``n``
      consecutive shards, so most agents see one class (the pathological non-iid split of
      McMahan et al. 2017).
    * ``"dirichlet"``: agent ``i`` draws class proportions :math:`q_i \sim
      \mathrm{Dir}(\alpha \mathbf 1_C)` and ``m`` samples by class according to ``q_i``
      (multinomial counts), without replacement from the classes' remaining pools; when a
      class runs out, its share goes to the classes with samples left, proportionally to
      :math:`q_i`. Small :math:`\alpha` means more heterogeneous agents (Hsu et al. 2019).

    Parameters
    ----------
    X : array_like, shape (N, ...)
    y : array_like, shape (N,)
        Labels (any hashable values; classes are ``np.unique(y)``).
    n : int >= 1
        Number of agents, ``n <= N``.
    method : {"iid", "label_sorted", "dirichlet"}
    alpha : float > 0
        Dirichlet concentration (``method="dirichlet"`` only).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same split.

    Returns
    -------
    X_split : ndarray, shape (n, m, ...)
    y_split : ndarray, shape (n, m)

    References
    ----------
    H. B. McMahan et al., "Communication-efficient learning of deep networks from
    decentralized data", AISTATS 2017. T.-M. H. Hsu, H. Qi, M. Brown, "Measuring the effects
    of non-identical data distribution for federated visual classification",
    arXiv:1909.06335 (2019).
    """
    X_ = np.asarray(X)
    y_ = np.asarray(y)
    if X_.ndim < 1 or y_.ndim != 1 or X_.shape[0] != y_.shape[0]:
        raise ValueError(
            f"X must have shape (N, ...) and y shape (N,) with the same N; got X {X_.shape}, "
            f"y {y_.shape}."
        )
    n = check_positive_int(n, "n", where="split_dataset")
    N = y_.shape[0]
    if n > N:
        raise ValueError(
            f"split_dataset: n must be <= the number of samples ({N}); got n={n}. Use fewer agents."
        )
    method = check_choice(method, "method", ("iid", "label_sorted", "dirichlet"),
                          where="split_dataset")
    seed = check_seed(seed, where="split_dataset")
    if method == "dirichlet":
        alpha = check_positive_float(alpha, "alpha", where="split_dataset")
    rng = np.random.default_rng(seed)
    m = N // n
    if method == "iid":
        idx = rng.permutation(N)[: n * m].reshape(n, m)
    elif method == "label_sorted":
        perm = rng.permutation(N)
        order = perm[np.argsort(y_[perm], kind="stable")]
        idx = order[: n * m].reshape(n, m)
    else:
        classes = np.unique(y_)
        pools = [list(rng.permutation(np.flatnonzero(y_ == c))) for c in classes]
        idx = np.empty((n, m), dtype=np.int64)
        for i in range(n):
            q = rng.dirichlet(np.full(len(classes), float(alpha)))
            want = rng.multinomial(m, q)
            avail = np.array([len(p) for p in pools])
            take = np.minimum(want, avail)
            short = m - take.sum()
            while short > 0:  # hand the shortfall to classes with samples left, by q
                left = avail - take
                weights = np.where(left > 0, q + 1e-12, 0.0)
                extra = rng.multinomial(short, weights / weights.sum())
                extra = np.minimum(extra, left)
                take += extra
                short = m - take.sum()
            chosen = []
            for c, k in enumerate(take):
                chosen.extend(pools[c][:k])
                pools[c] = pools[c][k:]
            idx[i] = rng.permutation(np.asarray(chosen, dtype=np.int64))
    return X_[idx], y_[idx]


def breast_cancer(standardize: bool = True, intercept: bool = True):
    r"""scikit-learn's bundled Wisconsin breast-cancer data set (569 x 30, no download).

    Features are standardised to zero mean and unit variance (``standardize=True``) and a
    constant column of ones is appended (``intercept=True``, giving ``d = 31``). Labels are
    0 (malignant) / 1 (benign).

    Returns
    -------
    X : ndarray, shape (569, 30 or 31), float64
    y : ndarray, shape (569,), int64

    References
    ----------
    W. N. Street, W. H. Wolberg, O. L. Mangasarian, "Nuclear feature extraction for breast
    tumor diagnosis", IS&T/SPIE 1993; ``sklearn.datasets.load_breast_cancer``.
    """
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "breast_cancer() needs scikit-learn (bundled data, no download): "
            "pip install scikit-learn, or pip install -e .[dev]."
        ) from None
    data = load_breast_cancer()
    X = np.asarray(data.data, dtype=np.float64)
    if standardize:
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    if intercept:
        X = np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)
    return X, np.asarray(data.target, dtype=np.int64)
