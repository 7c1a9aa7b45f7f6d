r"""The ``bluefog-train`` run: one call of the backend's ``run``, checkpoints at its segments.

:func:`train` validates the configuration (:mod:`bluefog_train.config`), checks every output
location on every rank (:mod:`bluefog_train.paths`), builds the experiment
(:mod:`bluefog_train.experiment`) and calls ``bluefog_sim.run`` / ``bluefog_dist.run``
**once** for the whole run: with ``--checkpoint-every c`` the engine calls back after every
``c`` steps with the same compiled program (compile once per run), and all agents' states
are saved atomically (:mod:`bluefog_train.checkpoint`). ``--resume`` continues from the
newest checkpoint that validates (skipping, and naming, those that do not) and, in the
simulator, reproduces the uninterrupted run bit for bit.

Nothing is lost and nothing is silent: a fresh run never replaces another run's
checkpoints (``--overwrite`` allows it), a run deletes only checkpoints it wrote and never
the newest finite one; a diverging run stops at the first non-finite record with the
engine's :class:`bluefog.engine.NonFiniteError` (``--allow-nonfinite`` records NaN and goes
on); SIGTERM, SIGHUP or SIGINT stop the run after the next checkpoint (a second signal ends
it at once; checkpoints are atomic either way).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from . import checkpoint as ckpt
from . import store
from .backends import make_backend
from .config import resume_key
from .streaming import streaming
from .experiment import make_experiment
from .startup import agreed_config
from .report import results_dict
from .stopping import StopSignals, TrainingDiverged, TrainingStopped
from .stragglers import emulate_sync, timed_history

__all__ = ["TrainingDiverged", "TrainingStopped", "state_template", "train"]


def state_template(algorithm, problem, topology, n: int, local_size: int = 1):
    """Shapes and dtypes (``jax.ShapeDtypeStruct``) of the stacked ``(n, ...)`` state of a run.

    Traced, not computed: ``algorithm.init`` of every agent under :func:`bluefog_sim.spmd`
    inside :func:`jax.eval_shape`, so nothing is allocated or compiled; only the per-agent
    shapes of ``problem.data`` are used, so a problem holding only this rank's rows
    (``Problem.shard``) gives the same template.
    """
    import jax

    import bluefog_sim
    from bluefog.algorithm import AgentContext

    def init(comm, data, key):
        return algorithm.init(problem.init_params, AgentContext(comm, topology, problem, data, key))

    spmd = bluefog_sim.spmd(init, n, local_size=local_size, jit=False)
    data = jax.tree_util.tree_map(  # n agents' shapes: a partial problem holds fewer rows
        lambda a: jax.ShapeDtypeStruct((n,) + tuple(np.shape(a)[1:]), a.dtype), problem.data)
    return jax.eval_shape(spmd, data, bluefog_sim.agent_keys(0, n))


def _all_finite(tree) -> bool:
    import jax

    return all(np.isfinite(a).all() for a in jax.tree_util.tree_leaves(tree)
               if np.issubdtype(np.asarray(a).dtype, np.inexact))


def _check_metadata(manifest: dict, state, allow_nonfinite: bool) -> None:
    meta = manifest["metadata"]
    config, history = meta.get("config"), meta.get("history")
    if not isinstance(config, dict) or not isinstance(history, dict):
        raise ckpt.CheckpointError("its metadata lacks the run's config/history objects.")
    steps = history.get("step")
    ok = isinstance(steps, list) and steps and all(
        isinstance(v, list) and len(v) == len(steps) for v in history.values())
    if not ok or steps[-1] != manifest["step"]:
        raise ckpt.CheckpointError("its metadata history is malformed or does not end at "
                                   f"step {manifest['step']}.")
    if not allow_nonfinite and not _all_finite(state):
        raise ckpt.CheckpointError("its state holds non-finite values (NaN/inf); pass "
                                   "--allow-nonfinite to resume from it anyway.")


def _config_differences(saved: dict, cfg: dict) -> list:
    want = resume_key(cfg)
    if cfg["record_every_derived"]:  # not given: take the checkpoint's
        want["record_every"] = saved.get("record_every", want["record_every"])
    import json

    want = json.loads(json.dumps(want))
    return sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))


def _restore(cfg: dict, backend, template, exp):
    """``(start, state, history, path, stacked)`` of the newest checkpoint every rank can use
    (``stacked``: all agents' states, in the simulator only)."""
    directory = cfg["checkpoint_dir"]
    path, state, manifest, skipped = store.restore(
        backend, directory, template, resize=cfg["elastic"],
        check=lambda m, s: _check_metadata(m, s, cfg["allow_nonfinite"]))
    if backend.rank == 0:
        for p, why in skipped:
            print(f"bluefog-train: skipping checkpoint {p}: {why}", file=sys.stderr)
    if path is None:
        hint = ""
        if skipped and not cfg["elastic"]:
            hint = (f" {len(skipped)} checkpoint(s) were skipped (reasons above); one of "
                    "another number of agents is continued with --elastic.")
        raise FileNotFoundError(
            f"--resume: no valid checkpoint in {directory!r}. Run without --resume first "
            f"(with --checkpoint-dir and --checkpoint-every).{hint}")
    saved = manifest["metadata"]["config"]
    diff = _config_differences(saved, cfg)
    if "agents" in manifest:  # --elastic and another number of agents: that may differ
        diff = [k for k in diff if k != "agents"]
    if diff:
        raise ValueError(
            f"--resume: the checkpoint {path} was written with a different configuration "
            f"(differs in {diff}). Resume with the same options, or use a fresh "
            "--checkpoint-dir.")
    start = int(manifest["step"])
    if start > cfg["steps"]:
        raise ValueError(f"--resume: the checkpoint is at step {start} > --steps "
                         f"{cfg['steps']}; pass --steps >= {start}.")
    ahead = _skipped_ahead(backend, skipped, start, cfg["steps"])
    if ahead and not cfg["overwrite"]:
        raise ValueError(
            f"--resume: {ahead[0]} was skipped and lies ahead of step {start}; continuing "
            "would replace it. Move it out of --checkpoint-dir, or pass --overwrite.")
    if cfg["record_every_derived"] and saved.get("record_every"):
        cfg["record_every"] = saved["record_every"]
    if backend.rank == 0:
        print(f"resuming from step {start} (checkpoint {path})", flush=True)
    if "agents" in manifest:
        state = _reshard(cfg, backend, exp, state, manifest["agents"])
    stacked = state if backend.name != "mpi" else None
    return start, state, manifest["metadata"]["history"], path, stacked


def _skipped_ahead(backend, skipped, start: int, steps: int) -> list:
    """The skipped checkpoints in ``(start, steps]`` that this run would overwrite, as rank 0
    sees them (broadcast, so every rank raises alike). A sharded checkpoint without manifest
    is a crashed write's leftover (:mod:`bluefog_train.sharded`): never committed, so it is
    replaced, not protected (a relaunch by ``bfrun --max-restarts`` after a rank died during
    a checkpoint write meets exactly that)."""
    ahead = [p for p, _ in skipped
             if start < store.step_of(p) <= steps and not store.is_leftover(p)]
    return backend.bcast(ahead)


def _reshard(cfg, backend, exp, old_state, old_agents: int):
    """``--elastic``: the checkpoint's ``old_agents`` states (stacked, on every process)
    redistributed onto this run's agents (:func:`bluefog_train.elastic.reshard_state`);
    under MPI each rank initialises only its own agent, on its own data, with the run's
    communicator (it holds no other agent's data)."""
    from .elastic import reshard_state

    state = reshard_state(old_state, exp["algorithm"], exp["problem"], exp["topology"],
                          local_size=cfg["local_size"], seed=cfg["seed"],
                          comm=backend.comm if backend.name == "mpi" else None)
    if backend.rank == 0:
        print(f"--elastic: the checkpoint holds {old_agents} agents, this run has "
              f"{cfg['agents']}: every agent starts from their average parameters, the "
              "optimizer state re-initialised there (step counters kept); the data is split "
              f"over {cfg['agents']} agents and the {cfg['topology']} topology rebuilt for them.",
              flush=True)
    return state


def _world_allgather():
    """``COMM_WORLD.allgather`` for the start-up agreement, with the MPI fail-fast hook and
    (under ``bfrun --max-restarts``) the rank's heartbeat installed first."""
    from mpi4py import MPI

    from bluefog_dist import failfast, heartbeat

    failfast.install()
    heartbeat.start()
    return MPI.COMM_WORLD.allgather


def _heartbeat(**progress) -> None:
    """Tell this rank's heartbeat (:func:`bluefog_dist.heartbeat.report`) about progress;
    nothing happens outside ``bfrun --max-restarts`` (or in the simulator)."""
    import sys as _sys

    if "bluefog_dist.heartbeat" in _sys.modules:
        _sys.modules["bluefog_dist.heartbeat"].report(**progress)


def _merge(history: dict, new: dict, offset: int) -> dict:
    """``history`` (lists, ends at step ``offset``) followed by this call's records ``new``
    (arrays, first record at step 0 of this call, i.e. ``offset``, which is dropped)."""
    keep_from = 1 if history else 0
    merged = {k: list(v) for k, v in history.items()}
    for k, v in new.items():
        v = np.asarray(v)[keep_from:]
        if k == "step":
            v = v + offset
        merged.setdefault(k, []).extend(v.tolist())
    return merged


class _Checkpointer:
    """The ``on_segment`` callback: save all agents' states, prune this run's old checkpoints,
    stop if a signal asked for it."""

    def __init__(self, cfg, backend, start, history, written, foreign, stop):
        self.cfg, self.backend, self.start, self.history = cfg, backend, start, history
        self.written, self.foreign, self.stop = written, foreign, stop
        self.last = written[-1][0] if written else None

    def __call__(self, step, state, history):
        reached = self.start + step
        cfg = self.cfg
        path, finite = store.save(  # every rank takes part (its shard under MPI)
            self.backend, cfg["checkpoint_dir"], self.backend.stacked(state)
            if self.backend.name != "mpi" else state, step=reached, replace=cfg["overwrite"],
            metadata={"config": resume_key(cfg),
                      "history": _merge(self.history, history, self.start)})
        if path is None:  # another rank failed to write its shard: the engine reports it
            return
        self.written.append((path, finite))
        self.last = path
        _heartbeat(checkpoint=reached)
        if self.backend.rank == 0:
            self._prune(path)
        if self.stop.requested and reached < self.cfg["steps"]:  # at the end: just finish
            raise TrainingStopped(self.stop.requested, reached, self.last)

    def _prune(self, path):
        for old in ckpt.prunable(self.written, self.cfg["keep"]):
            store.remove(old)
            self.written[:] = [w for w in self.written if w[0] != old]
        for other in self.foreign:  # --overwrite: replaced once this run has a checkpoint
            if other != path:
                store.remove(other)
        self.foreign.clear()


def _begin(cfg, backend, exp):
    """Resume or start fresh: ``(start, state, history, written, foreign, stacked)``."""
    n = cfg["agents"]
    template = state_template(exp["algorithm"], exp["problem"], exp["topology"], n,
                              cfg["local_size"])
    if cfg["resume"]:
        start, state, history, path, stacked = _restore(cfg, backend, template, exp)
        finite = True if stacked is None else _all_finite(stacked)
        return start, state, history, [(path, finite)], [], stacked
    foreign = []
    if cfg["checkpoint_every"] and cfg["overwrite"] and backend.rank == 0:
        foreign = [p for _, p in store.candidates(cfg["checkpoint_dir"])]
    return 0, None, {}, [], foreign, None


def _diverged(err, start: int, saver) -> TrainingDiverged:
    last = saver.last if saver else None
    kept = f" The last finite checkpoint {last} is kept." if last else ""
    where = f" (steps counted from the resumed step {start})" if start else ""
    return TrainingDiverged(
        f"training diverged at step {start + err.step}: {err}{where}{kept} Lower --lr, or "
        "pass --allow-nonfinite to record NaN and go on.", start + err.step, last)


def _run(cfg, backend, exp, start, state, saver, progress):
    """One call of the backend's ``run`` for the remaining steps; returns its result."""
    from bluefog.engine import CallbackError, NonFiniteError

    remaining = cfg["steps"] - start
    every = min(cfg["record_every"], remaining)
    segment = min(cfg["checkpoint_every"], remaining) if cfg["checkpoint_every"] else None
    try:
        return backend.run(
            exp["algorithm"], exp["problem"], exp["topology"], remaining, seed=cfg["seed"],
            record_every=every, progress=progress, metrics=exp["metrics"], state=state,
            local_size=cfg["local_size"], segment_every=segment,
            on_segment=saver, on_nonfinite="continue" if cfg["allow_nonfinite"] else "raise")
    except NonFiniteError as err:
        raise _diverged(err, start, saver) from None
    except CallbackError as err:
        stopped = [e for _, e in err.failures if e.startswith("TrainingStopped")]
        if stopped:
            if isinstance(err.__cause__, TrainingStopped):
                raise err.__cause__ from None
            raise TrainingStopped.from_failure(stopped[0]) from None
        raise


def train(cfg: dict, *, progress: bool | None = None) -> dict | None:
    """Run the experiment described by ``cfg``; return the results dict (rank 0) or ``None``.

    Parameters
    ----------
    cfg : dict
        The CLI's options (``vars(bluefog_train.cli.build_parser().parse_args(argv))``).
    progress : bool, optional
        Show the engine's progress bar (rank 0).

    Returns
    -------
    dict or None
        ``config``, ``history`` (one list per metric, ``step`` first), ``final`` metrics,
        ``per_agent_test_accuracy``, communication volume, ``timing``,
        ``resumed_from_step`` and ``_final_params`` (stacked); ``None`` on MPI ranks > 0.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        Bad options, unusable output locations, nothing to resume (before any step).
    TrainingDiverged
        A non-finite state or metric (without ``allow_nonfinite``).
    TrainingStopped
        A signal stopped the run at a checkpoint.
    """
    cfg = agreed_config(cfg, _world_allgather() if cfg.get("backend") == "mpi" else None)
    backend = make_backend(cfg)
    if backend.name == "mpi" and backend.size != cfg["agents"]:  # agreed: raised on every rank
        raise ValueError(
            f"--agents must equal the MPI world size under --backend mpi; got agents="
            f"{cfg['agents']}, world size={backend.size}. Launch with bfrun -np {cfg['agents']} "
            f"or pass --agents {backend.size}.")
    # under MPI this rank holds only its own agent's training rows (Problem.shard)
    exp = make_experiment(cfg) if backend.name != "mpi" else make_experiment(
        cfg, agents=range(backend.rank, backend.rank + 1))
    if cfg["async_method"]:  # no checkpoints (refused by the configuration check)
        from .asynctrain import train_async

        return train_async(cfg, backend, exp, progress)
    emulation = emulate_sync(cfg, backend, exp)  # MPI --compute-time: sleeps inside the step
    start, state, history, written, foreign, stacked = _begin(cfg, backend, exp)
    _heartbeat(base=start)
    res, t0, meta = None, time.perf_counter(), None
    if start < cfg["steps"]:
        with StopSignals(enabled=bool(cfg["checkpoint_every"])) as stop, \
                streaming(cfg, exp, backend, start) as meta:  # CSV/TensorBoard as records come
            saver = (_Checkpointer(cfg, backend, start, history, written, foreign, stop)
                     if cfg["checkpoint_every"] else None)
            res = _run(cfg, backend, exp, start, state, saver, progress)
        history = _merge(history, res.history, start)
        final_params = backend.stacked(res.params) if backend.name == "mpi" else res.params
    else:  # resumed at --steps: nothing left to run, report the checkpoint
        import jax

        if backend.name == "mpi":
            stacked = backend.stacked(state)  # a collective (results only), every rank
        final_params = None if stacked is None else jax.vmap(exp["algorithm"].params)(stacked)
    wall, end = time.perf_counter() - t0, time.monotonic()
    if backend.rank != 0:
        return None
    history = timed_history(history, cfg, backend.name, emulation, start, end)
    return {**results_dict(cfg, exp, history, final_params, start, res, wall), "run": meta}
