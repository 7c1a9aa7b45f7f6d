"""Fashion-MNIST from its real distribution files: Debian's ``dataset-fashion-mnist`` package
(``.ci/run`` installs it; skipped with the reason where it is absent).

Oracles, independent of the code under test: the data set's published facts (Xiao, Rasul &
Vollgraf, arXiv:1708.07747: 60,000 training and 10,000 test images of 28 x 28 pixels, 7,000
per class of 10, i.e. 6,000 / 1,000 per class in the two splits) and the plug-in
nearest-class-mean classifier computed here with NumPy (67.7% on these files), which the
decentralized MLP must beat by a wide margin after 300 steps.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bluefog_train.datasets import REPACKAGED_MD5, load_dataset

DIR = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(
    not os.path.isdir(DIR), reason=f"{DIR} not found: apt-get install dataset-fashion-mnist")


def test_debian_files_verify_and_have_the_published_shape():
    assert any(DIR in source for source in REPACKAGED_MD5["fashion_mnist"])
    X, y = load_dataset("fashion_mnist", DIR, "train", verify="strict")
    Xt, yt = load_dataset("fashion_mnist", DIR, "test", verify="strict")
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    assert 0.0 <= X.min() and X.max() <= 1.0  # bytes / 255


def nearest_class_mean_accuracy() -> float:
    X, y = load_dataset("fashion_mnist", DIR, "train", verify="off")
    Xt, yt = load_dataset("fashion_mnist", DIR, "test", verify="off")
    means = np.stack([X[y == c].mean(0) for c in range(10)])
    d = (Xt ** 2).sum(1)[:, None] - 2 * Xt @ means.T + (means ** 2).sum(1)[None]
    return float((d.argmin(1) == yt).mean())


@pytest.mark.slow
def test_decentralized_mlp_beats_the_nearest_class_mean(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-c", "import sys; from bluefog_train.cli import main; sys.exit(main())",
           "--dataset", "fashion_mnist", "--data-dir", DIR, "--data-verify", "strict",
           "--agents", "16", "--steps", "300", "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    baseline = nearest_class_mean_accuracy()
    assert r["final"]["test_accuracy"] >= baseline + 0.10, (r["final"], baseline)
    assert r["config"]["data"] == "fashion_mnist" and len(r["per_agent_test_accuracy"]) == 16
