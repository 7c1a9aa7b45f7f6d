r"""Atomic, validated checkpoints of all agents' state: one ``.npz``, a hashed JSON manifest.

A checkpoint is ``<directory>/ckpt-<step:08d>.npz``, a NumPy zip (stored, not compressed)
holding

* ``leaf_00000``, ``leaf_00001``, ... - the leaves of the (stacked, ``(n, ...)``) algorithm
  state in ``jax.tree_util`` flattening order;
* ``__manifest__`` - UTF-8 JSON as a ``uint8`` array: format name and version, the step,
  for every leaf its pytree path (``jax.tree_util.keystr``), shape, dtype and SHA-256, and
  free JSON ``metadata`` (the run's configuration and metric history);
* ``__manifest_sha256__`` - the SHA-256 of the manifest bytes, so that a leaf replaced
  together with its per-leaf hash is caught as well.

**Reading never trusts the file.** Nothing is unpickled and :func:`numpy.load` is not used:
only regular files are opened (never a FIFO, device or symbolic link, so nothing can hang
or lead outside the directory); the manifest is checked field by field; every member's
``.npy`` header must agree with the manifest (and with the *template*, the state a fresh
``init`` produces) before a byte of data is read, and the data read is bounded by the
file's size, so a header claiming terabytes costs nothing; extra or missing members are
refused. Every problem is a :class:`CheckpointError` naming the file and the reason;
:func:`restore_latest` then falls back to the newest checkpoint that validates and reports
the skipped ones.

**Atomicity.** :func:`save` writes a temporary file of its own in the same directory,
``fsync``\ s it, renames it onto the final name with :func:`os.replace` (atomic on POSIX
within a file system), then ``fsync``\ s the directory. A crash leaves either no new file or
a complete one. :func:`save` deletes nothing but its own temporary file (another writer's
temporary files are left alone and ignored by readers) and refuses to replace an existing
checkpoint unless told to; deleting old checkpoints is the caller's decision
(:func:`prunable`), which never selects the newest finite one.

Reference: the write-temp/fsync/rename protocol of e.g. SQLite's and LevelDB's manifest
updates; T. S. Pillai et al., "All file systems are not created equal: on the complexity of
crafting crash-consistent applications", OSDI 2014.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile

import numpy as np

from ._manifest import (FORMAT, VERSION, CheckpointError, _read_manifest, build_manifest,
                        read_verified)

__all__ = ["CheckpointError", "save", "load", "latest", "restore_latest", "list_checkpoints",
           "agent_count", "step_of", "prunable", "remove", "FORMAT", "VERSION"]

_NAME = re.compile(r"^ckpt-(\d{8})\.npz$")


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
    """``(step, path)`` of every ``ckpt-<8 digits>.npz`` entry of ``directory``, newest first.

    Only names are read (nothing is opened or validated); a missing directory gives ``[]``.
    """
    directory = _check_dir(directory)
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        m = _NAME.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


def step_of(path) -> int:
    """The step in a checkpoint's file name ``ckpt-<step:08d>.npz`` (``ValueError`` otherwise)."""
    m = _NAME.match(os.path.basename(os.fspath(path)))
    if not m:
        raise ValueError(f"path must name a checkpoint ckpt-<8 digits>.npz; got {os.fspath(path)!r}.")
    return int(m.group(1))


def _write_new(directory: str, final: str, arrays: dict, replace: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, final)
        else:  # link(2) fails if the name exists: never clobber another run's checkpoint
            _link_new(tmp, final)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)  # only this call's own temporary file
        raise


def _link_new(tmp: str, final: str) -> None:
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: check, then rename
        if os.path.lexists(final):
            raise FileExistsError(final) from None
        os.replace(tmp, final)
        return
    os.remove(tmp)


def save(directory, state, *, step: int, metadata: dict | None = None,
         replace: bool = False) -> str:
    """Write ``state`` atomically as ``<directory>/ckpt-<step:08d>.npz``; return its path.

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
    replace : bool
        Replace an existing checkpoint of the same step. Default ``False``: an existing file
        is never overwritten (``FileExistsError``).

    Raises
    ------
    FileExistsError
        The checkpoint exists and ``replace`` is false.
    """
    directory = _check_dir(directory)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int; got {step!r}.")
    arrays = build_manifest(state, int(step), metadata or {})
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, f"ckpt-{int(step):08d}.npz")
    try:
        _write_new(directory, final, arrays, bool(replace))
    except FileExistsError:
        raise FileExistsError(
            f"{final} already exists and was not written by this run; it is left as it is. "
            "Choose another checkpoint directory or allow replacing it.") from None
    _fsync_dir(directory)
    return final


def _open_regular(path: str, directory: str | None):
    """Open ``path`` for reading if it is a regular file inside ``directory``; never blocks."""
    if directory is not None:
        inside = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if inside != os.path.realpath(directory):
            raise CheckpointError(f"{path}: outside the checkpoint directory {directory}; not opened.")
    try:
        st = os.lstat(path)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file (a FIFO, device, directory or "
                              "symbolic link); not opened.")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be opened ({err.strerror}).") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped after lstat
        os.close(fd)
        raise CheckpointError(f"{path}: not a regular file; not read.")
    return os.fdopen(fd, "rb")


def _read(path: str, template=None, directory: str | None = None):
    with _open_regular(path, directory) as f:
        return read_verified(f, path, template)


def load(path, template, *, directory=None):
    """Restore a checkpoint into the structure of ``template``, validating everything.

    Parameters
    ----------
    path : path
        A ``ckpt-*.npz`` file (see :func:`latest`).
    template : pytree
        A state with the expected structure, shapes and dtypes (e.g. a fresh ``init``, or
        ``jax.ShapeDtypeStruct`` leaves from ``jax.eval_shape``); only its structure and
        leaf metadata are used.
    directory : path, optional
        Refuse ``path`` unless it lies directly in this directory.

    Returns
    -------
    state : pytree like ``template`` (NumPy leaves)
    manifest : dict
        With ``"step"`` and ``"metadata"``.

    Raises
    ------
    CheckpointError
        If the file is not a regular file, is damaged or crafted (manifest fields, hashes,
        members, headers), or was written for another model/optimizer/agent count.
    """
    import jax

    path = _check_dir(path)
    treedef = jax.tree_util.tree_structure(template)
    manifest, arrays = _read(path, template, None if directory is None else _check_dir(directory))
    return jax.tree_util.tree_unflatten(treedef, arrays), manifest


def agent_count(path, *, directory=None) -> int:
    """The number of agents of the checkpoint ``path``: the common leading axis of the leaf
    shapes its manifest records (the manifest's hash and members checked; the arrays are
    read and verified by :func:`load`)."""
    import zipfile

    path = _check_dir(path)
    try:
        with _open_regular(path, None if directory is None else _check_dir(directory)) as f, \
                zipfile.ZipFile(f) as zf:
            manifest = _read_manifest(zf, path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}).") from None
    sizes = {int(leaf["shape"][0]) for leaf in manifest["leaves"] if leaf["shape"]}
    if len(sizes) != 1:
        raise CheckpointError(f"{path}: its leaves have no common agent axis (leading sizes "
                              f"{sorted(sizes)}); not a checkpoint of stacked agent states.")
    return sizes.pop()


def latest(directory) -> str | None:
    """Path of the newest checkpoint of ``directory`` whose file validates, or ``None``.

    Validates the file on its own (manifest, members, hashes; no template); damaged files
    are skipped with a ``RuntimeWarning``. To restore into a state, use
    :func:`restore_latest`, which also checks shapes and dtypes against the template.
    """
    import warnings

    for _, path in list_checkpoints(directory):
        try:
            _read(path, None, _check_dir(directory))
        except CheckpointError as err:
            warnings.warn(f"skipping damaged checkpoint: {err}", RuntimeWarning, stacklevel=2)
            continue
        return path
    return None


def restore_latest(directory, template, *, check=None):
    """The newest checkpoint of ``directory`` that validates against ``template`` (and ``check``).

    Parameters
    ----------
    directory : path
    template : pytree
        As in :func:`load`.
    check : callable ``(manifest, state) -> None``, optional
        Further checks of the caller (e.g. the metadata it needs); raises
        :class:`CheckpointError` to reject a checkpoint.

    Returns
    -------
    path : str or None
        ``None`` when no checkpoint validates.
    state, manifest : as :func:`load` (``None`` when ``path`` is ``None``)
    skipped : list of (path, reason)
        The newer checkpoints that were rejected, newest first.
    """
    skipped = []
    for _, path in list_checkpoints(directory):
        try:
            state, manifest = load(path, template, directory=directory)
            if check is not None:
                check(manifest, state)
        except CheckpointError as err:
            skipped.append((path, str(err)))
            continue
        return path, state, manifest, skipped
    return None, None, None, skipped


def prunable(written, keep: int) -> list[str]:
    """The checkpoints a run may delete: all it wrote but the ``keep`` newest and the newest finite.

    Parameters
    ----------
    written : list of (path, finite)
        The checkpoints *this run* wrote (or adopted on resume), oldest first; ``finite``
        tells whether every value of the state was finite.
    keep : int >= 1

    Returns
    -------
    list of str
        Paths to delete. The newest finite checkpoint is never among them, so a run that
        diverges (with ``--allow-nonfinite``) keeps a state to go back to.
    """
    finite = [p for p, ok in written if ok]
    protect = {p for p, _ in written[-keep:]} | set(finite[-1:])
    return [p for p, _ in written if p not in protect]


def remove(path) -> None:
    """Delete the checkpoint ``path`` (one of :func:`prunable`'s); a missing file is fine.

    Only a regular file named like a checkpoint is deleted, never a directory or a link's
    target.
    """
    step_of(path)
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
