"""Output locations of ``bluefog-train``, checked before the first step.

A run that trains for an hour and then cannot write its results loses the hour. So every
output location (``--out``, ``--plot``, ``--checkpoint-dir``) is checked before anything is
compiled, on every rank under MPI, and the ranks agree (in the one ``allgather`` of
:func:`bluefog_train.startup.agreed_config`) so that all of
them refuse together with the same one-line message:

* a file output (``--out``, ``--plot``) must not be a directory; an existing file must be
  writable; otherwise its nearest existing ancestor must be a directory in which a file can
  actually be created (probed with a temporary file of this process, removed at once: this
  catches read-only mounts and pseudo file systems, where ``os.access`` says yes to root);
* ``--checkpoint-dir`` must be a directory, or creatable the same way;
* a fresh run (no ``--resume``) that would write checkpoints into a directory holding
  another run's checkpoints is refused unless ``--overwrite`` is given: checkpoints this
  run did not write are never replaced or deleted silently.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["output_problems"]


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _creatable_in(path: str, option: str) -> str | None:
    """Why nothing can be created at ``path`` (whose ancestors may be missing), or None."""
    base = _nearest_existing(os.path.dirname(os.path.abspath(path)) or ".")
    if not os.path.isdir(base):
        return (f"{option} {path!r} cannot be created: {base!r} is not a directory. "
                f"Choose another {option}.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".bluefog-train-probe-", dir=base)
    except OSError as err:
        return (f"{option} {path!r} cannot be created: {base!r} is not writable "
                f"({err.strerror}). Choose a writable location for {option}.")
    os.close(fd)
    os.remove(probe)
    return None


def _file_problem(path: str, option: str) -> str | None:
    if os.path.isdir(path):
        return (f"{option} {path!r} is a directory; expected a file name. Pass e.g. "
                f"{option} {os.path.join(path, 'run.json' if option == '--out' else 'run.png')}.")
    if os.path.lexists(path):
        if not os.path.isfile(path):
            return f"{option} {path!r} exists and is not a regular file. Choose another {option}."
        if not os.access(path, os.W_OK):
            return f"{option} {path!r} exists and is not writable. Choose another {option}."
        return None
    return _creatable_in(path, option)


def _dir_problem(path: str, option: str) -> str | None:
    if os.path.lexists(path) and not os.path.isdir(path):
        return (f"{option} {path!r} exists and is not a directory. Pass a directory (it is "
                f"created if missing).")
    if os.path.isdir(path):
        return _creatable_in(os.path.join(path, "probe"), option)
    return _creatable_in(path, option)


def _foreign_checkpoints(cfg: dict) -> str | None:
    from .store import complete_checkpoints  # single files and committed sharded ones

    if not cfg["checkpoint_every"] or cfg["resume"] or cfg.get("overwrite"):
        return None
    found = complete_checkpoints(cfg["checkpoint_dir"])
    if not found:
        return None
    names = ", ".join(os.path.basename(p) for _, p in found[:3]) + (", ..." if len(found) > 3 else "")
    return (f"--checkpoint-dir {cfg['checkpoint_dir']!r} already holds {len(found)} checkpoint(s) "
            f"of another run ({names}); a fresh run would replace them. Pass --resume to "
            f"continue that run, choose another --checkpoint-dir, or pass --overwrite to "
            f"replace them.")


def output_problems(cfg: dict) -> list[str]:
    """Every reason the run's output locations are unusable on this process (empty: fine).

    Parameters
    ----------
    cfg : dict
        A validated configuration (:func:`bluefog_train.config.validate_config`): reads
        ``out``, ``plot``, ``checkpoint_dir``, ``checkpoint_every``, ``resume``, ``overwrite``.

    Notes
    -----
    Creates nothing except a probe file of this process, removed at once.
    """
    problems = []
    for option, key in (("--out", "out"), ("--plot", "plot")):
        if cfg.get(key):
            problems.append(_file_problem(cfg[key], option))
    if cfg.get("out") and cfg.get("plot") and \
            os.path.abspath(cfg["out"]) == os.path.abspath(cfg["plot"]):
        problems.append(f"--out and --plot name the same file {cfg['out']!r}; pass two names.")
    if cfg.get("checkpoint_dir") and (cfg["checkpoint_every"] or cfg["resume"]):
        problem = _dir_problem(cfg["checkpoint_dir"], "--checkpoint-dir")
        problems.append(problem or _foreign_checkpoints(cfg))
    return [p for p in problems if p]
