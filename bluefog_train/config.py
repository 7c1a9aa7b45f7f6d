r"""The configuration of a ``bluefog-train`` run: checked once, defaults derived, no I/O.

A configuration is the dict of the CLI's parsed options (``vars(parser.parse_args())``).
:func:`validate_config` checks every value with :mod:`bluefog.validation` (one rule:
``TypeError`` for a wrong type, ``ValueError`` for a wrong value, the message naming the
option, what was expected, what came and the fix) and fills the derived defaults
(``agents``, ``record_every``). Output locations are checked separately, on every rank,
by :mod:`bluefog_train.paths`.
"""

from __future__ import annotations

from bluefog.validation import (check_nonnegative_int, check_positive_float, check_positive_int,
                                check_real, check_seed, check_steps, check_unit_interval)

from .stragglers import check_straggler_options

__all__ = ["RUNTIME_KEYS", "resume_key", "default_record_every", "resolve_backend",
           "validate_config"]

#: Options that may change between an interrupted run and its resumption (everything else
#: must match the checkpoint's configuration).
RUNTIME_KEYS = ("steps", "resume", "out", "plot", "progress", "checkpoint_dir",
                "checkpoint_every", "keep", "backend", "overwrite", "allow_nonfinite",
                "record_every_derived", "metrics_csv", "tensorboard", "wandb", "wandb_project",
                "config", "command_line", "data_dir", "data_verify", "elastic",
                # the straggler flags change when steps happen, never what a step computes
                "compute_time", "jitter", "straggler", "slowdown", "slow_fraction", "latency",
                "duration")


def resume_key(cfg: dict) -> dict:
    """The part of ``cfg`` a checkpoint records and a resumed run must match.

    All options except :data:`RUNTIME_KEYS`, sorted by name; ``consensus_step`` only with
    ``compress`` (it has no effect without it), ``async_method`` only when set (so
    checkpoints written before ``--async`` existed still resume).
    """
    unused = () if cfg.get("compress") else ("consensus_step",)
    unused += () if cfg.get("async_method") else ("async_method",)
    return {k: v for k, v in sorted(cfg.items()) if k not in RUNTIME_KEYS + unused}


def default_record_every(steps: int, checkpoint_every: int = 0) -> int:
    r"""The default metric interval: about 50 records per run, compatible with checkpoints.

    Without checkpoints it is :math:`r_0 = \max(1, \lfloor s / 50 \rfloor)` for ``steps``
    :math:`s`. With ``checkpoint_every`` :math:`c > 0` every checkpoint must fall on a
    record (so that a resumed run records the same steps as an uninterrupted one), so the
    default is the divisor of :math:`c` nearest to :math:`r_0` (the smaller on a tie):
    ``--steps 400 --checkpoint-every 100`` records every 10 steps, not 8.

    Examples
    --------
    >>> default_record_every(400), default_record_every(400, 100), default_record_every(1000, 64)
    (8, 10, 16)
    """
    target = max(1, steps // 50)
    if not checkpoint_every:
        return target
    divisors = [d for d in range(1, checkpoint_every + 1) if checkpoint_every % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


def _check_ints(cfg: dict) -> None:
    for key in ("batch_size", "steps_per_communication", "local_size", "keep",
                "synthetic_samples"):
        cfg[key] = check_positive_int(cfg[key], f"--{key.replace('_', '-')}")
    cfg["steps"] = check_steps(cfg["steps"], "--steps")
    cfg["seed"] = check_seed(cfg["seed"], "--seed")
    cfg["checkpoint_every"] = check_nonnegative_int(cfg["checkpoint_every"], "--checkpoint-every")
    if cfg["agents"] is None:
        cfg["agents"] = 64
        if cfg["backend"] == "mpi":
            from mpi4py import MPI

            cfg["agents"] = MPI.COMM_WORLD.Get_size()
    cfg["agents"] = check_positive_int(cfg["agents"], "--agents")


def _check_reals(cfg: dict) -> None:
    cfg["lr"] = check_positive_float(cfg["lr"], "--lr")
    cfg["momentum"] = check_unit_interval(cfg["momentum"], "--momentum")
    cfg["l2"] = check_real(cfg["l2"], "--l2", low=0.0, example="--l2 1e-4 (or 0: no decay)")
    cfg["alpha"] = check_real(cfg["alpha"], "--alpha", low=0.0, low_open=True,
                              example="--alpha 0.5")
    cfg["consensus_step"] = check_real(cfg["consensus_step"], "--consensus-step", low=0.0,
                                       high=1.0, low_open=True, example="--consensus-step 0.5")


def _check_schedule(cfg: dict) -> None:
    """``--lr-schedule`` is one of the known names; its warm-up fits inside ``--steps``."""
    from bluefog.validation import check_choice

    cfg["lr_schedule"] = check_choice(cfg["lr_schedule"], "--lr-schedule",
                                      ("constant", "cosine", "warmup_cosine"))
    cfg["warmup_steps"] = check_nonnegative_int(cfg["warmup_steps"], "--warmup-steps")
    if cfg["lr_schedule"] == "warmup_cosine" and not cfg["warmup_steps"] < cfg["steps"]:
        raise ValueError(f"--warmup-steps must be smaller than --steps={cfg['steps']} with "
                         f"--lr-schedule warmup_cosine; got {cfg['warmup_steps']}.")


def _check_compression(cfg: dict) -> None:
    """``--compress`` must parse and fit the optimizer (CHOCO: neighbor, ATC)."""
    if not cfg["compress"]:
        return
    from bluefog.compression import parse

    parse(cfg["compress"])  # refuses a bad specification with the grammar
    if cfg["communication"] != "neighbor" or cfg["style"] != "atc":
        raise ValueError(
            "--compress needs --communication neighbor and --style atc (CHOCO mixing); got "
            f"--communication {cfg['communication']} --style {cfg['style']}.")
    if cfg["optimizer"] == "qg_dsgdm":
        raise ValueError("--compress works with --optimizer sgd, dmsgd, nesterov or adam; got "
                         "--optimizer qg_dsgdm.")


def resolve_backend(cfg: dict, env=None) -> str:
    """``--backend`` after looking at the launch: ``auto`` (the default) is ``mpi`` when an
    MPI launcher started this process with more than one rank, ``sim`` otherwise; an
    explicit ``sim`` under such a launch is refused (every rank would run the same whole
    simulation and write the same files)."""
    from bluefog_dist.environment import launched_world_size

    backend = cfg.get("backend") or "auto"
    size = launched_world_size(env)
    if backend == "auto":
        return "mpi" if size > 1 else "sim"
    if backend == "sim" and size > 1:
        raise ValueError(
            f"--backend sim under an MPI launch of {size} ranks would run {size} independent "
            "simulations writing the same outputs; pass --backend mpi (one agent per rank), "
            "or run without bfrun/mpiexec for the simulator.")
    return backend


def validate_config(cfg: dict) -> dict:
    """Check the run configuration ``cfg`` and return a copy with derived defaults.

    Every hyper-parameter must be finite (``--lr inf`` or ``--l2 nan`` would turn every
    state into NaN); ``--record-every`` defaults to :func:`default_record_every`, and an
    explicit ``--record-every`` must divide ``--checkpoint-every``.

    Raises
    ------
    TypeError
        An option of the wrong type (e.g. a float ``--steps`` from Python).
    ValueError
        An option with a bad value, or an inconsistent combination, with the fix.
    """
    cfg = dict(cfg)
    cfg.setdefault("overwrite", False)
    cfg.setdefault("elastic", False)
    cfg.setdefault("allow_nonfinite", False)
    cfg.setdefault("compress", None)
    cfg.setdefault("consensus_step", 0.5)
    for key in ("metrics_csv", "tensorboard", "wandb", "wandb_project"):
        cfg.setdefault(key, None)
    cfg.setdefault("data_dir", None)
    cfg.setdefault("data_verify", "warn")
    cfg.setdefault("lr_schedule", "constant")
    cfg.setdefault("warmup_steps", 0)
    cfg["backend"] = resolve_backend(cfg)
    _check_ints(cfg)
    check_straggler_options(cfg)  # --async and the straggler flags; resolves --optimizer
    _check_reals(cfg)
    _check_compression(cfg)
    _check_schedule(cfg)
    if (cfg["checkpoint_every"] or cfg["resume"]) and not cfg["checkpoint_dir"]:
        raise ValueError("--checkpoint-every and --resume need --checkpoint-dir DIR.")
    cfg["record_every_derived"] = cfg["record_every"] is None
    if cfg["record_every_derived"]:  # a resumed run takes its checkpoint's value instead
        cfg["record_every"] = default_record_every(cfg["steps"], cfg["checkpoint_every"])
    cfg["record_every"] = check_positive_int(cfg["record_every"], "--record-every")
    if cfg["checkpoint_every"] and cfg["checkpoint_every"] % cfg["record_every"]:
        raise ValueError(
            f"--checkpoint-every must be a multiple of --record-every so that a resumed run "
            f"records the same steps; got checkpoint-every={cfg['checkpoint_every']}, "
            f"record-every={cfg['record_every']}. Pass a --record-every that divides "
            f"{cfg['checkpoint_every']}, or leave it out (the default is chosen to fit).")
    return cfg
