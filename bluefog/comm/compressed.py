r"""Compressed neighbor averaging: the payload, not the dense tensor, crosses the wire.

With a compressor :math:`\mathcal C` and decompressor :math:`\mathcal D`
(:mod:`bluefog.compression`), agent ``i`` compresses its value once with its own key
:math:`\xi_i` and every agent reconstructs the same :math:`\hat x_j = \mathcal D(\mathcal
C(x_j, \xi_j))`:

.. math:: x_i^{+} = W_{ii}\,\hat x_i + \sum_r W_{i\sigma_r(i)}\, \hat x_{\sigma_r(i)}.

Each schedule round exchanges the payload arrays (values, int32 indices, int8 codes, packed
bits, scales, keys) through the backend's ``_exchange`` primitive, so under MPI every
``sendrecv`` carries exactly :func:`bluefog.compression.payload_bits` bits per leaf (packed
by dtype), and the simulator applies the same arithmetic. Because the sender's own term uses
the decompressed value too, an algorithm that tracks :math:`\hat x_i` locally (CHOCO) can
recompute it with :func:`bluefog.compression.roundtrip` and the same key.
"""

from __future__ import annotations

import jax

from ..compression import Compressor, compress_tree, decompress_tree
from ..topology.schedule import Schedule

__all__ = ["compressed_mix", "check_compression_args"]


def check_compression_args(compressor, key, op: str) -> None:
    """Refuse a non-compressor, or a compressor without a key, with the fix."""
    if not isinstance(compressor, Compressor):
        raise TypeError(
            f"{op}: compressor must be a bluefog.compression.Compressor (e.g. top_k(0.01)); "
            f"got {type(compressor).__name__}.")
    if key is None:
        raise TypeError(
            f"{op}: a compressor needs this agent's PRNG key for random sparsification and "
            f"stochastic rounding; pass key=jax.random.fold_in(ctx.key, state.count).")


def compressed_mix(comm, x, schedule: Schedule, compressor: Compressor, key) -> list:
    """This agent's :math:`\\sum_j W_{ij}\\hat x_j` with payloads exchanged round by round.

    ``comm`` is a :class:`~bluefog.comm.ScheduleCommunicator`; ``x`` a pytree of floating
    arrays. Returns the leaves of the result (``jax.tree_util`` order).
    """
    payloads = compress_tree(compressor, x, key)
    wire, wire_def = jax.tree_util.tree_flatten(payloads)
    own = jax.tree_util.tree_leaves(decompress_tree(compressor, payloads, x))
    out = [comm._table(schedule.self_weights, leaf.dtype) * leaf for leaf in own]
    for rnd in schedule.rounds:
        received = jax.tree_util.tree_unflatten(wire_def, comm._exchange(wire, rnd))
        values = jax.tree_util.tree_leaves(decompress_tree(compressor, received, x))
        out = [acc + comm._table(rnd.weights, acc.dtype) * v for acc, v in zip(out, values)]
    return out
