r"""Spatial compression: send ``k`` of the ``d`` coordinates.

* :func:`top_k` keeps the ``k`` entries of largest magnitude (biased, contractive with
  :math:`\delta = k/d`: :math:`\|\mathrm{top}_k(x) - x\|^2 \le (1 - k/d)\|x\|^2`); the wire
  carries ``k`` values and ``k`` int32 indices.
* :func:`random_k` keeps ``k`` coordinates drawn uniformly without replacement; the wire
  carries ``k`` values and the 64-bit PRNG key (the receiver regenerates the indices), so an
  index costs nothing. Scaled by :math:`d/k` it is unbiased with
  :math:`\omega = d/k - 1`; unscaled it is contractive with :math:`\delta = k/d` in
  expectation.

``k = max(1, ceil(ratio * d))``. References: Stich, Cordonnier & Jaggi, "Sparsified SGD with
memory", NeurIPS 2018; Wangni et al., "Gradient sparsification for communication-efficient
distributed optimization", NeurIPS 2018.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..validation import check_bool, check_real
from .base import Compressor

__all__ = ["top_k", "random_k", "kept"]


def kept(ratio: float, d: int) -> int:
    """Number of coordinates kept out of ``d``: :math:`\\max(1, \\lceil r d \\rceil)`."""
    return max(1, min(int(d), math.ceil(ratio * int(d) - 1e-9)))


def _raw_key(key):
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key.astype(jnp.uint32)


def top_k(ratio: float) -> Compressor:
    r"""Keep the ``k = ceil(ratio d)`` largest-magnitude entries (ties: lowest index).

    .. math:: \mathcal C(x)_i = x_i\,\mathbb 1[i \in \operatorname{argtop}_k |x|]

    Parameters
    ----------
    ratio : float in (0, 1]
        Fraction of coordinates sent.
    """
    ratio = check_real(ratio, "ratio", low=0.0, high=1.0, low_open=True, where="top_k",
                       example="top_k(0.01)")

    def compress(x, key):
        k = kept(ratio, x.shape[0])
        _, idx = jax.lax.top_k(jnp.abs(x), k)
        return {"values": x[idx], "indices": idx.astype(jnp.int32)}

    def decompress(payload, d, dtype):
        return jnp.zeros((d,), dtype).at[payload["indices"]].set(payload["values"].astype(dtype))

    return Compressor(compress, decompress, False, f"top_k({ratio:g})", {"ratio": ratio})


def random_k(ratio: float, *, unbiased: bool = True) -> Compressor:
    r"""Keep ``k = ceil(ratio d)`` coordinates drawn uniformly without replacement.

    .. math:: \mathcal C(x)_i = c\, x_i\, \mathbb 1[i \in S_\xi],\qquad |S_\xi| = k,\quad
              c = d/k \text{ (unbiased) or } 1

    The payload holds the kept values and the PRNG key; the receiver redraws :math:`S_\xi`.

    Parameters
    ----------
    ratio : float in (0, 1]
    unbiased : bool
        Scale by ``d / k`` so that :math:`\mathbb E[\mathcal C(x)] = x`.
    """
    ratio = check_real(ratio, "ratio", low=0.0, high=1.0, low_open=True, where="random_k",
                       example="random_k(0.01)")
    unbiased = check_bool(unbiased, "unbiased", where="random_k")

    def indices(key, d):
        return jax.random.choice(key, d, (kept(ratio, d),), replace=False)

    def compress(x, key):
        key = _raw_key(key)
        d = x.shape[0]
        scale = d / kept(ratio, d) if unbiased else 1.0
        return {"values": x[indices(key, d)] * jnp.asarray(scale, x.dtype), "key": key}

    def decompress(payload, d, dtype):
        idx = indices(payload["key"], d)
        return jnp.zeros((d,), dtype).at[idx].set(payload["values"].astype(dtype))

    name = f"random_k({ratio:g}{'' if unbiased else ', unbiased=False'})"
    return Compressor(compress, decompress, unbiased, name,
                      {"ratio": ratio, "unbiased": unbiased})
