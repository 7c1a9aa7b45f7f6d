r"""Wire format of :class:`bluefog_dist.MpiComm`: pack a pytree into one buffer per dtype.

All leaves of one dtype are flattened and concatenated into one contiguous buffer, so a
pytree costs one MPI message per dtype (per round), not one per leaf. Dtypes mpi4jax has no
MPI type for (float16, bfloat16) travel bit-cast to the unsigned integer of the same width
for copies (exact), and as float32 inside reductions (rounded back once, after the sum).

For leaves :math:`x_1, \dots, x_m` of one dtype, the buffer is
:math:`\mathrm{concat}(\mathrm{vec}(x_1), \dots, \mathrm{vec}(x_m))` and :func:`unpack`
slices it back at the offsets :math:`\sum_{k<l} |x_k|`.

Reference: mpi4jax's supported dtypes (``MPI_TYPE_MAP``), D. Hafner, F. Vicentini,
"mpi4jax: Zero-copy MPI communication of JAX arrays", JOSS 6(65), 3419 (2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NATIVE_DTYPES", "to_wire", "from_wire", "pack", "unpack", "nbytes"]

#: dtypes mpi4jax can send natively (its ``MPI_TYPE_MAP``)
NATIVE_DTYPES = frozenset({
    "float32", "float64", "complex64", "complex128", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool"})
_BITS = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}


def to_wire(buf, reduce: bool):
    """A buffer mpi4jax can carry.

    Native dtypes pass unchanged. Others travel bit-cast to the unsigned integer of the same
    width for copies (``reduce=False``; exact), and as float32 for reductions
    (``reduce=True``; the sum is then rounded back once by :func:`from_wire`).
    """
    name = jnp.dtype(buf.dtype).name
    if name in NATIVE_DTYPES:
        return buf
    if reduce:
        return buf.astype(jnp.float32)
    return jax.lax.bitcast_convert_type(buf, _BITS[jnp.dtype(buf.dtype).itemsize])


def from_wire(buf, dtype):
    """Inverse of :func:`to_wire`: bit-cast unsigned integers back, or round float32 to
    ``dtype``."""
    if buf.dtype == dtype:
        return buf
    if jnp.issubdtype(buf.dtype, jnp.unsignedinteger):
        return jax.lax.bitcast_convert_type(buf, dtype)
    return buf.astype(dtype)


def pack(leaves, reduce: bool = False):
    """Group leaves by dtype: ``[(dtype, indices, flat_wire_buffer)]``, one buffer per dtype.

    Parameters
    ----------
    leaves : list of jax.Array
    reduce : bool
        Whether the buffers feed a reduction (see :func:`to_wire`).
    """
    groups: dict = {}
    for idx, leaf in enumerate(leaves):
        groups.setdefault(jnp.dtype(leaf.dtype), []).append(idx)
    packed = []
    for dtype, idxs in groups.items():
        if len(idxs) == 1:
            buf = jnp.reshape(leaves[idxs[0]], (-1,))
        else:
            buf = jnp.concatenate([jnp.reshape(leaves[i], (-1,)) for i in idxs])
        packed.append((dtype, idxs, to_wire(buf, reduce)))
    return packed


def unpack(leaves, packed_out, lead=()):
    """Inverse of :func:`pack` for received buffers of shape ``lead + (total,)``.

    Parameters
    ----------
    leaves : list of jax.Array
        The leaves that were packed (only their shapes are used).
    packed_out : list of ``((dtype, indices, sent_buffer), received_buffer)``
    lead : tuple of int
        Leading axes the op added (``(size,)`` for an allgather).
    """
    out = [None] * len(leaves)
    for (dtype, idxs, _), buf in packed_out:
        buf = from_wire(buf, dtype)
        offset = 0
        for i in idxs:
            shape, size = leaves[i].shape, int(np.prod(leaves[i].shape, dtype=np.int64))
            piece = buf[..., offset:offset + size] if len(idxs) > 1 else buf
            out[i] = jnp.reshape(piece, tuple(lead) + tuple(shape))
            offset += size
    return out


def nbytes(buf) -> int:
    """Size of ``buf`` in bytes: :math:`\\prod(\\text{shape}) \\times` itemsize."""
    return int(np.prod(buf.shape, dtype=np.int64)) * jnp.dtype(buf.dtype).itemsize
