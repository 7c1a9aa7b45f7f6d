"""Communication compression: pure, jit-able compressors written once for both backends.

Spatial (:func:`top_k`, :func:`random_k`), byte (:func:`cast`, :func:`blockwise`,
:func:`qsgd`, :func:`scaled_sign`), composition (:func:`chain`) and error feedback
(:func:`error_feedback`), and :func:`parse` for text specifications (``"topk:0.01+int8"``). A :class:`Compressor` maps a 1-D array to a payload of arrays with
static shapes (what travels on the wire) and back; :func:`payload_bits` counts its bits.
"""

from .base import Compressor, compress_tree, decompress_tree, payload_bits, roundtrip
from .compose import ErrorFeedback, chain, error_feedback
from .quantize import blockwise, cast, qsgd, scaled_sign
from .sparsify import random_k, top_k
from .spec import SPEC_NAMES, parse

__all__ = ["Compressor", "payload_bits", "compress_tree", "decompress_tree", "roundtrip",
           "top_k", "random_k", "cast", "blockwise", "qsgd", "scaled_sign", "chain",
           "ErrorFeedback", "error_feedback", "parse", "SPEC_NAMES"]
