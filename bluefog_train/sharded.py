r"""Sharded checkpoints: under MPI every rank writes its own shard; a hashed manifest, last.

A sharded checkpoint is a directory ``<checkpoint-dir>/ckpt-<step:08d>/`` holding

* ``shard-<rank:05d>-of-<size:05d>.npz`` - rank ``rank``'s own (unstacked) state, in the
  single-file format of :mod:`bluefog_train.checkpoint` (per-leaf SHA-256, hashed inner
  manifest); written by that rank alone, so no state travels to rank 0;
* ``manifest.json`` - written by rank 0 **after** every shard is on disk: ``{"manifest":
  body, "sha256": SHA-256 of the canonical JSON of body}`` where ``body`` holds the format
  name and version, the step, the world size, for every shard its file name, byte count and
  SHA-256 of the whole file, and the run's ``metadata`` (configuration, metric history).

**Write protocol.** Each file is written to a temporary file of its own in the same
directory, ``fsync``\ ed, renamed onto its final name (:func:`os.replace`, atomic on POSIX),
and the directory is ``fsync``\ ed. The manifest comes last, so a checkpoint is *complete*
exactly when its manifest exists: a crash at any moment leaves either the previous complete
checkpoint as the newest, or a directory without manifest (ignored by readers, replaced by
the next writer of that step).

**Read protocol.** Nothing is trusted: the manifest's hash, fields and shard list are
checked; every shard named must exist (a partial checkpoint is refused, naming the missing
file) and its bytes must match the manifest's SHA-256 before it is parsed (a tampered shard
is refused, naming the file); then the shard is read with the checks of
:mod:`bluefog_train.checkpoint`. Readers fall back to the newest checkpoint that passes.

Reference: the same write-temp/fsync/rename protocol as :mod:`bluefog_train.checkpoint`;
sharded "each process writes its part, a coordinator commits a metadata file last" is the
design of e.g. ``torch.distributed.checkpoint`` and TensorStore/Orbax checkpoints.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tempfile

import numpy as np

from ._manifest import CheckpointError, build_manifest, read_verified
from .checkpoint import _fsync_dir, _open_regular

__all__ = ["FORMAT", "VERSION", "MANIFEST", "shard_name", "save_shard", "write_manifest",
           "read_manifest", "verify_shard", "load_shard", "load_stacked", "list_sharded",
           "step_of", "remove"]

FORMAT = "bluefog-jax-sharded-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 2**20
_DIR = re.compile(r"^ckpt-(\d{8})$")
_SHARD = re.compile(r"^shard-(\d{5})-of-(\d{5})\.npz$")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shard_name(rank: int, size: int) -> str:
    """``shard-<rank:05d>-of-<size:05d>.npz``."""
    return f"shard-{int(rank):05d}-of-{int(size):05d}.npz"


def step_dir(directory, step: int) -> str:
    """``<directory>/ckpt-<step:08d>``."""
    return os.path.join(os.fspath(directory), f"ckpt-{int(step):08d}")


def step_of(path) -> int:
    """The step of a sharded checkpoint directory ``ckpt-<step:08d>`` (``ValueError`` else)."""
    m = _DIR.match(os.path.basename(os.path.normpath(os.fspath(path))))
    if not m:
        raise ValueError(f"path must name a sharded checkpoint ckpt-<8 digits>; got {os.fspath(path)!r}.")
    return int(m.group(1))


def _write_atomic(directory: str, final: str, data: bytes) -> None:
    """``data`` to ``final``: temporary file, fsync, rename, fsync of the directory."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)  # only this call's own temporary file
        raise
    _fsync_dir(directory)


def _check_step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int; got {step!r}.")
    return int(step)


def _check_rank(rank, size) -> tuple[int, int]:
    ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (rank, size))
    if not ok or not 0 <= rank < size:
        raise ValueError(f"rank and size must be ints with 0 <= rank < size; got rank={rank!r}, "
                         f"size={size!r}.")
    return int(rank), int(size)


def save_shard(directory, step: int, rank: int, size: int, state, *,
               replace: bool = False) -> dict:
    """Write rank ``rank``'s ``state`` as its shard of the checkpoint at ``step``.

    Parameters
    ----------
    directory : path
        The checkpoint directory (``--checkpoint-dir``); ``ckpt-<step>/`` is created in it.
    step : int >= 0
    rank, size : int
        This rank and the world size (``0 <= rank < size``).
    state : pytree of arrays
        This rank's own, unstacked state.
    replace : bool
        Replace a *complete* checkpoint of this step. A directory without manifest (left by
        a crash) is always replaced shard by shard.

    Returns
    -------
    dict
        ``{"file", "bytes", "sha256", "finite"}``: the manifest entry of this shard
        (``finite``: every inexact value of ``state`` is finite).

    Raises
    ------
    FileExistsError
        The step's checkpoint is complete and ``replace`` is false.
    """
    step, (rank, size) = _check_step(step), _check_rank(rank, size)
    where = step_dir(directory, step)
    if not replace and os.path.lexists(os.path.join(where, MANIFEST)):
        raise FileExistsError(f"{where} is a complete checkpoint not written by this run; it is "
                              "left as it is. Choose another checkpoint directory or allow "
                              "replacing it (--overwrite).")
    members = build_manifest(state, step, {"shard": rank, "shards": size})
    buf = io.BytesIO()
    np.savez(buf, **members)
    data = buf.getvalue()
    os.makedirs(where, exist_ok=True)
    name = shard_name(rank, size)
    _write_atomic(where, os.path.join(where, name), data)
    finite = all(np.isfinite(a).all() for k, a in members.items()
                 if k.startswith("leaf_") and np.issubdtype(a.dtype, np.inexact))
    return {"file": name, "bytes": len(data), "sha256": _sha(data), "finite": bool(finite)}


def write_manifest(directory, step: int, shards: list, metadata: dict | None = None) -> str:
    """Commit the checkpoint at ``step``: write its manifest (rank 0, after every shard).

    Parameters
    ----------
    directory : path
    step : int
    shards : list of dict
        :func:`save_shard`'s return values, in rank order.
    metadata : dict, optional
        JSON-serialisable (run configuration, metric history).

    Returns
    -------
    str
        The checkpoint's directory.
    """
    step = _check_step(step)
    if not isinstance(shards, list) or not shards:
        raise ValueError(f"shards must be a non-empty list of save_shard() results; got {shards!r}.")
    body = {"format": FORMAT, "version": VERSION, "step": step, "size": len(shards),
            "shards": [{k: s[k] for k in ("file", "bytes", "sha256")} for s in shards],
            "metadata": metadata or {}}
    try:
        text = json.dumps(body, sort_keys=True, allow_nan=True)
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-serialisable; {err}.") from None
    where = step_dir(directory, step)
    _remove_stale_shards(where, {s["file"] for s in shards})
    blob = json.dumps({"manifest": body, "sha256": _sha(text.encode())}, allow_nan=True)
    _write_atomic(where, os.path.join(where, MANIFEST), blob.encode())
    return where


def _remove_stale_shards(where: str, keep: set) -> None:
    """Shard files of an interrupted write of this step by a job of another size (a crash,
    then a ``bfrun --elastic`` relaunch on fewer ranks): removed before the commit, so a
    complete checkpoint holds exactly the shards its manifest names."""
    for name in os.listdir(where):
        if _SHARD.match(name) and name not in keep:
            os.remove(os.path.join(where, name))


def _read_small(path: str, directory: str) -> bytes:
    with _open_regular(path, directory) as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; not a manifest.")
    return data


def _check_body(body, path: str) -> dict:
    if not isinstance(body, dict) or body.get("format") != FORMAT or body.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} version {VERSION} manifest.")
    step, shards, size = body.get("step"), body.get("shards"), body.get("size")
    if not (isinstance(step, int) and step >= 0 and isinstance(size, int) and size >= 1
            and isinstance(shards, list) and len(shards) == size
            and isinstance(body.get("metadata"), dict)):
        raise CheckpointError(f"{path}: the manifest's step/size/shards/metadata are malformed.")
    for r, s in enumerate(shards):
        if not (isinstance(s, dict) and s.get("file") == shard_name(r, size)
                and isinstance(s.get("bytes"), int) and isinstance(s.get("sha256"), str)):
            raise CheckpointError(f"{path}: manifest entry of shard {r} is malformed; got "
                                  f"{str(s)[:120]}.")
    return body


def read_manifest(path) -> dict:
    """The verified manifest body of the sharded checkpoint directory ``path``.

    Checks the manifest's own SHA-256 and fields, that the directory's step matches, and
    that every shard it names exists as a regular file of the recorded size (a partial
    checkpoint raises, naming the first missing shard). Shard contents are not read.

    Raises
    ------
    CheckpointError
        Naming the file and the reason.
    """
    path = os.fspath(path)
    mpath = os.path.join(path, MANIFEST)
    if not os.path.lexists(mpath):
        raise CheckpointError(f"{mpath}: missing; the checkpoint is incomplete (its writing "
                              "was interrupted); not used.")
    try:
        outer = json.loads(_read_small(mpath, path).decode())
        body = outer["manifest"]
        ok = outer["sha256"] == _sha(json.dumps(body, sort_keys=True, allow_nan=True).encode())
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{mpath}: unreadable manifest ({type(err).__name__}: {err}).") from None
    if not ok:
        raise CheckpointError(f"{mpath}: the manifest does not match its SHA-256; damaged or edited.")
    body = _check_body(body, mpath)
    if body["step"] != step_of(path):
        raise CheckpointError(f"{mpath}: records step {body['step']} but lies in {path}.")
    for s in body["shards"]:
        f = os.path.join(path, s["file"])
        try:
            st = os.lstat(f)
        except OSError:
            raise CheckpointError(f"{f}: missing; the checkpoint is partial; not used.") from None
        if not stat.S_ISREG(st.st_mode) or st.st_size != s["bytes"]:
            raise CheckpointError(f"{f}: not a regular file of {s['bytes']} bytes as the manifest "
                                  f"records (found {st.st_size}); damaged or replaced; not used.")
    return body


def verify_shard(path, body: dict, rank: int) -> bytes:
    """The bytes of shard ``rank`` of the checkpoint ``path`` after their SHA-256 matched."""
    entry = body["shards"][rank]
    f = os.path.join(os.fspath(path), entry["file"])
    with _open_regular(f, os.fspath(path)) as fh:
        data = fh.read(entry["bytes"] + 1)
    if len(data) != entry["bytes"] or _sha(data) != entry["sha256"]:
        raise CheckpointError(f"{f}: its SHA-256 does not match the manifest; the shard was "
                              "modified or damaged after it was written; not used.")
    return data


def load_shard(path, template, rank: int, body: dict | None = None):
    """Rank ``rank``'s state from the sharded checkpoint ``path``, every check passed.

    Parameters
    ----------
    path : path
        A ``ckpt-<step>`` directory.
    template : pytree
        This rank's state structure (shapes and dtypes without the agent axis).
    rank : int
    body : dict, optional
        The manifest from :func:`read_manifest` (read if not given).

    Returns
    -------
    state, manifest : pytree like ``template``; dict with ``"step"`` and ``"metadata"``.
    """
    body = read_manifest(path) if body is None else body
    if not 0 <= rank < body["size"]:
        raise CheckpointError(f"{path}: has {body['size']} shards; no shard for rank {rank}.")
    import jax

    data = verify_shard(path, body, rank)
    f = os.path.join(os.fspath(path), body["shards"][rank]["file"])
    _, arrays = read_verified(io.BytesIO(data), f, template)  # the verified bytes, not a re-read
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), arrays)
    return state, {"step": body["step"], "metadata": body["metadata"], "size": body["size"]}


def load_stacked(path, template):
    """Every shard of ``path`` stacked along a new leading agent axis (simulator resume).

    ``template`` is the stacked ``(n, ...)`` structure; ``n`` must equal the number of shards.
    """
    import jax

    body = read_manifest(path)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    n = {int(np.shape(a)[0]) for a in leaves if np.ndim(a)}
    if n != {body["size"]}:
        raise CheckpointError(f"{path}: has {body['size']} shards but the run has {sorted(n)} "
                              "agents; resume with the same number of agents.")
    local = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], a.dtype), template)
    parts = [load_shard(path, local, r, body)[0] for r in range(body["size"])]
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *parts)
    return stacked, {"step": body["step"], "metadata": body["metadata"]}


def list_sharded(directory, *, complete_only: bool = False) -> list[tuple[int, str]]:
    """``(step, path)`` of every ``ckpt-<8 digits>`` directory, newest first (names only;
    ``complete_only``: only those with a manifest file)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        m, path = _DIR.match(name), os.path.join(directory, name)
        if m and os.path.isdir(path) and not os.path.islink(path) and (
                not complete_only or os.path.lexists(os.path.join(path, MANIFEST))):
            found.append((int(m.group(1)), path))
    return sorted(found, reverse=True)


def remove(path) -> None:
    """Delete the sharded checkpoint ``path``: manifest first (so it is never seen complete
    with shards missing), then its shards and temporary files, then the directory."""
    path = os.fspath(path)
    step_of(path)
    if not os.path.isdir(path) or os.path.islink(path):
        return
    try:
        os.remove(os.path.join(path, MANIFEST))
    except FileNotFoundError:
        pass
    for name in os.listdir(path):
        if _SHARD.match(name) or name.startswith(".tmp-"):
            os.remove(os.path.join(path, name))
    try:
        os.rmdir(path)
    except OSError:  # something else lives there: leave it
        pass
