r"""Compressors from short text specifications (command lines, configs).

Grammar: stages joined by ``+`` (:func:`~bluefog.compression.chain`), each ``name`` or
``name:arg``:

==================  ===========================================================
``topk:R``          :func:`~bluefog.compression.top_k` with ratio ``R`` (0.01)
``randomk:R``       :func:`~bluefog.compression.random_k` (unbiased) with ratio ``R``
``int8[:B]``        :func:`~bluefog.compression.blockwise` 8 bits, block ``B`` (256)
``int4[:B]``        :func:`~bluefog.compression.blockwise` 4 bits, block ``B`` (256)
``qsgd[:S]``        :func:`~bluefog.compression.qsgd` with ``S`` levels (16)
``sign``            :func:`~bluefog.compression.scaled_sign`
``bf16`` / ``fp16``  :func:`~bluefog.compression.cast`
==================  ===========================================================

Example: ``parse("topk:0.01+int8")`` sends 1% of the coordinates with 8-bit values.
"""

from __future__ import annotations

from .base import Compressor
from .compose import chain
from .quantize import blockwise, cast, qsgd, scaled_sign
from .sparsify import random_k, top_k

__all__ = ["parse", "SPEC_NAMES"]

#: Stage names accepted by :func:`parse`.
SPEC_NAMES = ("topk", "randomk", "int8", "int4", "qsgd", "sign", "bf16", "fp16")


def _number(text: str, stage: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"parse: the argument of {stage!r} must be a{'n integer' if kind is int else ' number'}; "
                         f"got {text!r}. Example: topk:0.01, int8:256, qsgd:16.") from None


def _stage(text: str) -> Compressor:
    name, _, arg = text.strip().partition(":")
    if name not in SPEC_NAMES:
        raise ValueError(f"parse: unknown compressor {name!r} in {text!r}; expected one of "
                         f"{', '.join(SPEC_NAMES)} (e.g. 'topk:0.01+int8').")
    needs = {"topk": "ratio", "randomk": "ratio"}
    if name in needs and not arg:
        raise ValueError(f"parse: {name!r} needs its {needs[name]}, e.g. '{name}:0.01'.")
    if name in ("sign", "bf16", "fp16") and arg:
        raise ValueError(f"parse: {name!r} takes no argument; got {text!r}.")
    if name == "topk":
        return top_k(_number(arg, text, float))
    if name == "randomk":
        return random_k(_number(arg, text, float))
    if name in ("int8", "int4"):
        block = _number(arg, text, int) if arg else 256
        return blockwise(8 if name == "int8" else 4, block)
    if name == "qsgd":
        return qsgd(_number(arg, text, int) if arg else 16)
    if name == "sign":
        return scaled_sign()
    return cast("bfloat16" if name == "bf16" else "float16")


def parse(spec: str) -> Compressor:
    """The compressor described by ``spec`` (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"parse: spec must be a non-empty str such as 'topk:0.01'; got {spec!r}.")
    stages = [_stage(s) for s in spec.split("+")]
    out = stages[0]
    for nxt in stages[1:]:
        out = chain(out, nxt)
    return out
