"""MNIST / Fashion-MNIST (IDX) and CIFAR-10 (binary batches) loaders on tiny files written
here in those formats (bytes built by hand with ``struct``), their checksums, agent shards
and ``bluefog-train --dataset mnist --data-dir DIR``."""

import gzip
import json
import struct

import numpy as np
import pytest

from algorithms.problems import split_dataset
from bluefog_train.datasets import load_agent_shards, load_dataset, read_idx

RNG = np.random.default_rng(0)


def _idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_mnist(d, n_train=200, n_test=40, gz=True):
    arrays = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        X = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        arrays[stem] = (X, y)
        for kind, a in (("images-idx3", X), ("labels-idx1", y)):
            name = d / f"{stem}-{kind}-ubyte"
            data = _idx_bytes(a)
            if gz:
                with gzip.open(str(name) + ".gz", "wb") as fh:
                    fh.write(data)
            else:
                name.write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_and_rows(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    X, y = load_dataset("mnist", tmp_path, "train", verify="off")
    np.testing.assert_array_equal(X, arrays["train"][0].reshape(200, 784) / np.float32(255))
    np.testing.assert_array_equal(y, arrays["train"][1])
    rows = [5, 0, 199]
    sub = read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")), rows)
    np.testing.assert_array_equal(sub, arrays["train"][0][rows])
    Xt, yt = load_dataset("fashion_mnist", tmp_path, "test", verify="off")  # same format
    assert Xt.shape == (40, 784) and yt.dtype == np.int32


def test_agent_shards_are_rows_of_the_full_split(tmp_path):
    arrays = write_mnist(tmp_path, gz=False)
    X_full = arrays["train"][0].reshape(200, 784) / np.float32(255)
    Xs, ys = split_dataset(X_full, arrays["train"][1].astype(np.int32), 8, "dirichlet",
                           alpha=0.3, seed=4)
    X2, y2 = load_agent_shards("mnist", tmp_path, 8, [2, 5], method="dirichlet", alpha=0.3,
                               seed=4, verify="off")
    np.testing.assert_array_equal(X2, np.asarray(Xs)[[2, 5]])
    np.testing.assert_array_equal(y2, np.asarray(ys)[[2, 5]])


def test_checksums_missing_files_and_corruption(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError, match="differs from the official f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_dataset("mnist", tmp_path, verify="strict")
    with pytest.warns(RuntimeWarning, match="differs from the official"):
        load_dataset("mnist", tmp_path, verify="warn")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.gz.*not found in "
                                                r".*yann.lecun.com/exdb/mnist"):
        load_dataset("mnist", tmp_path / "empty", "test")
    with pytest.raises(FileNotFoundError, match="does not exist. Download the files from"):
        load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="cifar-10-binary.tar.gz"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03")
    (tmp_path / "bad" / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        load_dataset("mnist", tmp_path / "bad", verify="off")


def test_cifar10_binary_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    recs = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        r = RNG.integers(0, 256, (4, 3073), dtype=np.uint8)
        r[:, 0] %= 10
        recs[name] = r
        (d / name).write_bytes(r.tobytes())
    X, y = load_dataset("cifar10", tmp_path, "train")
    train = np.concatenate([recs[f"data_batch_{i}.bin"] for i in range(1, 6)])
    np.testing.assert_array_equal(y, train[:, 0])
    np.testing.assert_array_equal(X, train[:, 1:] / np.float32(255))
    (d / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte"):
        load_dataset("cifar10", tmp_path, "test")


def test_bluefog_train_on_mnist_files(tmp_path, capsys):
    from bluefog_train.cli import main

    write_mnist(tmp_path)
    out = tmp_path / "r.json"
    assert main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--data-verify", "off",
                 "--agents", "4", "--hidden", "8", "--steps", "10", "--record-every", "5",
                 "--no-progress", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["config"]["data"] == "mnist" and len(r["per_agent_test_accuracy"]) == 4
    assert main(["--dataset", "mnist", "--data-dir", str(tmp_path / "none"), "--steps", "10"]) == 2
    assert "yann.lecun.com/exdb/mnist" in capsys.readouterr().err


@pytest.mark.parametrize("gz", [True, False])
def test_rows_read_block_by_block_equal_numpy_indexing(tmp_path, gz, monkeypatch):
    """Blocks of 7 images (the ``.gz`` path keeps only the asked rows of each block); rows
    unsorted, repeated and spanning every block."""
    from bluefog_train import datasets

    monkeypatch.setattr(datasets, "BLOCK_BYTES", 7 * 784)
    arrays = write_mnist(tmp_path, gz=gz)
    rows = np.array([199, 0, 6, 7, 7, 150, 13, 14, 3])
    X, y = load_dataset("mnist", tmp_path, "train", verify="off", rows=rows)
    np.testing.assert_array_equal(X, arrays["train"][0][rows].reshape(-1, 784) / np.float32(255))
    np.testing.assert_array_equal(y, arrays["train"][1][rows])


def test_truncated_or_overlong_gz_is_refused_when_reading_rows(tmp_path):
    write_mnist(tmp_path, gz=True)
    name = tmp_path / "train-images-idx3-ubyte.gz"
    body = gzip.decompress(name.read_bytes())
    name.write_bytes(gzip.compress(body[:-10]))
    with pytest.raises(ValueError, match="header says shape .200, 28, 28. but the file ends after "
                                         "156790 values .truncated or corrupt"):
        read_idx(name, [0, 1])
    name.write_bytes(gzip.compress(body + b"\0"))
    with pytest.raises(ValueError, match="holds more values than its header's shape"):
        read_idx(name, [0, 1])


def test_cifar10_rows_and_labels_read_block_by_block(tmp_path, monkeypatch):
    from bluefog_train import datasets
    from bluefog_train.datasets import agent_labels

    monkeypatch.setattr(datasets, "BLOCK_BYTES", 3 * 3073)
    recs = []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        r = RNG.integers(0, 256, (8, 3073), dtype=np.uint8)
        r[:, 0] %= 10
        recs.append(r)
        (tmp_path / name).write_bytes(r.tobytes())
    train = np.concatenate(recs[:5])
    rows = np.array([39, 2, 2, 8, 17, 0])
    X, y = load_dataset("cifar10", tmp_path, "train", rows=rows)
    np.testing.assert_array_equal(X, train[rows, 1:] / np.float32(255))
    np.testing.assert_array_equal(y, train[rows, 0])
    Xs, ys = split_dataset(train[:, 1:] / np.float32(255), train[:, 0].astype(np.int32), 4,
                           "label_sorted", seed=1)
    X1, y1 = load_agent_shards("cifar10", tmp_path, 4, [1, 3], method="label_sorted", seed=1)
    np.testing.assert_array_equal(X1, np.asarray(Xs)[[1, 3]])
    np.testing.assert_array_equal(y1, np.asarray(ys)[[1, 3]])
    np.testing.assert_array_equal(agent_labels("cifar10", tmp_path, 4, method="label_sorted",
                                               seed=1), np.asarray(ys))
