"""The workload of the side-by-side comparison: decentralized gradient descent (DGD) on
l2-regularised logistic regression, written once per agent and used by every backend.

Agent ``i`` holds ``A_i`` (``m x dim``), labels ``y_i`` in {-1, +1}; one DGD step
(Nedic & Ozdaglar 2009) is

.. math:: x_i^{+} = \\sum_j W_{ij} x_j - \\eta \\nabla f_i(x_i),\\qquad
          f_i(x) = \\frac1m \\sum_k \\log(1 + e^{-y_{ik} a_{ik}^\\top x}) + \\frac\\lambda2 \\|x\\|^2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

M, DIM, LR, LAM = 200, 1000, 0.1, 1e-3


def data(n: int, seed: int = 0, m: int = M, dim: int = DIM):
    """Stacked agent data ``(A, y)`` of shapes ``(n, m, dim)`` and ``(n, m)``, float32."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, m, dim)).astype(np.float32) / np.float32(np.sqrt(dim))
    w = rng.standard_normal(dim).astype(np.float32)
    y = np.sign(A @ w + 0.1 * rng.standard_normal((n, m)).astype(np.float32))
    return A, y.astype(np.float32)


def loss(x, A, y):
    return jnp.mean(jnp.logaddexp(0.0, -y * (A @ x))) + 0.5 * LAM * jnp.sum(x * x)


grad = jax.grad(loss)


def dgd_step(x, A, y, mix):
    """One DGD step for one agent; ``mix`` is the neighbor average (identity for the
    no-communication limit)."""
    return mix(x) - LR * grad(x, A, y)


def numpy_grads(X, A, y):
    """All agents' gradients at once in NumPy (the dense baseline), ``X`` of shape (n, dim)."""
    # batched matmul (BLAS gemv per agent), not einsum: np.einsum does not call BLAS for
    # these contractions and was 1.25x slower (a baseline must be the best plain NumPy)
    z = np.matmul(A, X[:, :, None])[:, :, 0]
    s = -y / (1.0 + np.exp(y * z))  # d/dz log(1 + exp(-y z))
    return np.matmul(s[:, None, :], A)[:, 0, :] / np.float32(A.shape[1]) + np.float32(LAM) * X
