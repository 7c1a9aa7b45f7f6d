"""How a run of ``steps`` steps is cut into compiled dispatches.

The plan depends only on ``(steps, record_every, segment_every)``: never on the progress
display, the rank or the machine, so every MPI rank executes the same sequence of compiled
programs. A dispatch is ``(records, chunk_steps)``: one call of the compiled program that
runs ``records`` chunks of ``chunk_steps`` steps and records metrics after each chunk.
At most three distinct shapes occur (the regular dispatch, a shorter one at the end of a
segment, and one partial chunk when ``record_every`` does not divide ``steps``), so a run
compiles at most three programs however many segments (checkpoints) it has.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["Dispatch", "plan_run", "TARGET_DISPATCHES"]

#: About this many dispatches per segment: frequent enough for a live progress bar, few
#: enough that the per-dispatch host cost (~0.3 ms under MPI) is negligible.
TARGET_DISPATCHES = 20


class Dispatch(NamedTuple):
    """One compiled call: ``records`` chunks of ``chunk_steps`` steps; ``segment_end`` is
    True when a segment (checkpoint) boundary follows it."""

    records: int
    chunk_steps: int
    segment_end: bool


def _split(records: int) -> list[int]:
    """``records`` as about TARGET_DISPATCHES equal parts, preferring an exact divisor."""
    if records <= 0:
        return []
    target = max(1, math.ceil(records / TARGET_DISPATCHES))
    for d in range(target, min(records, 2 * target) + 1):
        if records % d == 0:
            return [d] * (records // d)
    full, rest = divmod(records, target)
    return [target] * full + ([rest] if rest else [])


def plan_run(steps: int, record_every: int, segment_every: int | None) -> list[Dispatch]:
    """The dispatches of a run (inputs already validated).

    Segments of ``segment_every`` steps (a multiple of ``record_every``) are cut identically,
    so all full segments reuse one program; the last segment may be shorter.
    """
    seg = segment_every or steps
    plan: list[Dispatch] = []
    done = 0
    while done < steps:
        length = min(seg, steps - done)
        records, tail = divmod(length, record_every)
        parts = _split(records)
        for k, r in enumerate(parts):
            plan.append(Dispatch(r, record_every, segment_end=(k == len(parts) - 1 and not tail)))
        if tail:
            plan.append(Dispatch(1, tail, segment_end=True))
        done += length
    return plan
