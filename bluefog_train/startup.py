"""``bluefog-train``'s start-up: every per-rank check agreed in ONE collective, before any other.

Under MPI each rank parses its own command line and looks at the file system on its own, so
the ranks can come to different conclusions: ``--resume`` given to some ranks only, a
different ``--checkpoint-dir``, an option that is invalid on one rank, a path that one rank
cannot write. A rank that raised alone, or took another branch (restore vs. train), would
leave the others blocked in their next exchange (seen: 150 s timeouts with no message). So
:func:`agreed_config` evaluates, on every rank, the option validation
(:func:`bluefog_train.config.validate_config`), the restart rule below and the output checks
(:func:`bluefog_train.paths.output_problems`), and the ranks exchange the outcome together
with a digest of their options in one ``allgather`` over ``COMM_WORLD``; then every rank
raises the same error (options that differ between ranks, naming them and the first
differing rank; else the first rank's validation error; else the first output problem) or
none raises.

**Restarts.** Under ``bfrun --max-restarts K`` a relaunched job sees
``BLUEFOG_RESTART_COUNT`` >= 1. A run with ``--checkpoint-dir`` and ``--checkpoint-every``
then continues from the newest complete checkpoint as if ``--resume`` had been given (and
starts afresh when the failure came before the first checkpoint): the relaunch needs no
other command line than the first launch. Under ``bfrun --elastic`` (``BLUEFOG_ELASTIC=1``)
the relaunch may have fewer ranks than the first launch: ``--elastic`` is then on, and under
MPI the number of agents is the world size whatever ``--agents`` says
(:mod:`bluefog_train.elastic`).
"""

from __future__ import annotations

import os

from .config import validate_config
from .paths import output_problems

__all__ = ["RESTART_ENV", "agreed_config", "restart_count"]

#: Set by ``bfrun --max-restarts`` to the number of the launch (0: the first).
RESTART_ENV = "BLUEFOG_RESTART_COUNT"


def restart_count() -> int:
    """``int($BLUEFOG_RESTART_COUNT)``, 0 when unset or not a non-negative integer."""
    text = os.environ.get(RESTART_ENV, "0")
    return int(text) if text.isdigit() else 0


def _apply_restart(cfg: dict) -> dict:
    """``--resume`` on a relaunch by ``bfrun`` when a complete checkpoint exists; under
    ``bfrun --elastic``, ``--elastic`` and (on a relaunch under MPI) the world size as the
    number of agents."""
    from .elastic import elastic_requested
    from .store import complete_checkpoints

    if elastic_requested():
        cfg["elastic"] = True
        if restart_count() and cfg["backend"] == "mpi":
            from mpi4py import MPI

            cfg["agents"] = MPI.COMM_WORLD.Get_size()  # one rank fewer than --agents, maybe
    if restart_count() and cfg["checkpoint_dir"] and cfg["checkpoint_every"] \
            and not cfg["resume"] and complete_checkpoints(cfg["checkpoint_dir"]):
        cfg["resume"] = True
    return cfg


def _local(raw: dict):
    """``(cfg or None, error or None, problems)`` on this rank; never raises."""
    try:
        cfg = _apply_restart(validate_config(dict(raw)))
        return cfg, None, output_problems(cfg)
    except (TypeError, ValueError) as err:
        return None, err, []


#: Keys of the configuration that are records, not options (compared through the options).
_NOT_OPTIONS = ("command_line",)


def _options(raw: dict) -> dict:
    return {k: repr(raw[k]) for k in sorted(raw) if k not in _NOT_OPTIONS}


def _disagreement(every: list) -> str | None:
    reference = every[0][2]
    for rank, (_, _, mine) in enumerate(every[1:], start=1):
        diff = [k for k in sorted(set(reference) | set(mine)) if reference.get(k) != mine.get(k)]
        if diff:
            shown = "; ".join(f"--{k.replace('_', '-')}: rank 0 has {reference.get(k)}, rank "
                              f"{rank} has {mine.get(k)}" for k in diff[:4])
            return (f"the ranks were started with different options (first differing rank: "
                    f"{rank}): {shown}. Every rank must get the same bluefog-train command "
                    "line (bfrun -np N bluefog-train ... passes one to all of them).")
    return None


def agreed_config(raw: dict, allgather=None) -> dict:
    """The validated configuration, checked on every rank together.

    Parameters
    ----------
    raw : dict
        The parsed options (``vars(parser.parse_args(argv))``).
    allgather : callable ``obj -> list``, optional
        ``mpi4py``'s ``COMM_WORLD.allgather`` under MPI (the only collective of this
        function); ``None`` in one process.

    Returns
    -------
    dict
        :func:`bluefog_train.config.validate_config`'s result (``resume`` set on a restart).

    Raises
    ------
    ValueError or TypeError
        On every rank together: options that differ between ranks, an invalid option, or
        an unusable output location (naming the rank that found it).
    """
    cfg, error, problems = _local(raw)
    mine = (None if error is None else (type(error).__name__, str(error)), problems,
            _options(raw if cfg is None else {**raw, "resume": cfg["resume"]}))
    every = allgather(mine) if allgather is not None else [mine]
    differ = _disagreement(every)
    if differ:
        raise ValueError(differ)
    for rank, (err, _, _) in enumerate(every):
        if err is not None:
            if error is not None:
                raise error
            raise (TypeError if err[0] == "TypeError" else ValueError)(err[1])
    for rank, (_, found, _) in enumerate(every):
        if found:
            where = f" (found on rank {rank})" if len(every) > 1 else ""
            raise ValueError(found[0] + where)
    return cfg
