"""The checkpoint file format: building it, and reading it back without trusting it.

Private to :mod:`bluefog_train.checkpoint` (see its docstring for the format). Reading goes
member by member through :mod:`zipfile` and the ``.npy`` header parser of
:mod:`numpy.lib.format`; ``numpy.load`` and pickle are never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile

import numpy as np

FORMAT = "bluefog-jax-checkpoint"
VERSION = 2
MANIFEST = "__manifest__"
MANIFEST_SHA = "__manifest_sha256__"
#: Upper bound on the manifest (configuration + metric history) read from a file.
MAX_MANIFEST_BYTES = 256 * 2**20


class CheckpointError(ValueError):
    """A checkpoint file is damaged, crafted, or does not fit the state it is restored into."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def flatten_state(state) -> list:
    """``[(pytree path, contiguous array)]`` of ``state`` in ``jax.tree_util`` order.

    A flat ``dict`` of NumPy arrays is flattened without importing JAX (sorted keys, paths
    ``"['key']"``, exactly what ``jax.tree_util.keystr`` gives), so small writer processes
    stay light.
    """
    if isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, np.ndarray)
                                       for k, v in state.items()):
        return [(f"[{k!r}]", np.asarray(state[k], order="C")) for k in sorted(state)]
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    return [(jax.tree_util.keystr(p), np.asarray(v, order="C")) for p, v in flat]


def build_manifest(state, step: int, metadata: dict) -> dict:
    """The ``.npz`` members (name -> array) of a checkpoint of ``state``."""
    leaves = flatten_state(state)
    if not leaves:
        raise ValueError("state must contain at least one array; got an empty pytree.")
    manifest = {
        "format": FORMAT, "version": VERSION, "step": int(step),
        "leaves": [{"path": p, "shape": list(a.shape), "dtype": a.dtype.str,
                    "sha256": _sha(a.tobytes())} for p, a in leaves],
        "metadata": metadata,
    }
    try:
        blob = json.dumps(manifest, allow_nan=True).encode()
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-serialisable (no arrays or objects); {err}.") from None
    arrays = {f"leaf_{k:05d}": a for k, (_, a) in enumerate(leaves)}
    arrays[MANIFEST] = np.frombuffer(blob, dtype=np.uint8)
    arrays[MANIFEST_SHA] = np.frombuffer(_sha(blob).encode(), dtype=np.uint8)
    return arrays


def _read_member(zf: zipfile.ZipFile, name: str, path: str, shape=None, dtype=None,
                 max_bytes: int | None = None) -> np.ndarray:
    """One ``.npy`` member, its header checked before any data is read."""
    info = zf.getinfo(name + ".npy")
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
        raise CheckpointError(f"{path}: member {name} is compressed or its sizes disagree; "
                              "checkpoints are written uncompressed.")
    with zf.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise CheckpointError(f"{path}: member {name} has .npy version {version}.")
        got_shape, fortran, got_dtype = reader(fp, max_header_size=10000)
        if got_dtype.hasobject:
            raise CheckpointError(f"{path}: member {name} holds Python objects; never unpickled.")
        if (shape is not None and tuple(got_shape) != tuple(shape)) or \
                (dtype is not None and got_dtype.str != dtype):
            raise CheckpointError(
                f"{path}: member {name} has shape {tuple(got_shape)} dtype {got_dtype.str} in its "
                f"header but the manifest says {tuple(shape)} {dtype}.")
        nbytes = math.prod(got_shape) * got_dtype.itemsize
        if nbytes > info.file_size or (max_bytes is not None and nbytes > max_bytes):
            raise CheckpointError(f"{path}: member {name} claims {nbytes} bytes, more than it "
                                  f"holds ({info.file_size}); damaged or crafted.")
        data = fp.read(nbytes)
        if len(data) != nbytes or fp.read(1):
            raise CheckpointError(f"{path}: member {name} is truncated or has trailing data.")
    a = np.frombuffer(data, got_dtype).reshape(got_shape, order="F" if fortran else "C")
    return np.array(a, order="C")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_leaf(leaf, k: int, path: str) -> None:
    ok = (isinstance(leaf, dict) and isinstance(leaf.get("path"), str)
          and isinstance(leaf.get("shape"), list)
          and all(_is_int(d) and d >= 0 for d in leaf["shape"])
          and isinstance(leaf.get("dtype"), str) and isinstance(leaf.get("sha256"), str))
    if not ok:
        raise CheckpointError(f"{path}: manifest leaf {k} is not {{path: str, shape: [int], "
                              f"dtype: str, sha256: str}}; got {str(leaf)[:120]}.")
    try:
        dt = np.dtype(leaf["dtype"])
    except TypeError:
        raise CheckpointError(f"{path}: manifest leaf {k} has an unknown dtype {leaf['dtype']!r}.") from None
    if dt.hasobject:
        raise CheckpointError(f"{path}: manifest leaf {k} has dtype {leaf['dtype']!r} (Python objects).")


def check_manifest(manifest, path: str) -> None:
    """Raise :class:`CheckpointError` unless ``manifest`` has the format's fields and types."""
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: the manifest is a {type(manifest).__name__}, not a JSON object.")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"expected {FORMAT!r} version {VERSION}.")
    if not _is_int(manifest.get("step")) or manifest["step"] < 0:
        raise CheckpointError(f"{path}: the manifest's step {manifest.get('step')!r} is not an int >= 0.")
    leaves = manifest.get("leaves")
    if not isinstance(leaves, list) or not leaves:
        raise CheckpointError(f"{path}: the manifest's leaves {str(leaves)[:60]} is not a non-empty list.")
    for k, leaf in enumerate(leaves):
        _check_leaf(leaf, k, path)
    if not isinstance(manifest.get("metadata"), dict):
        raise CheckpointError(f"{path}: the manifest's metadata is missing or not a JSON object.")


def check_against_template(manifest: dict, template, path: str) -> None:
    """Raise :class:`CheckpointError` unless the leaves' paths, shapes, dtypes fit ``template``."""
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(template)
    want = [(jax.tree_util.keystr(p), tuple(np.shape(v)),
             np.dtype(getattr(v, "dtype", None) or np.asarray(v).dtype).str) for p, v in flat]
    got = manifest["leaves"]
    if [p for p, _, _ in want] != [leaf["path"] for leaf in got]:
        raise CheckpointError(
            f"{path}: the checkpoint's state structure {[leaf['path'] for leaf in got]} differs "
            f"from the expected {[p for p, _, _ in want]}; it was written by another optimizer or "
            "model. Resume with the same configuration or start a fresh checkpoint directory.")
    for (p, shape, dtype), leaf in zip(want, got):
        if shape != tuple(leaf["shape"]) or dtype != leaf["dtype"]:
            raise CheckpointError(
                f"{path}: leaf {p} has shape {tuple(leaf['shape'])} dtype {leaf['dtype']} in the "
                f"checkpoint but {shape} {dtype} is expected (another model size or number of "
                "agents?). Resume with the same configuration.")


def _read_manifest(zf: zipfile.ZipFile, path: str) -> dict:
    names = set(zf.namelist())
    if MANIFEST + ".npy" not in names or MANIFEST_SHA + ".npy" not in names:
        raise CheckpointError(f"{path}: no {MANIFEST} / {MANIFEST_SHA} entry; not a {FORMAT} "
                              f"version {VERSION} file.")
    blob = _read_member(zf, MANIFEST, path, max_bytes=MAX_MANIFEST_BYTES)
    digest = _read_member(zf, MANIFEST_SHA, path, shape=(64,), dtype="|u1")
    if blob.ndim != 1 or blob.dtype != np.uint8 or _sha(blob.tobytes()) != digest.tobytes().decode("ascii", "replace"):
        raise CheckpointError(f"{path}: the manifest does not match its SHA-256; damaged or edited.")
    try:
        manifest = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: the manifest is not UTF-8 JSON ({err}).") from None
    check_manifest(manifest, path)
    expected = {f"leaf_{k:05d}.npy" for k in range(len(manifest["leaves"]))} | \
        {MANIFEST + ".npy", MANIFEST_SHA + ".npy"}
    if names != expected:
        extra, missing = sorted(names - expected), sorted(expected - names)
        raise CheckpointError(f"{path}: members do not match the manifest (extra {extra[:5]}, "
                              f"missing {missing[:5]}).")
    return manifest


def read_verified(f, path: str, template=None):
    """``(manifest, arrays)`` of the open checkpoint file ``f``, every check passed."""
    try:
        with zipfile.ZipFile(f) as zf:
            manifest = _read_manifest(zf, path)
            if template is not None:
                check_against_template(manifest, template, path)
            arrays = []
            for k, leaf in enumerate(manifest["leaves"]):
                a = _read_member(zf, f"leaf_{k:05d}", path, leaf["shape"], leaf["dtype"])
                if _sha(a.tobytes()) != leaf["sha256"]:
                    raise CheckpointError(f"{path}: leaf {leaf['path']} fails its shape/dtype/checksum.")
                arrays.append(a)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}).") from None
    return manifest, arrays
