r"""Straggler flags of ``bluefog-train``: one compute model for both backends, checked once.

Agent (rank) :math:`i`'s :math:`k`-th step takes (:func:`bluefog.asynchrony.compute_model`)

.. math:: c_i(k) = \mu_i\, u_{ik}, \qquad u_{ik} \sim \mathcal U[1 - j, 1 + j],

with :math:`\mu_i` = ``--compute-time``, times ``--slowdown`` for the ``--straggler`` agent (or
a random ``--slow-fraction`` of them), and :math:`j` = ``--jitter``; the draws depend only on
``--seed``, so every method is compared on the same environment.

* **Simulator** (virtual time). A synchronous method is charged the slowest agent and the
  slowest link (``--latency``) every step, :math:`T_{\text{sync}}(k) = \sum_{k' \le k}
  (\max_i c_i(k') + \max_{ij} L_{ij})` (:func:`bluefog.asynchrony.synchronous_times`); an
  ``--async`` method runs on the event timeline of the same model
  (:func:`bluefog.asynchrony.event_timeline`), every agent at its own pace, up to the horizon
  ``--duration`` (default ``--steps`` x ``--compute-time``: the time in which an agent of
  normal speed takes ``--steps`` steps). Both record ``virtual_time`` in their history.
* **MPI** (wall time). Rank :math:`i` sleeps :math:`c_i(k)` seconds at the start of its
  :math:`k`-th step (:class:`EmulatedCompute`): inside the compiled step of a synchronous run
  (a host callback the step's arithmetic depends on), on the host in
  :func:`bluefog_dist.window_comm.run_async` for ``--async``, which stops every rank at one
  deadline ``--duration`` seconds after a common start. Both record ``wall_seconds``.

References
----------
M. Assran, N. Loizou, N. Ballas, M. Rabbat, "Stochastic gradient push for distributed deep
learning", ICML 2019 (straggler experiments); X. Lian, W. Zhang, C. Zhang, J. Liu,
"Asynchronous decentralized parallel stochastic gradient descent", ICML 2018 (heterogeneous
environments); B. Ying et al., "BlueFog", arXiv:2111.04287 (asynchronous window operations).
"""

from __future__ import annotations

import time

import numpy as np

from bluefog.validation import (check_choice, check_nonnegative_int, check_positive_float,
                                check_real)

__all__ = ["ASYNC_METHODS", "STRAGGLER_DEFAULTS", "check_straggler_options", "model_of",
           "horizon_of", "events_before", "async_timeline", "synchronous_clock", "EmulatedCompute",
           "emulate_sync", "timed_history"]

#: ``--async`` choices: the asynchronous *training* methods of :data:`algorithms.ASYNC_REGISTRY`
#: (``async_push_sum`` averages and has no gradient; ``async_push_diging`` takes the exact
#: gradient of the agent's whole shard at every step, not the minibatch path).
ASYNC_METHODS = ("async_sgp", "ad_psgd")
#: Topologies ``--async`` refuses: the window ops need a static graph.
DYNAMIC_TOPOLOGIES = ("one_peer_exponential", "random_matching")
#: ``ad_psgd`` averages pairs, so it needs symmetric edges: every static topology of
#: ``--topology`` except the directed ``exponential`` graph.
ASYMMETRIC_TOPOLOGIES = ("exponential",)
#: The options of this module and their defaults (``None``: derived in
#: :func:`check_straggler_options`).
STRAGGLER_DEFAULTS = {"async_method": None, "compute_time": None, "jitter": 0.0,
                      "straggler": None, "slowdown": 1.0, "slow_fraction": 0.0, "latency": 0.0,
                      "duration": None}


def _check_values(cfg: dict) -> None:
    mpi = cfg["backend"] == "mpi"
    if cfg["async_method"] is not None:
        check_choice(cfg["async_method"], "--async", ASYNC_METHODS)
    if cfg["compute_time"] is None:
        cfg["compute_time"] = 0.0 if mpi else 1.0
    cfg["compute_time"] = check_real(
        cfg["compute_time"], "--compute-time", low=0.0, low_open=not mpi,
        example="--compute-time 0.05 (seconds of emulated compute per step)" if mpi else
        "--compute-time 1.0 (virtual seconds per step)")
    cfg["jitter"] = check_real(cfg["jitter"], "--jitter", low=0.0, high=1.0, high_open=True,
                               example="--jitter 0.1")
    cfg["slowdown"] = check_real(cfg["slowdown"], "--slowdown", low=1.0, example="--slowdown 10")
    cfg["slow_fraction"] = check_real(cfg["slow_fraction"], "--slow-fraction", low=0.0, high=1.0,
                                      high_open=True, example="--slow-fraction 0.1")
    cfg["latency"] = check_real(cfg["latency"], "--latency", low=0.0, example="--latency 0.1")
    if cfg["duration"] is not None:
        cfg["duration"] = check_positive_float(cfg["duration"], "--duration")
    if cfg["straggler"] is not None:
        cfg["straggler"] = check_nonnegative_int(cfg["straggler"], "--straggler")
        if cfg["straggler"] >= cfg["agents"]:
            raise ValueError(f"--straggler must be an agent (rank) in [0, {cfg['agents']}); got "
                             f"{cfg['straggler']}. Pass e.g. --straggler 0.")


def _check_slow(cfg: dict) -> None:
    chosen = cfg["straggler"] is not None or cfg["slow_fraction"] > 0
    if cfg["straggler"] is not None and cfg["slow_fraction"] > 0:
        raise ValueError(f"pass either --straggler (one slow agent) or --slow-fraction (a random "
                         f"fraction), not both; got --straggler {cfg['straggler']} "
                         f"--slow-fraction {cfg['slow_fraction']}.")
    if chosen and cfg["slowdown"] == 1.0:
        raise ValueError("--straggler/--slow-fraction make agents --slowdown times slower; "
                         "got --slowdown 1.0 (nobody slower). Pass e.g. --slowdown 10.")
    if not chosen and cfg["slowdown"] != 1.0:
        raise ValueError(f"--slowdown {cfg['slowdown']} needs the agents to slow down: pass "
                         "--straggler RANK (one agent) or --slow-fraction F (a random "
                         "fraction).")
    if cfg["backend"] != "mpi":
        return
    if cfg["latency"]:
        raise ValueError(f"--latency is the simulator's link latency (virtual seconds); under "
                         f"--backend mpi the links are real. Drop --latency {cfg['latency']}.")
    if (chosen or cfg["jitter"]) and not cfg["compute_time"]:
        raise ValueError("--straggler/--slow-fraction/--jitter under --backend mpi scale the "
                         "emulated compute of every step, which is 0 without --compute-time; "
                         "pass e.g. --compute-time 0.05 (seconds per step).")


def _check_sync(cfg: dict) -> None:
    if cfg["duration"] is not None:
        raise ValueError(f"--duration is the deadline of an --async run; a synchronous run takes "
                         f"--steps steps. Pass --async METHOD, or drop --duration "
                         f"{cfg['duration']}.")
    cfg["optimizer"] = "dmsgd" if cfg["optimizer"] is None else cfg["optimizer"]
    cfg["momentum"] = 0.9 if cfg["momentum"] is None else cfg["momentum"]


#: (option, value it must have with --async, how it is spelled on the command line)
_ASYNC_FIXED = (("communication", "neighbor", "--communication"), ("style", "atc", "--style"),
                ("steps_per_communication", 1, "--steps-per-communication"),
                ("lr_schedule", "constant", "--lr-schedule"), ("compress", None, "--compress"),
                ("momentum", None, "--momentum"))


def _check_async(cfg: dict) -> None:
    m = cfg["async_method"]
    if cfg["backend"] == "mpi" and cfg["duration"] is None:
        raise ValueError(
            f"--async {m} under --backend mpi needs --duration SECONDS: every rank steps until "
            "one deadline after a common start (with a fixed number of own steps the fast "
            "ranks finish first and the slow one pushes its push-sum weight into ranks that "
            "no longer step). Pass e.g. --duration 10.")
    if cfg["checkpoint_every"] or cfg["checkpoint_dir"] or cfg["resume"]:
        raise ValueError(
            f"--async {m} does not checkpoint: messages in flight (and, under MPI, the window "
            "memory) are not part of a checkpoint. Drop --checkpoint-dir/--checkpoint-every/"
            "--resume, or train with a synchronous --optimizer.")
    if cfg["optimizer"] not in (None, "sgd"):
        raise ValueError(f"--async {m} takes plain SGD steps inside its own mixing; got "
                         f"--optimizer {cfg['optimizer']}. Drop --optimizer (or pass "
                         "--optimizer sgd).")
    for key, want, flag in _ASYNC_FIXED:
        if cfg[key] != want:
            fix = f"drop {flag}" if want is None else f"pass {flag} {want} (the default)"
            raise ValueError(f"{flag} {cfg[key]} does not apply to --async {m} (plain SGD "
                             f"steps, mixed over --topology at every own step); {fix}.")
    if cfg["topology"] in DYNAMIC_TOPOLOGIES:
        raise ValueError(f"--async {m} needs a static --topology (its windows are created once); "
                         f"got {cfg['topology']}. Pass e.g. --topology exponential.")
    if m == "ad_psgd" and cfg["topology"] in ASYMMETRIC_TOPOLOGIES:
        raise ValueError(f"--async ad_psgd averages pairs of neighbours, so it needs symmetric "
                         f"edges; --topology {cfg['topology']} is directed. Pass --topology "
                         "symmetric_exponential (or ring, torus, hypercube, ...).")
    cfg["optimizer"], cfg["momentum"] = "sgd", 0.0


def check_straggler_options(cfg: dict) -> None:
    """Check ``--async`` and the straggler flags of ``cfg`` in place (called by
    :func:`bluefog_train.config.validate_config`, so refused on every MPI rank together).

    Fills the defaults of :data:`STRAGGLER_DEFAULTS`: ``--compute-time`` 1.0 virtual
    seconds in the simulator, 0 (no emulated compute) under MPI; ``--optimizer`` ``dmsgd``
    and ``--momentum`` 0.9 for a synchronous run, ``sgd`` and 0 for ``--async``.

    Raises
    ------
    TypeError, ValueError
        A bad value or an inconsistent combination, with the fix (e.g. ``--async`` with
        checkpoints, ``--async ad_psgd`` on the directed exponential graph, ``--async`` under
        MPI without ``--duration``, ``--latency`` under MPI, ``--slowdown`` without a slow
        agent).
    """
    for key, value in STRAGGLER_DEFAULTS.items():
        cfg.setdefault(key, value)
    cfg.setdefault("optimizer", None)
    cfg.setdefault("momentum", None)
    _check_values(cfg)
    _check_slow(cfg)
    if cfg["async_method"]:
        _check_async(cfg)
    else:
        _check_sync(cfg)


def model_of(cfg: dict):
    """The :class:`bluefog.asynchrony.ComputeModel` of a validated ``cfg`` (mean 1.0 when
    ``--compute-time`` is 0 under MPI, where no compute is emulated)."""
    from bluefog.asynchrony import compute_model

    return compute_model(cfg["agents"], cfg["compute_time"] or 1.0, jitter=cfg["jitter"],
                         straggler=cfg["straggler"], slow_fraction=cfg["slow_fraction"],
                         slowdown=cfg["slowdown"], seed=cfg["seed"])


def horizon_of(cfg: dict) -> float:
    """Virtual horizon of a simulated ``--async`` run: ``--duration``, else ``--steps`` x
    ``--compute-time``."""
    return cfg["duration"] if cfg["duration"] is not None else cfg["steps"] * cfg["compute_time"]


def events_before(model, horizon: float) -> int:
    r"""Number of distinct completion times :math:`C_i(k) = \sum_{k' \le k} c_i(k')` in
    :math:`(0, T]` (relative tolerance :math:`10^{-9}`, so that ``--steps`` steps of a
    normal agent land inside ``--steps x --compute-time`` despite rounding)."""
    fastest = float(np.min(model.means)) * (1.0 - model.jitter)
    steps = int(np.ceil(horizon / fastest)) + 2
    done = np.cumsum(model.durations(steps), axis=1)
    return int(np.unique(done[done <= horizon * (1 + 1e-9)]).size)


def async_timeline(cfg: dict):
    """The event timeline of a simulated ``--async`` run up to :func:`horizon_of`.

    Raises
    ------
    ValueError
        When no agent completes a step within the horizon.
    """
    from bluefog.asynchrony import event_timeline

    model, horizon = model_of(cfg), horizon_of(cfg)
    events = events_before(model, horizon)
    if events == 0:
        raise ValueError(f"--async: no agent completes a step within the virtual horizon "
                         f"{horizon:g} (--duration, or --steps x --compute-time); the fastest "
                         f"step takes {np.min(model.means) * (1 - model.jitter):g}. Pass a "
                         "longer --duration.")
    return event_timeline(model, events, latency=cfg["latency"])


def synchronous_clock(cfg: dict) -> np.ndarray:
    """:math:`T_{\\text{sync}}(k)`, ``k = 1 .. --steps``, of a synchronous run on ``cfg``'s
    model (:func:`bluefog.asynchrony.synchronous_times`)."""
    from bluefog.asynchrony import synchronous_times

    return synchronous_times(model_of(cfg), cfg["steps"], latency=cfg["latency"])


class EmulatedCompute:
    """Under MPI: rank ``rank`` sleeps :math:`c_{rank}(k)` seconds at the start of its step
    ``k`` and logs when each step started (the module docstring's model; no sleep when
    ``--compute-time`` is 0).

    Parameters
    ----------
    cfg : dict
        A validated configuration.
    rank : int
        This MPI rank.

    Attributes
    ----------
    starts : dict
        ``{k: time.monotonic() when step k started}`` (before its sleep).
    """

    def __init__(self, cfg: dict, rank: int):
        self.model = model_of(cfg) if cfg["compute_time"] else None
        self.rank = int(rank)
        self.table = np.zeros(0)
        self.starts: dict = {}

    def seconds(self, k: int) -> float:
        """:math:`c_{rank}(k)` (the table grows by doubling; its prefix never changes)."""
        if self.model is None:
            return 0.0
        if k >= self.table.size:
            self.table = self.model.durations(max(64, 2 * (k + 1)))[self.rank]
        return float(self.table[k])

    def __call__(self, k) -> np.ndarray:
        """Log the start of step ``k`` and sleep; returns ``int32(0)`` (the step adds it)."""
        k = int(k)
        self.starts.setdefault(k, time.monotonic())
        time.sleep(self.seconds(k))
        return np.zeros((), np.int32)

    def wrap(self, algorithm):
        """``algorithm`` whose step first calls this object. Traced (a compiled step), it is a
        host callback whose zero the step counter and every floating state leaf add, so no
        part of the step, its exchange included, can run before the emulated compute is
        over; run eagerly (``run_async`` on the host), a plain call."""
        import jax
        import jax.numpy as jnp
        from jax.experimental import io_callback

        from bluefog.algorithm import Algorithm

        def step(state, ctx):
            if not isinstance(state.count, jax.core.Tracer):
                self(state.count)
                return algorithm.step(state, ctx)
            zero = io_callback(self, jax.ShapeDtypeStruct((), jnp.int32), state.count)
            state = jax.tree_util.tree_map(
                lambda a: a + zero.astype(a.dtype)
                if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.number) else a, state)
            return algorithm.step(state, ctx)

        return Algorithm(algorithm.init, step, algorithm.params, algorithm.name,
                         dict(algorithm.config))


def emulate_sync(cfg: dict, backend, exp: dict):
    """Under MPI with ``--compute-time``: replace ``exp["algorithm"]`` by its
    :meth:`EmulatedCompute.wrap` and return the :class:`EmulatedCompute` (else ``None``; the
    simulator's synchronous runs are charged virtual time afterwards instead)."""
    if backend.name != "mpi" or not cfg["compute_time"]:
        return None
    emulation = EmulatedCompute(cfg, backend.rank)
    exp["algorithm"] = emulation.wrap(exp["algorithm"])
    return emulation


def timed_history(history: dict, cfg: dict, backend_name: str, emulation=None, start: int = 0,
                  end: float | None = None) -> dict:
    """``history`` with the clock of a synchronous run added.

    Simulator: ``virtual_time`` :math:`= T_{\\text{sync}}(k)` at every recorded step ``k``
    (:func:`synchronous_clock`). MPI with an :class:`EmulatedCompute`: ``wall_seconds`` of
    step ``k`` = when this rank started step ``k`` (its step ``k - 1`` and exchange were over)
    minus when it started step ``start``, the last step at ``end`` (``time.monotonic()``
    after the run); ``None`` for steps before ``start`` (a resumed run).
    """
    from bluefog.asynchrony import virtual_time

    steps = np.asarray(history["step"], np.int64)
    if backend_name != "mpi":
        return {**history, "virtual_time": virtual_time(synchronous_clock(cfg), steps).tolist()}
    if emulation is None or start not in emulation.starts:
        return history
    t0 = emulation.starts[start]
    wall = [None if k < start else (emulation.starts[k] if k in emulation.starts else end) - t0
            for k in steps.tolist()]
    return {**history, "wall_seconds": wall}
