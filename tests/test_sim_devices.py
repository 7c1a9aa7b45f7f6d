"""``bluefog_sim.run(..., devices=...)``: agents spread over the devices of one process.

The multi-device run happens in a subprocess with 8 host devices
(``--xla_force_host_platform_device_count=8``; this process has 1, see conftest.py). Oracles:
the single-device run of the same program (to 1e-12 in float64) and the NumPy DGD recursion
``x+ = W(t) x - lr (x - b)``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import bluefog_sim
from bluefog_sim.devices import check_devices

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, numpy as np, jax
jax.config.update("jax_enable_x64", True)
import algorithms, bluefog_sim
from bluefog.topology import exponential_graph, random_matching
n, steps = 16, 20
b = np.random.default_rng(0).standard_normal((n, 3))
out = {"devices": len(jax.devices())}
for name, topo, alg in [("dgd", exponential_graph(n), algorithms.dgd(0.1)),
                        ("dgd_matching", random_matching(n, seed=1, pool_size=8),
                         algorithms.dgd(0.1))]:
    prob = algorithms.problems.quadratic(b)
    one = bluefog_sim.run(alg, prob, topo, steps, record_every=10, progress=False)
    many = bluefog_sim.run(alg, prob, topo, steps, record_every=10, progress=False,
                           devices=jax.devices())
    x = np.zeros((n, 3))
    for t in range(steps):
        x = topo.at(t).weights @ x - 0.1 * (x - b)
    out[name] = {
        "diff": float(np.abs(np.asarray(one.params) - np.asarray(many.params)).max()),
        "history": float(max(np.abs(one.history[k] - many.history[k]).max()
                             for k in one.history)),
        "oracle": float(np.abs(np.asarray(many.params) - x).max()),
        "shards": len(many.params.sharding.device_set)}
print("RESULT " + json.dumps(out))
"""


def test_eight_host_devices_equal_the_single_device_run():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert res["devices"] == 8
    for name in ("dgd", "dgd_matching"):
        r = res[name]
        assert r["shards"] == 8, r
        assert r["diff"] <= 1e-12 and r["history"] <= 1e-12, (name, r)
        assert r["oracle"] <= 1e-12, (name, r)


def test_devices_argument_is_checked():
    (dev,) = jax.devices()
    assert check_devices(None, 4) is None and check_devices([dev], 4) == (dev,)
    with pytest.raises(TypeError, match=r"devices must be a sequence of jax.Device \(e.g. "
                                        r"jax.devices\(\)\); got an element 'cpu'"):
        check_devices(["cpu"], 4)
    with pytest.raises(ValueError, match="devices must be distinct"):
        check_devices([dev, dev], 4)
    with pytest.raises(ValueError, match="devices must not be empty"):
        check_devices([], 4)
    with pytest.raises(TypeError, match="got int"):
        check_devices(3, 4)
