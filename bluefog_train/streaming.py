"""Streaming metrics of a ``bluefog-train`` run: CSV, TensorBoard, W&B, run metadata.

The engine hands every record to its listeners after each dispatch
(:func:`bluefog.engine.record_listener`); :class:`MetricsStream` is such a listener, active
on rank 0 only, that appends the new records at once (flushed, so another process can read
them while the run goes on):

* **CSV** (``--metrics-csv PATH``; by default ``<out>.csv`` next to ``--out``): one row per
  record, columns ``step`` (counted from the first step of the run, resumed runs included),
  ``wall_seconds`` (since the start of this invocation), ``bytes_sent_per_agent``
  (cumulative: ``step x`` the per-step volume of
  :func:`algorithms.optim.communication_bytes_per_step`) and every metric.
* **TensorBoard** event files (``--tensorboard DIR``; by default ``<out>_tb/`` when
  ``tensorboardX`` or ``torch.utils.tensorboard`` is importable), one scalar per metric,
  with the record's wall time.
* **Weights & Biases** with ``--wandb`` (``--wandb-project``) when ``wandb`` is installed;
  without it a warning says so and the run goes on.

:func:`run_metadata` is the record of how the run was made: the command line, versions
(Python, jax, jaxlib, mpi4jax, mpi4py and the MPI library), the git commit of the source
tree, and the topology's fingerprint (SHA-256 of its size and weights); it goes into the
results JSON (``"run"``) and next to the CSV (``<csv>.run.json``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

__all__ = ["run_metadata", "MetricsStream", "stream_paths", "streaming", "tensorboard_available"]


def _version(dist: str):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_metadata(cfg: dict, topology, backend_name: str) -> dict:
    """How this run was made (see the module docstring); JSON-able."""
    mpi_library = None
    if backend_name == "mpi":
        from mpi4py import MPI

        mpi_library = MPI.Get_library_version().splitlines()[0].strip()
    return {
        "command": cfg.get("command_line") or [Path(sys.argv[0]).name] + sys.argv[1:],
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"python": sys.version.split()[0], "jax": _version("jax"),
                     "jaxlib": _version("jaxlib"), "mpi4jax": _version("mpi4jax"),
                     "mpi4py": _version("mpi4py"), "mpi_library": mpi_library,
                     "bluefog_jax": _version("bluefog-jax")},
        "git_commit": _git_commit(),
        "topology": {"name": topology.name, "fingerprint": topology.fingerprint},
        "backend": backend_name,
    }


def _tensorboard_writer(logdir: str):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(logdir)


def tensorboard_available() -> bool:
    """Whether ``tensorboardX`` or ``torch.utils.tensorboard`` can be imported."""
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("tensorboardX", "torch"))


def stream_paths(cfg: dict) -> tuple[str | None, str | None]:
    """``(csv, tensorboard_dir)`` of a configuration (defaults derived from ``--out``)."""
    out = cfg.get("out")
    stem = str(Path(out).with_suffix("")) if out else None
    csv_path = cfg.get("metrics_csv") or (stem + ".csv" if stem else None)
    tb = cfg.get("tensorboard") or (stem + "_tb" if stem and tensorboard_available() else None)
    return csv_path, tb


class MetricsStream:
    """A record listener writing CSV / TensorBoard / W&B as records arrive (rank 0 only).

    Parameters
    ----------
    cfg : dict
        The validated configuration (``metrics_csv``, ``tensorboard``, ``wandb``,
        ``wandb_project``, ``out``).
    start : int
        The step the run starts from (resumed runs), added to the engine's steps.
    bytes_per_step : float
        Bytes each agent sends per step.
    meta : dict
        :func:`run_metadata`, written next to the CSV.
    """

    def __init__(self, cfg: dict, start: int, bytes_per_step: float, meta: dict):
        self.start, self.bytes_per_step = int(start), float(bytes_per_step)
        self.t0 = time.perf_counter()
        self.csv_path, tb = stream_paths(cfg)
        self.writer, self.fh, self.tb, self.wandb = None, None, None, None
        if self.csv_path:
            Path(self.csv_path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.csv_path + ".run.json").write_text(json.dumps(meta, indent=1))
            self.fh = open(self.csv_path, "w", newline="")
        if tb:
            self.tb = _tensorboard_writer(tb)
        if cfg.get("wandb"):
            try:
                import wandb
            except ImportError:
                warnings.warn("--wandb: the wandb package is not installed (pip install wandb); "
                              "the run goes on without W&B logging.", RuntimeWarning)
            else:
                self.wandb = wandb.init(project=cfg.get("wandb_project") or "bluefog-jax",
                                        config={**cfg, "run": meta})

    def __call__(self, steps, metrics: dict) -> None:
        wall = time.perf_counter() - self.t0
        names = sorted(metrics)
        if self.fh is not None and self.writer is None:
            self.writer = csv.writer(self.fh)
            self.writer.writerow(["step", "wall_seconds", "bytes_sent_per_agent"] + names)
        for i, step in enumerate(steps):
            step = self.start + int(step)
            values = {k: float(metrics[k][i]) for k in names}
            if self.writer is not None:
                self.writer.writerow([step, f"{wall:.3f}", f"{step * self.bytes_per_step:.0f}"]
                                     + [repr(values[k]) for k in names])
            if self.tb is not None:
                for k, v in values.items():
                    self.tb.add_scalar(k, v, step, walltime=time.time())
            if self.wandb is not None:
                self.wandb.log({**values, "bytes_sent_per_agent": step * self.bytes_per_step},
                               step=step)
        if self.fh is not None:
            self.fh.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        """Close the files (and finish the W&B run)."""
        if self.fh is not None:
            self.fh.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


class streaming:
    """Context manager around a run: on rank 0, a :class:`MetricsStream` listens to the
    engine's records; ``as meta`` gives :func:`run_metadata` (on every rank)."""

    def __init__(self, cfg: dict, exp: dict, backend, start: int):
        self.cfg, self.exp, self.backend, self.start = cfg, exp, backend, start
        self.stream = None

    def __enter__(self) -> dict:
        from bluefog.engine import add_record_listener

        meta = run_metadata(self.cfg, self.exp["topology"], self.backend.name)
        if self.backend.rank == 0:
            self.stream = MetricsStream(self.cfg, self.start, self.exp["bytes_per_step"], meta)
            add_record_listener(self.stream)
        return meta

    def __exit__(self, *exc) -> None:
        from bluefog.engine import remove_record_listener

        if self.stream is not None:
            remove_record_listener(self.stream)
            self.stream.close()
