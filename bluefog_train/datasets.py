r"""MNIST, Fashion-MNIST and CIFAR-10 from their distribution files in a directory.

No download (give the directory where the files are) and no pickle: the IDX files of MNIST
and Fashion-MNIST and the *binary* batches of CIFAR-10 are read with NumPy as raw bytes.

=================  =====================================  ==================================
data set           files in ``data_dir``                  where to get them
=================  =====================================  ==================================
``mnist``          ``train-images-idx3-ubyte.gz``,        http://yann.lecun.com/exdb/mnist/
                   ``train-labels-idx1-ubyte.gz``,        (mirror: https://ossci-datasets.
                   ``t10k-images-idx3-ubyte.gz``,         s3.amazonaws.com/mnist/)
                   ``t10k-labels-idx1-ubyte.gz``
``fashion_mnist``  the same four names                    https://github.com/zalandoresearch/
                                                          fashion-mnist (``data/fashion``)
``cifar10``        ``data_batch_1.bin`` ..                https://www.cs.toronto.edu/~kriz/
                   ``data_batch_5.bin``,                  cifar.html, "CIFAR-10 binary
                   ``test_batch.bin`` (directly or in     version" (``cifar-10-binary.tar.gz``,
                   ``cifar-10-batches-bin/``)             MD5 ``c32a1d4ab5d03f1284b67883e8d87530``)
=================  =====================================  ==================================

IDX files may also be given uncompressed (the names without ``.gz``). An IDX file is a
big-endian header ``0 0 <type> <ndim>``, ``ndim`` uint32 sizes, then the values (type
``0x08``: unsigned bytes); a CIFAR-10 binary record is one label byte and 3072 pixel bytes
(1024 red, 1024 green, 1024 blue, row-major 32x32), 10000 records per file.

Checksums: :data:`MD5` holds the MD5 of the official ``.gz`` files as published with the data
sets (and used by torchvision); :data:`REPACKAGED_MD5` those of known re-packagings that
re-compressed them (Debian's ``dataset-fashion-mnist``: ``apt-get install
dataset-fashion-mnist``, then ``--data-dir /usr/share/datasets/fashion-mnist``).
``verify="warn"`` (default) warns on a mismatch or a file without a known checksum;
``"strict"`` raises ``ValueError``; ``"off"`` skips hashing.

Shards: :func:`load_agent_shards` splits the training set across ``n`` agents with
:func:`algorithms.problems.split_dataset` and returns only the requested agents' rows (under
MPI: ``agents=[rank]``), reading all labels (the split needs them) but keeping only those
images; uncompressed IDX files are memory-mapped, so only those rows are read from disk, and
``.gz`` files and CIFAR-10 batches are read in blocks of a few MiB, keeping only those rows.
:func:`agent_labels` gives every agent's labels without their images.

References: Y. LeCun, C. Cortes, C. Burges, "The MNIST database" (1998); H. Xiao, K. Rasul,
R. Vollgraf, "Fashion-MNIST", arXiv:1708.07747 (2017); A. Krizhevsky, "Learning multiple
layers of features from tiny images", tech. report (2009).
"""

from __future__ import annotations

import gzip
import hashlib
import warnings
from pathlib import Path

import numpy as np

from algorithms.problems import split_dataset

__all__ = ["DATASETS", "MD5", "REPACKAGED_MD5", "read_idx", "load_dataset", "load_agent_shards", "agent_labels"]

DATASETS = ("mnist", "fashion_mnist", "cifar10")
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
_SOURCES = {"mnist": "http://yann.lecun.com/exdb/mnist/ (or the mirror "
                     "https://ossci-datasets.s3.amazonaws.com/mnist/)",
            "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist (data/fashion)",
            "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html ('CIFAR-10 binary "
                       "version', cifar-10-binary.tar.gz; extract it into the directory)"}

#: Bytes decompressed (``.gz``) or read (CIFAR-10) per block when only some rows are kept.
BLOCK_BYTES = 4 << 20

#: MD5 of the official files (data set -> file name -> hex digest).
MD5 = {
    "mnist": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
              "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
              "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    "fashion_mnist": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                      "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                      "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                      "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    "cifar10": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
}

#: Known re-packagings whose ``.gz`` files were re-compressed (so their MD5 differs from the
#: official one): data set -> distribution -> file name -> MD5, as listed in that package's
#: own ``md5sums`` (checked by dpkg at install).
REPACKAGED_MD5 = {
    "fashion_mnist": {
        "Debian package dataset-fashion-mnist 0.0~git20200523.55506a9-1 "
        "(/usr/share/datasets/fashion-mnist)": {
            "train-images-idx3-ubyte.gz": "cf8536b0aa1a6ac5fa3f23001093305c",
            "train-labels-idx1-ubyte.gz": "10bea18fdb374794d4bb42e356e600c9",
            "t10k-images-idx3-ubyte.gz": "f78720b4224f21cce2f2ccf2d7a94c9a",
            "t10k-labels-idx1-ubyte.gz": "0d30e22e447f3c33dab9ed536400ac01"}},
}


def read_idx(path, rows=None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes; only ``rows`` of it if given.

    Parameters
    ----------
    path : path-like
    rows : array of int, optional
        Indices along the first axis to keep. A raw file is memory-mapped, so only these
        rows are read; a ``.gz`` file is decompressed in blocks of about :data:`BLOCK_BYTES`,
        keeping only these rows, so memory holds one block plus the result, never the whole
        file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        head = fh.read(4)
        if len(head) != 4 or head[:2] != b"\0\0" or head[2] != 0x08 or not 1 <= head[3] <= 4:
            raise ValueError(f"{path}: not an IDX file of unsigned bytes (header {head!r}; "
                             "expected 0x00 0x00 0x08 <ndim>).")
        shape = tuple(int(v) for v in np.frombuffer(fh.read(4 * head[3]), ">u4"))
        offset = 4 + 4 * head[3]
        if path.suffix != ".gz":
            data = np.memmap(path, np.uint8, "r", offset=offset, shape=shape)
            return np.array(data if rows is None else data[np.asarray(rows)])
        if rows is not None:
            return _gz_rows(fh, path, shape, np.asarray(rows, np.int64))
        data = np.frombuffer(fh.read(), np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {data.size} "
                         "values (truncated or corrupt; fetch it again).")
    return data.reshape(shape).copy()


def _gz_rows(fh, path: Path, shape: tuple, rows: np.ndarray) -> np.ndarray:
    """``rows`` of an IDX body of ``shape`` read block by block from the open ``fh``."""
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
        raise IndexError(f"{path}: rows must lie in [0, {shape[0]}); got "
                         f"[{rows.min()}, {rows.max()}].")
    row_bytes = int(np.prod(shape[1:], dtype=np.int64))
    out = np.empty((rows.size,) + shape[1:], np.uint8)
    block = max(1, BLOCK_BYTES // max(row_bytes, 1))
    for start in range(0, shape[0], block):
        count = min(block, shape[0] - start)
        raw = fh.read(count * row_bytes)
        if len(raw) != count * row_bytes:
            raise ValueError(f"{path}: header says shape {shape} but the file ends after "
                             f"{start * row_bytes + len(raw)} values (truncated or corrupt; "
                             "fetch it again).")
        hit = (rows >= start) & (rows < start + count)
        if hit.any():
            out[hit] = np.frombuffer(raw, np.uint8).reshape((count,) + shape[1:])[rows[hit] - start]
    if fh.read(1):
        raise ValueError(f"{path}: the file holds more values than its header's shape {shape} "
                         "(corrupt; fetch it again).")
    return out


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(name: str, paths, verify: str) -> None:
    if verify == "off":
        return
    for p in paths:
        want = MD5[name].get(p.name)
        if want is None:
            msg = (f"{p}: no published checksum for this file name (official: "
                   f"{sorted(MD5[name])}), so it is not verified.")
        elif (got := _md5(p)) != want and not _repackaged(name, p.name, got):
            msg = f"{p}: MD5 {got} differs from the official {want}; fetch it again."
        else:
            continue
        if verify == "strict":
            raise ValueError(msg + " Pass verify='warn' (--data-verify warn) to go on anyway.")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _repackaged(name: str, file: str, md5: str) -> str | None:
    """The known re-packaging (:data:`REPACKAGED_MD5`) whose ``file`` has this MD5, if any."""
    for source, files in REPACKAGED_MD5.get(name, {}).items():
        if files.get(file) == md5:
            return source
    return None


def _find(data_dir: Path, name: str, stems) -> list[Path]:
    found, missing = [], []
    for stem in stems:
        cands = [data_dir / (stem + ".gz"), data_dir / stem] if name != "cifar10" else \
            [data_dir / stem, data_dir / "cifar-10-batches-bin" / stem]
        hit = next((c for c in cands if c.is_file()), None)
        (found if hit else missing).append(hit or cands[0].name)
    if missing:
        raise FileNotFoundError(
            f"{name}: {missing} not found in {str(data_dir)!r}. Download the files from "
            f"{_SOURCES[name]} and put them there (nothing is downloaded at run time).")
    return found


def _cifar(paths, rows=None, labels_only: bool = False):
    """``(pixels, labels)`` of the CIFAR-10 binary batches ``paths`` (concatenated), keeping
    only ``rows`` if given; read in blocks of about :data:`BLOCK_BYTES`, so memory holds one
    block plus the result. ``labels_only``: pixels is ``None``."""
    rows = None if rows is None else np.asarray(rows, np.int64)
    labels, pixels, start = [], [], 0
    for p in paths:
        size = p.stat().st_size
        if size % 3073:
            raise ValueError(f"{p}: {size} bytes is not a whole number of 3073-byte CIFAR-10 "
                             "records (truncated or corrupt; fetch it again).")
        with open(p, "rb") as fh:
            records = max(1, BLOCK_BYTES // 3073)
            for _ in range(0, size // 3073, records):
                block = np.frombuffer(fh.read(records * 3073), np.uint8).reshape(-1, 3073)
                labels.append(block[:, 0].astype(np.int32))
                if not labels_only:
                    keep = (slice(None) if rows is None else
                            np.unique(rows[(rows >= start) & (rows < start + len(block))]) - start)
                    pixels.append((start + np.arange(len(block))[keep], block[keep, 1:].copy()))
                start += len(block)
    y = np.concatenate(labels)
    if labels_only:
        return None, y
    index = np.concatenate([i for i, _ in pixels])
    X = np.concatenate([x for _, x in pixels])
    if rows is None:
        return X, y
    y = y[rows]  # IndexError for a row outside the batches
    return X[np.searchsorted(index, rows)], y


def load_dataset(name: str, data_dir, part: str = "train", *, verify: str = "warn", rows=None):
    """``(X, y)`` of ``part`` (``"train"``/``"test"``): ``X`` float32 in ``[0, 1]``, shape
    ``(m, 784)`` (MNIST, Fashion-MNIST: row-major 28x28) or ``(m, 3072)`` (CIFAR-10:
    channel-major 3x32x32); ``y`` int32 in ``[0, 10)``. ``rows`` keeps only those samples."""
    from bluefog.validation import check_choice

    name = check_choice(name, "name", DATASETS, where="load_dataset")
    part = check_choice(part, "part", ("train", "test"), where="load_dataset")
    verify = check_choice(verify, "verify", ("warn", "strict", "off"), where="load_dataset")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{name}: data directory {str(data_dir)!r} does not exist. "
                                f"Download the files from {_SOURCES[name]} into it.")
    if name == "cifar10":  # the per-batch files have no published checksum (the tarball has)
        X, y = _cifar(_find(data_dir, name, _CIFAR[part]), rows)
    else:
        images, labels = _find(data_dir, name, _IDX[part])
        _verify(name, [images, labels], verify)
        y = read_idx(labels).astype(np.int32)
        X = read_idx(images, rows).reshape(len(y) if rows is None else len(rows), -1)
        y = y if rows is None else y[np.asarray(rows)]
    X = X.astype(np.float32)
    X /= 255.0  # in place: one float32 copy of the kept rows
    return X, y


def _split_indices(name: str, data_dir, n: int, method: str, alpha: float, seed: int):
    """``(index shards (n, m), label shards (n, m))`` of the training set split across
    ``n`` agents; reads only the labels."""
    data_dir = Path(data_dir)
    if name == "cifar10":
        _, y = _cifar(_find(data_dir, name, _CIFAR["train"]), labels_only=True)
    else:
        y = read_idx(_find(data_dir, name, _IDX["train"])[1]).astype(np.int32)
    idx_shards, y_shards = split_dataset(np.arange(len(y)), y, n, method, alpha=alpha, seed=seed)
    return np.asarray(idx_shards), np.asarray(y_shards)


def agent_labels(name: str, data_dir, n: int, *, method: str = "iid", alpha: float = 0.5,
                 seed: int = 0) -> np.ndarray:
    """The labels of every agent's training shard, shape ``(n, m)``, equal to the ``y`` of
    :func:`load_agent_shards` with all agents; reads only the label file(s) (under MPI every
    rank can report every agent's label histogram without loading their images)."""
    return _split_indices(name, data_dir, n, method, alpha, seed)[1]


def load_agent_shards(name: str, data_dir, n: int, agents=None, *, method: str = "iid",
                      alpha: float = 0.5, seed: int = 0, verify: str = "warn"):
    """The training shards of ``agents`` (default all) when the training set is split
    across ``n`` agents by :func:`algorithms.problems.split_dataset`; shapes
    ``(len(agents), m, d)`` and ``(len(agents), m)``, row ``k`` equal to row ``agents[k]``
    of the full split. Only the labels are read in full; of the images only the agents'
    rows are kept in memory (``bluefog-train --backend mpi`` passes ``agents=[rank]``)."""
    idx_shards, _ = _split_indices(name, data_dir, n, method, alpha, seed)
    agents = list(range(n)) if agents is None else [int(a) for a in agents]
    take = idx_shards[agents]
    X, ys = load_dataset(name, data_dir, "train", verify=verify, rows=take.reshape(-1))
    return X.reshape(take.shape + (-1,)), ys.reshape(take.shape)
