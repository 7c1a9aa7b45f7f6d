r"""Atomic checkpoints of all agents' state: one ``.npz`` with a JSON manifest, no pickle.

A checkpoint is ``<directory>/ckpt-<step:08d>.npz``, a NumPy zip holding

* ``leaf_00000``, ``leaf_00001``, ... - the leaves of the (stacked, ``(n, ...)``) algorithm
  state in ``jax.tree_util`` flattening order;
* ``__manifest__`` - UTF-8 JSON as a ``uint8`` array: format name and version, the step,
  for every leaf its pytree path (``jax.tree_util.keystr``), shape, dtype and SHA-256, and
  free JSON ``metadata`` (the run's configuration and metric history).

Nothing is unpickled: :func:`numpy.load` runs with ``allow_pickle=False`` and the pytree
structure is rebuilt from a *template* (the state a fresh ``init`` produces), whose paths,
shapes and dtypes must match the manifest.

**Atomicity.** :func:`save` writes to a temporary file in the same directory, ``fsync``\ s
it, renames it over the final name with :func:`os.replace` (atomic on POSIX within a file
system), then ``fsync``\ s the directory. A crash at any point leaves either no new file or
a complete one; stray ``*.tmp`` files are ignored and removed by the next :func:`save`.
Older checkpoints are pruned only *after* the new one is in place (``keep`` newest), so a
good checkpoint always survives. :func:`latest` returns the newest checkpoint that passes
validation (manifest, shapes, checksums), skipping damaged ones with a warning.

Reference: the write-temp/fsync/rename protocol of e.g. SQLite's and LevelDB's manifest
updates; see also T. S. Pillai et al., "All file systems are not created equal: on the
complexity of crafting crash-consistent applications", OSDI 2014.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile

import jax
import numpy as np

__all__ = ["CheckpointError", "save", "load", "latest", "list_checkpoints", "FORMAT", "VERSION"]

FORMAT = "bluefog-jax-checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{8})\.npz$")


class CheckpointError(ValueError):
    """A checkpoint file is damaged or does not fit the state it is restored into."""


def _path_str(path) -> str:
    return jax.tree_util.keystr(path)


def _leaves_with_paths(tree):
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(_path_str(p), np.asarray(v)) for p, v in flat], treedef


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _check_dir(directory) -> str:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path (str or os.PathLike); got {type(directory).__name__}.")
    return os.fspath(directory)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def list_checkpoints(directory) -> list[tuple[int, str]]:
    """``(step, path)`` of every ``ckpt-*.npz`` in ``directory``, newest first (unvalidated)."""
    directory = _check_dir(directory)
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        m = _NAME.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


def save(directory, state, *, step: int, metadata: dict | None = None, keep: int = 2) -> str:
    """Write ``state`` atomically as ``<directory>/ckpt-<step>.npz``; return its path.

    Parameters
    ----------
    directory : path
        Created if missing.
    state : pytree of arrays
        E.g. the stacked state of :func:`bluefog_sim.run` (``result.state``).
    step : int >= 0
        The number of steps the state has taken (part of the file name).
    metadata : dict, optional
        JSON-serialisable data stored in the manifest (run configuration, history).
    keep : int >= 1
        Number of newest checkpoints kept; older ones are deleted after the new one is
        safely in place.
    """
    directory = _check_dir(directory)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int; got {step!r}.")
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(f"keep must be an int >= 1 (the newest checkpoint is always kept); got {keep!r}.")
    leaves, _ = _leaves_with_paths(state)
    if not leaves:
        raise ValueError("state must contain at least one array; got an empty pytree.")
    manifest = {
        "format": FORMAT, "version": VERSION, "step": int(step),
        "leaves": [{"path": p, "shape": list(a.shape), "dtype": a.dtype.str, "sha256": _sha(a)}
                   for p, a in leaves],
        "metadata": metadata or {},
    }
    try:
        blob = json.dumps(manifest).encode()
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-serialisable (no arrays or objects); {err}.") from None
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):  # debris of an earlier crash
        if name.startswith(".ckpt-") and name.endswith(".tmp"):
            try:
                os.remove(os.path.join(directory, name))
            except OSError:  # pragma: no cover
                pass
    arrays = {f"leaf_{k:05d}": a for k, (_, a) in enumerate(leaves)}
    arrays["__manifest__"] = np.frombuffer(blob, dtype=np.uint8)
    final = os.path.join(directory, f"ckpt-{int(step):08d}.npz")
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)
    for _, old in list_checkpoints(directory)[keep:]:
        os.remove(old)
    return final


def _read(path: str):
    """Manifest and arrays of ``path``, fully validated against the manifest's checksums."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__manifest__" not in z.files:
                raise CheckpointError(f"{path}: no __manifest__ entry; not a {FORMAT} file.")
            manifest = json.loads(bytes(z["__manifest__"]).decode())
            if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
                raise CheckpointError(
                    f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                    f"expected {FORMAT!r} version {VERSION}.")
            arrays = []
            for k, leaf in enumerate(manifest["leaves"]):
                a = z[f"leaf_{k:05d}"]
                if list(a.shape) != leaf["shape"] or a.dtype.str != leaf["dtype"] or _sha(a) != leaf["sha256"]:
                    raise CheckpointError(f"{path}: leaf {leaf['path']} fails its shape/dtype/checksum.")
                arrays.append(a)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}).") from None
    return manifest, arrays


def latest(directory) -> str | None:
    """Path of the newest checkpoint in ``directory`` that passes validation, or ``None``.

    Damaged files (truncated, bad checksum) are skipped with a ``RuntimeWarning``.
    """
    for _, path in list_checkpoints(directory):
        try:
            _read(path)
        except CheckpointError as err:
            warnings.warn(f"skipping damaged checkpoint: {err}", RuntimeWarning, stacklevel=2)
            continue
        return path
    return None


def load(path, template):
    """Restore a checkpoint into the structure of ``template``.

    Parameters
    ----------
    path : path
        A ``ckpt-*.npz`` file (see :func:`latest`).
    template : pytree
        A state with the expected structure, shapes and dtypes (e.g. a fresh ``init``, or
        ``jax.ShapeDtypeStruct`` leaves from ``jax.eval_shape``); only its structure and
        leaf metadata are used.

    Returns
    -------
    state : pytree like ``template`` (NumPy leaves)
    manifest : dict
        With ``"step"`` and ``"metadata"``.

    Raises
    ------
    CheckpointError
        If the file is damaged or was written for another model/optimizer/agent count.
    """
    path = _check_dir(path)
    manifest, arrays = _read(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = [(_path_str(p), jax.ShapeDtypeStruct(np.shape(v), np.dtype(getattr(v, "dtype", None)
                                                                    or np.asarray(v).dtype)))
            for p, v in flat]
    got = manifest["leaves"]
    if [p for p, _ in want] != [leaf["path"] for leaf in got]:
        raise CheckpointError(
            f"{path}: the checkpoint's state structure {[leaf['path'] for leaf in got]} differs "
            f"from the expected {[p for p, _ in want]}; it was written by another optimizer or "
            "model. Resume with the same configuration or start a fresh checkpoint directory.")
    for (p, a), leaf in zip(want, got):
        if list(a.shape) != leaf["shape"] or np.dtype(a.dtype).str != leaf["dtype"]:
            raise CheckpointError(
                f"{path}: leaf {p} has shape {tuple(leaf['shape'])} dtype {leaf['dtype']} in the "
                f"checkpoint but {tuple(a.shape)} {np.dtype(a.dtype).str} is expected (another model size or "
                "number of agents?). Resume with the same configuration.")
    return jax.tree_util.tree_unflatten(treedef, arrays), manifest
