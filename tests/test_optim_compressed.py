"""Compressed (CHOCO) mixing inside the optax-style optimizer family and bluefog-train.

Oracles: :func:`algorithms._choco.choco_sgd`, written separately from the family, must give
the same trajectory as ``decentralized(optax.sgd(lr), compressor=C, consensus_step=g)``; the
byte count must equal rounds x payload bits of every leaf.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bluefog_sim
from algorithms import optim
from algorithms import problems as P
from algorithms import choco_sgd
from bluefog import compression as C
from bluefog import topology as T

N = 8


def _problem():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(N, 20, 6)).astype(np.float32)
    y = rng.normal(size=(N, 20)).astype(np.float32)
    return P.least_squares(A, y, batch_size=5)


@pytest.mark.parametrize("comp", [C.top_k(0.34), C.blockwise(8, 8)], ids=lambda c: c.name)
def test_family_with_compressor_equals_choco_sgd(comp):
    problem, topo = _problem(), T.exponential_graph(N)
    a = bluefog_sim.run(optim.decentralized(optax.sgd(0.02), compressor=comp, consensus_step=0.4),
                        problem, topo, 60, progress=False)
    b = bluefog_sim.run(choco_sgd(0.02, comp, 0.4), problem, topo, 60, progress=False)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6, atol=1e-7)
    assert a.state.memory is not None


def test_dmsgd_with_compressor_converges_near_uncompressed():
    problem, topo = _problem(), T.exponential_graph(N)
    plain = bluefog_sim.run(optim.dmsgd(0.01, 0.5), problem, topo, 1500, progress=False)
    comp = bluefog_sim.run(optim.dmsgd(0.01, 0.5, compressor=C.blockwise(8, 8),
                                       consensus_step=0.5), problem, topo, 1500, progress=False)
    assert comp.history["loss"][-1] < 1.05 * plain.history["loss"][-1]


def test_bytes_per_step_counts_the_payload():
    params = {"w": jnp.zeros((30, 10)), "b": jnp.zeros(10)}
    topo = T.exponential_graph(N)
    comp = C.top_k(0.1)
    got = optim.communication_bytes_per_step(params, communication="neighbor", topology=topo,
                                             compressor=comp)
    rounds = topo.schedule.num_rounds
    assert got == rounds * (30 * 64 + 1 * 64) / 8  # 30 (+1) kept values and int32 indices
    dense = optim.communication_bytes_per_step(params, communication="neighbor", topology=topo)
    assert dense == rounds * 310 * 4


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"compressor": C.top_k(0.1)}, ValueError, r"decentralized: a compressor needs consensus_step"),
    ({"consensus_step": 0.5}, ValueError, r"decentralized: consensus_step is only used with a compressor"),
    ({"compressor": C.top_k(0.1), "consensus_step": 0.5, "communication": "allreduce"},
     ValueError, r"compression works with communication='neighbor' and style='atc'"),
    ({"compressor": "int8", "consensus_step": 0.5}, TypeError, r"compressor must be a bluefog"),
    ({"compressor": C.top_k(0.1), "consensus_step": 1.5}, ValueError,
     r"consensus_step must be a finite real number in \(0, 1\]"),
])
def test_bad_compression_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        optim.decentralized(optax.sgd(0.1), **kwargs)


def test_cli_refuses_a_bad_spec_before_training(capsys):
    from bluefog_train.cli import main

    assert main(["--agents", "4", "--steps", "10", "--compress", "zip", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown compressor 'zip'" in err
    assert main(["--agents", "4", "--steps", "10", "--compress", "int8", "--style", "awc",
                 "--no-progress"]) == 2
    assert "--compress needs --communication neighbor and --style atc" in capsys.readouterr().err


def test_cli_trains_with_compression_and_reports_fewer_bytes(tmp_path):
    import json

    from bluefog_train.cli import main

    out = tmp_path / "r.json"
    args = ["--agents", "4", "--steps", "40", "--no-progress", "--out", str(out)]
    assert main(args + ["--compress", "topk:0.05+int8", "--consensus-step", "0.3"]) == 0
    comp = json.loads(out.read_text())
    assert main(args) == 0
    dense = json.loads(out.read_text())
    assert comp["algorithm"]["config"]["compressor"] == "top_k(0.05)>blockwise(8 bits, block=256)"
    # 5% of the entries, 8-bit values padded to blocks of 256, int32 indices
    assert comp["bytes_sent_per_agent_per_step"] * 5 < dense["bytes_sent_per_agent_per_step"]
    assert comp["final"]["test_accuracy"] > 0.3
