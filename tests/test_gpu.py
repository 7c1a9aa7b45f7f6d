"""GPU readiness: 1024 simulated agents train ``bluefog-train``'s MLP on one GPU.

Runs where JAX sees a GPU (``jax.devices("gpu")``, i.e. ``jax[cuda12]`` installed and a
device visible) and is skipped with the reason everywhere else, so ``make test`` runs it on a
GPU machine without a separate job.

Oracle, independent of the code under test: the plug-in nearest-class-mean classifier (class
means estimated from the training split), which is the Bayes rule for the CLI's synthetic
isotropic Gaussian mixture with equal priors (Hastie, Tibshirani & Friedman, *The Elements
of Statistical Learning*, 2nd ed., sec. 4.3: LDA with a shared spherical covariance). The
decentralized MLP must come within 3 points of it, and the same run on the CPU for the
first steps must follow the same trajectory (same seeds, float32 round-off).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENTS, SAMPLES, STEPS = 1024, 65536, 600
OPTIONS = ["--agents", str(AGENTS), "--data", "synthetic", "--synthetic-samples", str(SAMPLES),
           "--no-progress", "--record-every", "20"]


def _gpus() -> list:
    import jax

    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


def nearest_mean_accuracy(seed: int = 0) -> float:
    """Test accuracy of the nearest-class-mean rule on the CLI's synthetic split."""
    from bluefog_train.data import synthetic_classification

    X, y = synthetic_classification(SAMPLES, 64, 10, seed=seed)
    cut = int(0.8 * len(y))  # the CLI's train/test split of --data synthetic
    means = np.stack([X[:cut][y[:cut] == c].mean(axis=0) for c in range(10)])
    d = ((X[cut:, None, :] - means[None]) ** 2).sum(-1)
    return float((d.argmin(1) == y[cut:]).mean())


def train(platform: str, steps: int, out) -> dict:
    """``bluefog-train`` with ``JAX_PLATFORMS=platform``; the JSON it wrote."""
    env = {**os.environ, "JAX_PLATFORMS": platform, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-c", "import sys; from bluefog_train.cli import main; sys.exit(main())",
           *OPTIONS, "--steps", str(steps), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.skipif(not _gpus(), reason="no GPU visible to JAX (jax.devices('gpu') is empty): "
                    "install jax[cuda12] and build mpi4jax with BLUEFOG_MPI4JAX_CUDA=1 on a GPU "
                    "machine (README, Installing)")
def test_1024_agents_train_the_mlp_on_one_gpu(tmp_path):
    gpu = train("cuda", STEPS, tmp_path / "gpu.json")
    bayes = nearest_mean_accuracy()
    assert gpu["final"]["test_accuracy"] >= bayes - 0.03, (gpu["final"], bayes)
    assert gpu["config"]["agents"] == AGENTS and len(gpu["per_agent_test_accuracy"]) == AGENTS
    short_gpu = train("cuda", 40, tmp_path / "gpu40.json")["history"]["loss"]
    short_cpu = train("cpu", 40, tmp_path / "cpu40.json")["history"]["loss"]
    np.testing.assert_allclose(short_gpu, short_cpu, rtol=2e-3, atol=1e-4)
