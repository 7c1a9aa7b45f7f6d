"""The loop driver shared by both backends: many steps per dispatch, metrics inside the scan.

DESIGN.md ("jit the whole loop"): one jitted call per step costs ~40x a raw MPI exchange at
1 KiB, so a run is executed as a few *dispatches*, each a compiled ``lax.scan`` over
``records`` chunks of ``record_every`` steps, with the metrics of each chunk computed inside
the scan. The backend supplies ``compile_segment(records, chunk_steps)``, returning a callable
``state -> (state, metrics)`` whose metric arrays have shape ``(records,)`` (already reduced
to one value per record), and ``initial_metrics(state)``.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax import lax

from .topology.validation import check_positive_int

__all__ = ["RunResult", "make_segment", "drive", "plan_dispatches"]


class RunResult(NamedTuple):
    """What ``bluefog_sim.run`` / ``bluefog_dist.run`` return.

    Attributes
    ----------
    params : pytree
        Final estimates: stacked ``(n, ...)`` in the simulator, this rank's agent under MPI.
    history : dict of numpy arrays
        ``"step"`` plus one array per metric (:mod:`bluefog.metrics`), one entry per record,
        the first at step 0.
    state : pytree
        Final algorithm state (stacked in the simulator).
    compile_seconds : float
    run_seconds : float
        Wall time of the dispatches, excluding compilation.
    """

    params: Any
    history: dict
    state: Any
    compile_seconds: float
    run_seconds: float


def make_segment(algorithm, metrics_fn: Callable, chunk_steps: int, records: int) -> Callable:
    """Per-agent function ``(state, ctx) -> (state, metrics)`` running ``records`` chunks of
    ``chunk_steps`` steps each, the metrics of every chunk stacked along a leading axis."""

    def chunk(state, ctx):
        state = lax.fori_loop(0, chunk_steps, lambda _, s: algorithm.step(s, ctx), state)
        return state, metrics_fn(algorithm.params(state), ctx)

    def segment(state, ctx):
        return lax.scan(lambda s, _: chunk(s, ctx), state, None, length=records)

    return segment


def plan_dispatches(total_records: int, want_progress: bool) -> list[int]:
    """Split ``total_records`` into dispatch sizes.

    Without progress: one dispatch. With progress: about 10-20 equal dispatches, choosing a
    divisor of ``total_records`` when one is close, so that one compiled program serves all.
    """
    if total_records <= 0:
        return []
    if not want_progress or total_records <= 10:
        return [total_records]
    target = math.ceil(total_records / 20)
    divisors = [d for d in range(target, min(total_records, 2 * target) + 1) if total_records % d == 0]
    if divisors:
        d = divisors[0]
        return [d] * (total_records // d)
    full, rest = divmod(total_records, target)
    return [target] * full + ([rest] if rest else [])


def _progress_enabled(progress) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (auto: on for a terminal); got {progress!r}.")
    return progress


def drive(state, *, steps: int, record_every: int, compile_segment: Callable,
          initial_metrics: Callable, progress=None, desc: str = "bluefog",
          show: bool = True) -> tuple[Any, dict, float, float]:
    """Run ``steps`` steps, recording metrics every ``record_every`` steps.

    Returns ``(state, history, compile_seconds, run_seconds)``. ``show=False`` suppresses the
    progress bar (non-zero MPI ranks).
    """
    steps = check_positive_int(steps, "steps")
    record_every = check_positive_int(record_every, "record_every")
    if record_every > steps:
        raise ValueError(
            f"record_every must be <= steps; got record_every={record_every}, steps={steps}. "
            f"Use record_every={steps} to record only the final step."
        )
    want = _progress_enabled(progress) and show
    total, tail = divmod(steps, record_every)
    plan = [(n, record_every) for n in plan_dispatches(total, want)]
    if tail:
        plan.append((1, tail))

    history = {k: [np.asarray(v)] for k, v in initial_metrics(state).items()}
    history["step"] = [np.zeros(1, dtype=np.int64)]
    compiled: dict = {}
    compile_seconds = 0.0
    run_seconds = 0.0
    done = 0
    bar = None
    if want:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True)
    try:
        for records, chunk_steps in plan:
            key = (records, chunk_steps)
            if key not in compiled:
                t0 = time.perf_counter()
                compiled[key] = compile_segment(records, chunk_steps, state)
                compile_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            state, metrics = compiled[key](state)
            metrics = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(metrics))
            run_seconds += time.perf_counter() - t0
            for k, v in metrics.items():
                history[k].append(np.asarray(v).reshape(records))
            history["step"].append(done + chunk_steps * np.arange(1, records + 1, dtype=np.int64))
            done += records * chunk_steps
            if bar is not None:
                bar.update(records * chunk_steps)
                post = {}
                for name in ("relative_error", "loss", "test_accuracy", "consensus_distance"):
                    if name in metrics:
                        post[name] = f"{float(np.asarray(metrics[name]).reshape(-1)[-1]):.3e}"
                bar.set_postfix(post, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    history = {k: np.concatenate(v) for k, v in history.items()}
    return state, history, compile_seconds, run_seconds
