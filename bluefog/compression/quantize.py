r"""Byte compression: fewer bits per coordinate.

* :func:`cast` - send ``float16`` / ``bfloat16`` (2 bytes per entry, round to nearest).
* :func:`blockwise` - symmetric integer quantisation with one scale per block of ``block``
  entries, 8 or 4 bits (two 4-bit codes packed per byte):
  :math:`s_b = \max_{i \in b}|x_i| / L`, :math:`q_i = \mathrm{round}(x_i / s_b) \in [-L, L]`,
  :math:`L = 2^{\text{bits}-1} - 1`; with ``stochastic=True`` the rounding is
  :math:`\lfloor x_i/s_b + u_i \rfloor`, :math:`u_i \sim U[0,1)`, which is unbiased.
  Deterministic rounding errs by at most :math:`s_b/2` per entry.
* :func:`qsgd` - QSGD with ``s`` levels (Alistarh et al., NeurIPS 2017):
  :math:`Q_s(x)_i = \|x\|_2\,\mathrm{sign}(x_i)\,\xi_i(x, s)/s` with
  :math:`\xi_i = \lfloor s|x_i|/\|x\|_2 + u_i \rfloor`; unbiased, with
  :math:`\mathbb E\|Q_s(x) - x\|^2 \le \min(d/s^2, \sqrt d/s)\,\|x\|^2` (their Lemma 3.1).
* :func:`scaled_sign` - :math:`\frac{\|x\|_1}{d}\mathrm{sign}(x)`, one bit per entry
  (Karimireddy et al., "Error feedback fixes SignSGD", ICML 2019): contractive with
  :math:`\delta = \|x\|_1^2 / (d \|x\|_2^2)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..validation import check_bool, check_choice, check_positive_int
from .base import Compressor

__all__ = ["cast", "blockwise", "qsgd", "scaled_sign"]

_CASTS = {"float16": jnp.float16, "bfloat16": jnp.bfloat16}


def cast(dtype: str = "bfloat16") -> Compressor:
    """Send each entry as ``float16`` or ``bfloat16`` (round to nearest; biased, 2 bytes)."""
    dtype = check_choice(dtype, "dtype", tuple(_CASTS), where="cast")
    wire = _CASTS[dtype]

    def compress(x, key):
        return {"values": x.astype(wire)}

    def decompress(payload, d, out_dtype):
        return payload["values"].astype(out_dtype)

    return Compressor(compress, decompress, False, f"cast({dtype})", {"dtype": dtype})


def _pad(x, block: int):
    d = x.shape[0]
    pad = (-d) % block
    return jnp.pad(x, (0, pad)).reshape(-1, block)


def blockwise(bits: int = 8, block: int = 256, *, stochastic: bool = False) -> Compressor:
    r"""Symmetric ``bits``-bit integer quantisation with one float32 scale per ``block``.

    Parameters
    ----------
    bits : {8, 4}
    block : int
        Entries per scale (even for 4 bits); wire cost ``bits + 32/block`` bits per entry.
    stochastic : bool
        Unbiased stochastic rounding instead of round-to-nearest.
    """
    bits = check_choice(bits, "bits", (8, 4), where="blockwise")
    block = check_positive_int(block, "block", minimum=2, where="blockwise")
    stochastic = check_bool(stochastic, "stochastic", where="blockwise")
    if bits == 4 and block % 2:
        raise ValueError(f"blockwise: block must be even for 4-bit codes (two per byte); got "
                         f"block={block}. Use block={block + 1}.")
    levels = 2 ** (bits - 1) - 1

    def compress(x, key):
        xb = _pad(x.astype(jnp.float32), block)
        scale = jnp.max(jnp.abs(xb), axis=1) / levels
        safe = jnp.where(scale > 0, scale, 1.0)[:, None]
        y = xb / safe
        if stochastic:
            y = jnp.floor(y + jax.random.uniform(key, y.shape))
        else:
            y = jnp.round(y)
        q = jnp.clip(y, -levels, levels).astype(jnp.int8).reshape(-1)
        if bits == 4:
            u = (q + levels).astype(jnp.uint8).reshape(-1, 2)
            q = u[:, 0] | (u[:, 1] << 4)
        return {"codes": q, "scales": scale}

    def decompress(payload, d, dtype):
        q = payload["codes"]
        if bits == 4:
            q = jnp.stack([q & 0xF, q >> 4], axis=1).reshape(-1).astype(jnp.int32) - levels
        y = q.astype(jnp.float32).reshape(-1, block) * payload["scales"][:, None]
        return y.reshape(-1)[:d].astype(dtype)

    name = f"blockwise({bits} bits, block={block}{', stochastic' if stochastic else ''})"
    return Compressor(compress, decompress, stochastic, name,
                      {"bits": bits, "block": block, "stochastic": stochastic})


def qsgd(levels: int = 16) -> Compressor:
    r"""QSGD with ``levels`` = :math:`s` quantisation levels (1 <= s <= 127), unbiased.

    The wire carries :math:`\|x\|_2` (float32) and one signed int8 level per entry.
    """
    s = check_positive_int(levels, "levels", maximum=127, where="qsgd",
                           why_max="levels travel as int8")

    def compress(x, key):
        xf = x.astype(jnp.float32)
        norm = jnp.linalg.norm(xf)
        safe = jnp.where(norm > 0, norm, 1.0)
        xi = jnp.floor(s * jnp.abs(xf) / safe + jax.random.uniform(key, xf.shape))
        return {"norm": norm.reshape(1), "levels": (jnp.sign(xf) * xi).astype(jnp.int8)}

    def decompress(payload, d, dtype):
        return (payload["norm"][0] * payload["levels"].astype(jnp.float32) / s).astype(dtype)

    return Compressor(compress, decompress, True, f"qsgd({s})", {"levels": s})


def scaled_sign() -> Compressor:
    r""":math:`\mathcal C(x) = \frac{\|x\|_1}{d}\,\mathrm{sign}(x)`: one bit per entry plus
    one float32 scale (biased, contractive; pair it with error feedback)."""

    def compress(x, key):
        xf = x.astype(jnp.float32)
        return {"scale": (jnp.sum(jnp.abs(xf)) / xf.shape[0]).reshape(1),
                "signs": jnp.packbits(xf >= 0)}

    def decompress(payload, d, dtype):
        signs = jnp.unpackbits(payload["signs"])[:d].astype(jnp.float32) * 2 - 1
        return (payload["scale"][0] * signs).astype(dtype)

    return Compressor(compress, decompress, False, "scaled_sign()", {})
