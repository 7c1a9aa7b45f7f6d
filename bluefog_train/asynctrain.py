r"""``bluefog-train --async METHOD``: asynchronous training, in virtual time or on MPI windows.

The method (``async_sgp``: stochastic gradient push, Assran et al., ICML 2019; ``ad_psgd``:
Lian et al., ICML 2018) is the same :class:`bluefog.Algorithm` of
:data:`algorithms.ASYNC_REGISTRY` in both backends, written against the one-sided window
ops; its local step is the minibatch gradient of the classification problem
(``ctx.stochastic_grad``, batch ``--batch-size``, key ``fold_in(key_i, own step)``).

* **Simulator.** :func:`bluefog.asynchrony.asynchronous` turns it into an engine algorithm
  whose step is one event of the timeline of the compute model of
  :mod:`bluefog_train.stragglers` (agent :math:`i` completes its steps at
  :math:`C_i(k) = \sum_{k' \le k} c_i(k')`; a message from :math:`j` reaches :math:`i`
  ``--latency`` later), so the whole run is still one ``jit(vmap(scan))`` program through
  the engine, with the metrics of :func:`bluefog_train.evaluation.classification_metrics`
  computed inside it. ``history["step"]`` counts events; ``virtual_time`` and
  ``mean_agent_steps`` give the clock and the mean own steps per agent.
* **MPI.** :func:`bluefog_dist.window_comm.run_async` runs it on real one-sided windows
  (passive target, no rank waits for another) until ``--duration`` seconds after a common
  start; rank :math:`i` sleeps :math:`c_i(k)` before its step :math:`k`
  (:class:`bluefog_train.stragglers.EmulatedCompute`). Each rank logs its estimate every
  ``--record-every`` own steps (and its last); the ranks exchange the times of their
  entries, and at every logged time each rank takes its own newest estimate and evaluates
  the same metric function on it with the MPI communicator and its own data (each rank
  holds only its agent's training rows), so every rank records the metrics of the newest
  estimates of all ranks (``history``: ``wall_seconds``, ``step`` = own steps of all ranks
  together, ``mean_agent_steps``). The CSV of the records is written at the end.

Both add ``"async"`` to the results: the method, every agent's own step count, and the
clock's parameters.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from .report import results_dict
from .stopping import TrainingDiverged
from .stragglers import EmulatedCompute, async_timeline, horizon_of, model_of
from .streaming import streaming

__all__ = ["train_async", "newest_positions"]


def _record_every(cfg: dict, events: int) -> int:
    """Events between records: ``--record-every`` when given (it must not exceed the
    events), else about 50 records."""
    if cfg["record_every_derived"]:
        return max(1, events // 50)
    if cfg["record_every"] > events:
        raise ValueError(f"--record-every counts events with --async in the simulator; got "
                         f"{cfg['record_every']} > {events} events within the horizon "
                         f"{horizon_of(cfg):g}. Pass a smaller --record-every, or leave it out.")
    return cfg["record_every"]


def _diverged(err, times) -> TrainingDiverged:
    at = float(times[min(err.step, times.size) - 1]) if err.step else 0.0
    return TrainingDiverged(f"training diverged at event {err.step} (virtual time {at:g}): "
                            f"{err} Lower --lr, or pass --allow-nonfinite to record NaN and go "
                            "on.", err.step, None)


def _train_sim(cfg: dict, backend, exp: dict, progress):
    """The simulator's ``--async`` run (see the module docstring); the results dict."""
    from bluefog.asynchrony import asynchronous, check_windows, virtual_time
    from bluefog.engine import NonFiniteError

    tl = async_timeline(cfg)
    own = np.cumsum(tl.active, axis=0)                       # own steps after each event
    per_event = float(own[-1].mean()) / tl.events            # own steps per agent per event
    streamed = {**exp, "bytes_per_step": exp["bytes_per_step"] * per_event}
    t0 = time.perf_counter()
    with streaming(cfg, streamed, backend, 0) as meta:
        try:
            res = backend.run(asynchronous(exp["algorithm"], tl), exp["problem"],
                              exp["topology"], tl.events, seed=cfg["seed"],
                              record_every=_record_every(cfg, tl.events), progress=progress,
                              metrics=exp["metrics"],
                              on_nonfinite="continue" if cfg["allow_nonfinite"] else "raise")
        except NonFiniteError as err:
            raise _diverged(err, tl.times) from None
    wall = time.perf_counter() - t0
    check_windows(res.state)
    history = {k: np.asarray(v).tolist() for k, v in res.history.items()}
    steps = np.asarray(history["step"], np.int64)
    history["virtual_time"] = virtual_time(tl, steps).tolist()
    history["mean_agent_steps"] = [float(own[e - 1].mean()) if e else 0.0 for e in steps]
    out = results_dict(cfg, exp, history, res.params, 0, res, wall)
    info = {"backend": "sim", "events": tl.events, "virtual_horizon": horizon_of(cfg),
            "compute_means": model_of(cfg).means.tolist(), "latency": cfg["latency"],
            "in_flight_capacity": tl.capacity}
    return _finish(out, cfg, exp, own[-1].tolist(), tl.events, info, meta)


def _finish(out: dict, cfg: dict, exp: dict, own_steps: list, steps: int, info: dict,
            meta: dict) -> dict:
    """Results of an ``--async`` run: per own step communication, the ``async`` record."""
    mean_own = float(np.mean(own_steps))
    out["bytes_sent_per_agent_total"] = exp["bytes_per_step"] * mean_own
    out["timing"]["steps_this_invocation"] = steps
    t = out["timing"]["run_seconds"]
    out["timing"]["steps_per_second"] = steps / t if t > 0 else None
    out["async"] = {"method": cfg["async_method"], "own_steps": [int(s) for s in own_steps],
                    "mean_own_steps": mean_own, **info}
    out["run"] = meta
    return out


def newest_positions(stamps: list):
    r"""Merge per-rank log stamps ``stamps[i] = [(seconds, own steps), ...]`` (rank ``i``'s
    log, in order) into the timeline of the newest entry of every rank.

    Yields ``(seconds, own steps per rank (n,), positions (n,))`` at time 0 (every rank at
    its start, position ``-1``) and after every logged entry in time order (ties by rank):
    at time :math:`t`, ``positions[i]`` is the index in rank :math:`i`'s log of its last
    entry logged at or before :math:`t` (``-1``: none yet, the common initial model).
    """
    n = len(stamps)
    positions, steps = np.full(n, -1, np.int64), np.zeros(n, np.int64)
    yield 0.0, steps.copy(), positions.copy()
    for t, i, j, k in sorted((t, i, j, k) for i, log in enumerate(stamps)
                             for j, (t, k) in enumerate(log)):
        positions[i], steps[i] = j, k
        yield t, steps.copy(), positions.copy()


def _evaluate(exp: dict, comm, unravel, X: np.ndarray) -> dict:
    """The run's metric function at each of this rank's estimates ``X`` ``(T, d)``, evaluated
    by every rank on its own agent's data with the MPI communicator ``comm`` (one compiled
    ``lax.map``, collectives inside): ``{metric: (T,) array}``, the same on every rank."""
    import jax
    import jax.numpy as jnp

    from bluefog.algorithm import AgentContext
    from bluefog.engine import agent_key

    problem, topology, metrics = exp["problem"], exp["topology"], exp["metrics"]
    r = comm.rank()

    def evaluate(X, data, key):
        ctx = AgentContext(comm, topology, problem, data, key)
        return jax.lax.map(lambda x: metrics(unravel(x), ctx), X)

    out = jax.jit(evaluate)(jnp.asarray(X), problem.agent_data(r), agent_key(0, r))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _history(exp: dict, comm, stamps: list, log: list) -> dict:
    """The history of an MPI ``--async`` run (see :func:`newest_positions`), a collective:
    at every logged time each rank scores its own newest estimate on its own data, so no
    rank needs another agent's data."""
    from jax.flatten_util import ravel_pytree

    x0, unravel = ravel_pytree(exp["problem"].init_params)
    own = np.stack([np.asarray(x0)] + [np.asarray(z, np.asarray(x0).dtype) for _, _, z in log])
    history: dict = {"step": [], "wall_seconds": [], "mean_agent_steps": []}
    rows = []
    for t, steps, positions in newest_positions(stamps):
        history["step"].append(int(steps.sum()))
        history["wall_seconds"].append(float(t))
        history["mean_agent_steps"].append(float(steps.mean()))
        rows.append(positions[comm.rank()] + 1)  # row 0 of own: the initial model
    for k, v in _evaluate(exp, comm, unravel, own[np.asarray(rows)]).items():
        history[k] = v.tolist()
    return history


def _compiled(problem):
    """``problem`` with jitted ``loss`` and ``stochastic_loss`` (same values): under
    ``run_async`` the step runs on the host op by op, and the gradient of a jitted loss is a
    few compiled calls instead of one dispatch per operation of the model."""
    import dataclasses

    import jax

    jitted = {"loss": jax.jit(problem.loss)}
    if problem.stochastic_loss is not None:
        jitted["stochastic_loss"] = jax.jit(problem.stochastic_loss)
    return dataclasses.replace(problem, **jitted)


def _run_mpi(cfg: dict, backend, exp: dict):
    """This rank's ``run_async``: ``(final state, its log, wall seconds)``, after one warm-up
    step on windows of its own (compiling every operation of the step outside the clock)."""
    from jax.flatten_util import ravel_pytree

    from bluefog_dist.window_comm import MpiWindowComm, run_async

    algorithm, every, problem = exp["algorithm"], cfg["record_every"], _compiled(exp["problem"])
    stepper = EmulatedCompute(cfg, backend.rank).wrap(algorithm)
    kept, last = [], [None]                     # states are immutable: keep, flatten later

    def on_step(k, state, seconds):
        last[0] = (seconds, k + 1, state)
        if (k + 1) % every == 0:
            kept.append(last[0])

    comm = MpiWindowComm()
    try:
        warm, _ = run_async(stepper, problem, exp["topology"], steps=2, seed=cfg["seed"],
                            comm=comm)
        comm.win_free(warm.windows)
        t0 = time.perf_counter()
        state, _ = run_async(stepper, problem, exp["topology"], duration=cfg["duration"],
                             seed=cfg["seed"], comm=comm, on_step=on_step)
        wall = time.perf_counter() - t0
        comm.win_free(state.windows)
    finally:
        comm.mpi.close()
    if last[0] is not None and last[0][1] % every:
        kept.append(last[0])                    # the final estimate is always logged
    log = [(t, k, np.asarray(ravel_pytree(algorithm.params(s))[0])) for t, k, s in kept]
    return state, log, wall


def _train_mpi(cfg: dict, backend, exp: dict):
    """The MPI ``--async`` run (see the module docstring); the results on rank 0, else None."""
    from bluefog.engine.observers import notify_records

    with streaming(cfg, exp, backend, 0) as meta:
        state, log, wall = _run_mpi(cfg, backend, exp)
        stamps = backend.allgather([(t, k) for t, k, _ in log])
        owns = backend.allgather(int(state.count))
        finals = backend.stacked(exp["algorithm"].params(state))  # every rank takes part
        history = _history(exp, backend.comm, stamps, log)        # every rank takes part
        if backend.rank != 0:
            return None
        notify_records(history["step"], {k: v for k, v in history.items() if k != "step"})
    if not cfg["allow_nonfinite"] and not np.all(np.isfinite(history["loss"])):
        bad = int(np.flatnonzero(~np.isfinite(history["loss"]))[0])
        raise TrainingDiverged(f"training diverged: the loss is not finite from "
                               f"{history['wall_seconds'][bad]:.2f} s on (--async "
                               f"{cfg['async_method']} under MPI). Lower --lr, or pass "
                               "--allow-nonfinite to record it.", history["step"][bad], None)
    res = SimpleNamespace(run_seconds=wall, compile_seconds=0.0)
    out = results_dict(cfg, exp, history, finals, 0, res, wall)
    info = {"backend": "mpi", "duration": cfg["duration"], "compute_time": cfg["compute_time"],
            "compute_means": model_of(cfg).means.tolist() if cfg["compute_time"] else None}
    return _finish(out, cfg, exp, owns, int(sum(owns)), info, meta)


def train_async(cfg: dict, backend, exp: dict, progress=None):
    """Run the ``--async`` experiment (see the module docstring).

    Parameters
    ----------
    cfg : dict
        A validated configuration with ``async_method`` set (checkpoints are refused).
    backend : bluefog_train.backends.SimBackend or MpiBackend
    exp : dict
        :func:`bluefog_train.experiment.make_experiment` (its algorithm is the async method).
    progress : bool, optional
        The engine's progress bar (simulator).

    Returns
    -------
    dict or None
        The results (:func:`bluefog_train.report.results_dict` plus ``"async"``); ``None``
        on MPI ranks other than 0.

    Raises
    ------
    TrainingDiverged
        A non-finite state or loss (without ``--allow-nonfinite``).
    """
    if backend.name == "mpi":
        return _train_mpi(cfg, backend, exp)
    return _train_sim(cfg, backend, exp, progress)
