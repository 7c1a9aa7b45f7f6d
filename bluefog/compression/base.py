r"""The compressor object: pure, jit-able, composable.

A :class:`Compressor` maps a 1-D array :math:`x \in \mathbb R^d` to a *payload* (a dict of
arrays with static shapes: what travels on the wire) and back:

.. math:: \hat x = \mathcal D(\mathcal C(x, \xi)),

where :math:`\xi` is a PRNG key (random sparsification, stochastic rounding). Shapes of the
payload depend only on ``d`` and the dtype, never on the values, so a payload can be sent by
``lax.ppermute`` or ``mpi4jax.sendrecv`` inside ``jit``. Two classes matter for the theory:

* **unbiased**: :math:`\mathbb E_\xi[\hat x] = x` with :math:`\mathbb E\|\hat x - x\|^2
  \le \omega \|x\|^2` (random-k scaled by d/k, QSGD, stochastic rounding);
* **contractive** (biased): :math:`\|\hat x - x\|^2 \le (1 - \delta)\|x\|^2` for some
  :math:`\delta \in (0, 1]` (top-k with :math:`\delta = k/d`, scaled sign).

References: Koloskova, Stich & Jaggi, "Decentralized stochastic optimization and gossip
algorithms with compressed communication", ICML 2019 (Definition 1); Stich, Cordonnier &
Jaggi, "Sparsified SGD with memory", NeurIPS 2018.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Compressor", "payload_bits", "compress_tree", "decompress_tree", "roundtrip"]


class Compressor(NamedTuple):
    """A compression operator on 1-D arrays.

    Attributes
    ----------
    compress : callable ``(x, key) -> payload``
        ``x`` is a 1-D floating array; ``payload`` a dict of arrays whose shapes and dtypes
        depend only on ``x.shape`` and ``x.dtype``.
    decompress : callable ``(payload, d, dtype) -> x_hat``
        The 1-D estimate of ``x`` (length ``d``, dtype ``dtype``).
    unbiased : bool
        Whether :math:`\\mathbb E[\\hat x] = x` (see the module docstring).
    name : str
    config : dict
        Hyper-parameters (logs, the MPI start-up agreement).
    """

    compress: Callable
    decompress: Callable
    unbiased: bool
    name: str
    config: dict


def payload_bits(compressor: Compressor, d: int, dtype=jnp.float32) -> int:
    """Bits the payload of one ``d``-vector occupies on the wire (from its static shapes).

    Computed with ``jax.eval_shape``, so it counts exactly what a backend sends: the sum
    over payload arrays of ``size * itemsize * 8``.
    """
    shapes = jax.eval_shape(compressor.compress, jax.ShapeDtypeStruct((int(d),), dtype),
                            jax.ShapeDtypeStruct((2,), jnp.uint32))
    return int(sum(int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize * 8
                   for s in jax.tree_util.tree_leaves(shapes)))


def _leaf_keys(key, n: int):
    return [key] if n == 1 else list(jax.random.split(key, n))


def compress_tree(compressor: Compressor, tree, key) -> list:
    """Compress every leaf of ``tree`` (flattened to 1-D) with its own key; returns the list
    of payloads in ``jax.tree_util`` leaf order. A non-floating leaf raises ``TypeError``."""
    leaves = jax.tree_util.tree_leaves(tree)
    for leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{compressor.name}: compressors take floating-point arrays (their payloads "
                f"approximate real values); got a leaf of dtype {dtype}. Cast it with "
                f"x.astype(jnp.float32), or send integer data uncompressed.")
    keys = _leaf_keys(key, len(leaves))
    return [compressor.compress(jnp.ravel(leaf), k) for leaf, k in zip(leaves, keys)]


def decompress_tree(compressor: Compressor, payloads: list, like):
    """Inverse of :func:`compress_tree`: a pytree shaped like ``like``."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out = [jnp.reshape(compressor.decompress(p, int(np.prod(jnp.shape(leaf), dtype=np.int64)),
                                             jnp.asarray(leaf).dtype), jnp.shape(leaf))
           for p, leaf in zip(payloads, leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


def roundtrip(compressor: Compressor, tree, key):
    r""":math:`\mathcal D(\mathcal C(x))` leaf by leaf: what a receiver reconstructs."""
    return decompress_tree(compressor, compress_tree(compressor, tree, key), tree)
