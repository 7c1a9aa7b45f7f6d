"""Crafted and damaged checkpoint files are refused with a reason, never opened unsafely,
never changed; restore_latest falls back to the newest checkpoint that validates."""

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest

from bluefog_train import checkpoint as ckpt


def state(seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {"w": rng.normal(size=(4, 3, 2)).astype(np.float32),
                       "b": rng.normal(size=(4, 2)).astype(np.float32)},
            "count": np.full((4,), seed, np.int32)}


def members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def npy(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def manifest_of(m):
    return json.loads(np.load(io.BytesIO(m["__manifest__.npy"])).tobytes().decode())


def write(path, m, manifest=None, rehash=True):
    """Write members ``m`` (name -> bytes) as a stored zip; with ``manifest``, replace the
    manifest (and, with ``rehash``, its SHA-256 member)."""
    m = dict(m)
    if manifest is not None:
        blob = json.dumps(manifest).encode()
        m["__manifest__.npy"] = npy(np.frombuffer(blob, np.uint8))
        if rehash:
            m["__manifest_sha256__.npy"] = npy(np.frombuffer(hashlib.sha256(blob).hexdigest().encode(), np.uint8))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in m.items():
            z.writestr(name, data)
    return str(path)


def snapshot(directory):
    return {n: hashlib.sha256(open(os.path.join(directory, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(directory)) if os.path.isfile(os.path.join(directory, n))}


@pytest.fixture
def good(tmp_path):
    """A directory with a valid checkpoint at step 10; returns (dir, path, members, manifest)."""
    d = tmp_path / "ck"
    path = ckpt.save(d, state(1), step=10, metadata={"history": {"step": [0, 10]}})
    m = members(path)
    return d, path, m, manifest_of(m)


def edited(manifest, **changes):
    out = json.loads(json.dumps(manifest))
    out.update(changes)
    return out


def cases(manifest, m):
    leaves = manifest["leaves"]
    idx_w = [leaf["path"] for leaf in leaves].index("['params']['w']")
    w = f"leaf_{idx_w:05d}.npy"
    wrong_shape = [dict(leaf) for leaf in leaves]
    wrong_shape[idx_w] = {**leaves[idx_w], "shape": [4, 3, 3]}
    wrong_dtype = [dict(leaf) for leaf in leaves]
    wrong_dtype[idx_w] = {**leaves[idx_w], "dtype": "<f8"}
    nan_w = np.full((4, 3, 2), np.nan, np.float32)
    nan_leaves = [dict(leaf) for leaf in leaves]
    nan_leaves[idx_w] = {**leaves[idx_w], "sha256": hashlib.sha256(nan_w.tobytes()).hexdigest()}
    buf = io.BytesIO()  # a valid .npy header claiming 8 TiB, followed by 8 bytes
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": (1099511627776,)})
    huge = buf.getvalue() + bytes(8)
    huge_leaves = [dict(leaf) for leaf in leaves]
    huge_leaves[idx_w] = {**leaves[idx_w], "shape": [1099511627776], "dtype": "<f8"}
    return {
        "manifest is a list": ({}, [1, 2], True, "the manifest is a list, not a JSON object"),
        "leaves is 5": ({}, edited(manifest, leaves=5), True, "leaves 5 is not a non-empty list"),
        "no metadata": ({}, {k: v for k, v in manifest.items() if k != "metadata"}, True,
                        "metadata is missing or not a JSON object"),
        "shape": ({}, edited(manifest, leaves=wrong_shape), True,
                  r"leaf \['params'\]\['w'\] has shape \(4, 3, 3\)"),
        "dtype": ({}, edited(manifest, leaves=wrong_dtype), True,
                  r"leaf \['params'\]\['w'\] has shape \(4, 3, 2\) dtype <f8"),
        "extra leaf": ({"leaf_00099.npy": npy(np.zeros(2))}, None, True,
                       r"members do not match the manifest \(extra \['leaf_00099.npy'\]"),
        "missing leaf": ({w: None}, None, True, r"missing \['" + w),
        "huge header": ({w: huge}, edited(manifest, leaves=huge_leaves), True,
                        r"has shape \(1099511627776,\)"),
        "leaf and its hash replaced": ({w: npy(nan_w)}, edited(manifest, leaves=nan_leaves), False,
                                       "the manifest does not match its SHA-256"),
        "not a zip": (None, None, True, "unreadable checkpoint"),
    }


def build(path, m, manifest, case):
    extra, new_manifest, rehash, _ = case
    if extra is None:
        path.write_bytes(b"not a zip at all")
        return str(path)
    mm = {**m, **{k: v for k, v in extra.items() if v is not None}}
    for k in [k for k, v in extra.items() if v is None]:
        del mm[k]
    return write(path, mm, new_manifest, rehash)


@pytest.mark.parametrize("name", ["manifest is a list", "leaves is 5", "no metadata", "shape", "dtype",
                                  "extra leaf", "missing leaf", "huge header",
                                  "leaf and its hash replaced", "not a zip"])
def test_crafted_file_is_refused_and_skipped(good, name):
    d, path, m, manifest = good
    case = cases(manifest, m)[name]
    bad = build(d / "ckpt-00000020.npz", m, manifest, case)
    before = snapshot(d)
    with pytest.raises(ckpt.CheckpointError, match=case[3]):
        ckpt.load(bad, state(0))
    got, st, man, skipped = ckpt.restore_latest(d, state(0))
    assert got == path and man["step"] == 10  # fell back to the newest that validates
    assert [p for p, _ in skipped] == [bad] and "ckpt-00000020.npz" in skipped[0][1]
    np.testing.assert_array_equal(st["params"]["w"], state(1)["params"]["w"])
    assert snapshot(d) == before  # nothing the run did not write was changed


def test_huge_header_without_template_costs_nothing(good):
    """``latest`` has no template: the header's claim is bounded by the member's real size."""
    d, path, m, manifest = good
    case = cases(manifest, m)["huge header"]
    bad = build(d / "ckpt-00000020.npz", m, manifest, case)
    with pytest.warns(RuntimeWarning, match="claims 8796093022208 bytes, more than it holds"):
        assert ckpt.latest(d) == path
    assert os.path.exists(bad)


@pytest.mark.timeout(120)
def test_fifo_and_symlinks_are_never_opened(good, tmp_path):
    d, path, m, manifest = good
    fifo = d / "ckpt-00000030.npz"
    os.mkfifo(fifo)  # opening it for reading would block forever
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = ckpt.save(outside, state(5), step=40)
    os.symlink(target, d / "ckpt-00000040.npz")
    before = snapshot(d)
    got, _, _, skipped = ckpt.restore_latest(d, state(0))
    assert got == path
    reasons = dict(skipped)
    assert "not a regular file" in reasons[str(d / "ckpt-00000030.npz")]
    assert "not a regular file" in reasons[str(d / "ckpt-00000040.npz")]
    with pytest.raises(ckpt.CheckpointError, match="outside the checkpoint directory"):
        ckpt.load(target, state(0), directory=d)
    assert snapshot(d) == before and os.path.exists(fifo)


def test_remove_deletes_only_checkpoint_files(tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(ValueError, match="path must name a checkpoint ckpt-<8 digits>.npz"):
        ckpt.remove(keep)
    assert keep.read_text() == "mine"
    os.mkdir(tmp_path / "ckpt-00000001.npz")
    ckpt.remove(tmp_path / "ckpt-00000001.npz")  # a directory: left alone
    assert os.path.isdir(tmp_path / "ckpt-00000001.npz")
