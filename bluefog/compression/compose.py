r"""Composition and error feedback.

* :func:`chain` - ``chain(top_k(0.01), blockwise(8))`` sparsifies, then quantises the kept
  values: the payload keeps the first compressor's indices/key and replaces its ``values``
  by the second compressor's payload. It is unbiased when both are (independent keys).
* :func:`error_feedback` - the memory mechanism of 1-bit SGD / EF-SGD: with
  :math:`v_t = x_t + e_t`, send :math:`\hat v_t = \mathcal D(\mathcal C(v_t))` and keep
  :math:`e_{t+1} = v_t - \hat v_t`. Then :math:`\sum_{s<t}\hat v_s = \sum_{s<t} x_s - e_t`:
  nothing is lost, only delayed, which makes biased compressors converge.

References: Seide et al., "1-bit stochastic gradient descent", Interspeech 2014; Stich,
Cordonnier & Jaggi, NeurIPS 2018; Karimireddy et al., ICML 2019.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .base import Compressor, compress_tree, decompress_tree

__all__ = ["chain", "ErrorFeedback", "error_feedback"]


def chain(first: Compressor, second: Compressor) -> Compressor:
    """``second`` applied to the ``values`` that ``first`` sends (see the module docstring)."""
    for name, c in (("first", first), ("second", second)):
        if not isinstance(c, Compressor):
            raise TypeError(f"chain: {name} must be a bluefog.compression.Compressor (e.g. "
                            f"top_k(0.01)); got {type(c).__name__}.")

    def values_length(d, dtype):
        shapes = jax.eval_shape(first.compress, jax.ShapeDtypeStruct((d,), dtype),
                                jax.ShapeDtypeStruct((2,), jnp.uint32))
        if "values" not in shapes:
            raise ValueError(f"chain: the first compressor ({first.name}) must send 'values' "
                             f"for the second to compress; its payload has {sorted(shapes)}.")
        return shapes["values"].shape[0]

    def compress(x, key):
        k1, k2 = jax.random.split(key)
        values_length(x.shape[0], x.dtype)  # refuses a first stage without 'values'
        payload = dict(first.compress(x, k1))
        payload["values"] = second.compress(payload["values"], k2)
        return payload

    def decompress(payload, d, dtype):
        inner = dict(payload)
        inner["values"] = second.decompress(payload["values"], values_length(d, dtype), dtype)
        return first.decompress(inner, d, dtype)

    return Compressor(compress, decompress, first.unbiased and second.unbiased,
                      f"{first.name}>{second.name}", {"first": first.config,
                                                       "second": second.config})


class ErrorFeedback(NamedTuple):
    """Error feedback around a compressor (see :func:`error_feedback`).

    Attributes
    ----------
    init : callable ``params -> error`` (zeros shaped like ``params``)
    compress : callable ``(x, error, key) -> (payloads, x_hat, new_error)``
    compressor : Compressor
    """

    init: Callable
    compress: Callable
    compressor: Compressor


def error_feedback(compressor: Compressor) -> ErrorFeedback:
    r"""Wrap ``compressor`` with an error memory :math:`e` (pytree-valued):
    :math:`v = x + e`, :math:`\hat v = \mathcal D(\mathcal C(v))`, :math:`e^+ = v - \hat v`."""
    if not isinstance(compressor, Compressor):
        raise TypeError(f"error_feedback: compressor must be a bluefog.compression.Compressor; "
                        f"got {type(compressor).__name__}.")

    def init(params):
        return jax.tree_util.tree_map(jnp.zeros_like, params)

    def compress(x, error, key):
        v = jax.tree_util.tree_map(jnp.add, x, error)
        payloads = compress_tree(compressor, v, key)
        v_hat = decompress_tree(compressor, payloads, v)
        return payloads, v_hat, jax.tree_util.tree_map(jnp.subtract, v, v_hat)

    return ErrorFeedback(init, compress, compressor)
