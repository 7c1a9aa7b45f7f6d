"""Flatten a pytree of floating-point arrays: the one input check shared by every op."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["float_leaves"]


def float_leaves(x, op: str):
    """Return ``(leaves, treedef)`` of ``x``, every leaf a floating-point ``jax.Array``.

    Mixing takes convex (or at least real-weighted) combinations, so integer leaves are
    refused rather than silently truncated.

    Parameters
    ----------
    x : pytree of array-likes
    op : str
        Name of the calling op, used as the prefix of error messages.

    Raises
    ------
    ValueError
        ``x`` has no leaves.
    TypeError
        A leaf is not of an inexact (floating or complex) dtype.
    """
    leaves, treedef = jax.tree_util.tree_flatten(x)
    if not leaves:
        raise ValueError(f"{op}: x must contain at least one array; got an empty pytree {x!r}.")
    out = []
    for leaf in leaves:
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            raise TypeError(
                f"{op}: every leaf of x must be a floating-point array (mixing takes convex "
                f"combinations); got dtype {leaf.dtype}. Cast with x.astype(jnp.float32)."
            )
        out.append(leaf)
    return out, treedef
