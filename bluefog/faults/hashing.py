r"""A counter-based hash, bit-identical in NumPy and in traced JAX.

Every random fault is a pure function of integers: ``draw(seed, salt, t, a, b)`` chains the
32-bit "lowbias32" finalizer (the same one :class:`bluefog.topology.DynamicTopology` uses for
its non-periodic pattern draw) over its arguments,

.. math:: h_0 = \mathrm{mix}(\text{seed} \oplus \text{salt}), \qquad
          h_{m+1} = \mathrm{mix}\bigl(h_m + c_m \cdot \mathtt{0x9E3779B9}\bigr),

with :math:`c = (t, a, b)` and all arithmetic modulo :math:`2^{32}`. An event of probability
:math:`p` happens when :math:`h < \lfloor p\, 2^{32} \rfloor` (an integer comparison, so NumPy and
XLA agree bit for bit, and the simulator and every MPI rank compute the same mask without
communicating). Nothing is stored per step: the mask is recomputed from the counters inside
the compiled loop, so the program does not depend on the number of steps or patterns.

Reference: C. Wellons, "Prospecting for hash functions" (2018), the lowbias32 finalizer;
J. Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011 (counter-based RNGs).
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw", "threshold"]

_GOLDEN = 0x9E3779B9


def _mix(x, xp):
    x = x ^ (x >> xp.uint32(16))
    x = x * xp.uint32(0x7FEB352D)
    x = x ^ (x >> xp.uint32(15))
    x = x * xp.uint32(0x846CA68B)
    return x ^ (x >> xp.uint32(16))


def draw(seed, salt: int, *counters, xp=np):
    """32-bit hash of ``(seed, salt, *counters)`` as ``xp.uint32`` (``xp`` is ``numpy`` or
    ``jax.numpy``; the seed and the counters may be ints, uint32 arrays or tracers (a traced
    seed makes the seed an input of a compiled program), broadcast together)."""
    if isinstance(seed, (int, np.integer)):
        seed = np.uint32(int(seed) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        h = _mix(xp.asarray(seed).astype(xp.uint32) ^ xp.uint32(int(salt) & 0xFFFFFFFF), xp)
        for c in counters:
            c = xp.asarray(c).astype(xp.uint32)
            h = _mix(h + c * xp.uint32(_GOLDEN), xp)
    return h


def threshold(p: float) -> int:
    r""":math:`\lfloor p\, 2^{32} \rfloor`, clipped to ``2**32 - 1``: ``draw(...) < threshold(p)``
    has probability :math:`p` up to :math:`2^{-32}`."""
    return min(int(np.floor(float(p) * 2.0**32)), 2**32 - 1)
