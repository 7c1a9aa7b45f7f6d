"""``bluefog-train --async`` and the straggler flags in the simulator.

Oracles: the synchronous ATC-SGD run of the CLI (the method async SGP reduces to when every
agent is equally fast and links are instant), closed-form clocks (with no jitter, agent 0
``K`` times slower and latency ``L``, a synchronous step costs ``K + L`` and normal agents
complete steps at the integers), and time-to-target read from the recorded histories.
Refusals are pinned by their text and happen before anything is built.
"""

import numpy as np
import pytest

from bluefog_train.cli import build_parser, main
from bluefog_train.plotting import plot_history
from bluefog_train.training import train

SMALL = ["--hidden", "8", "--no-progress"]


def run(*args):
    """``bluefog-train ARGS`` in-process (the results dict, final parameters included)."""
    return train(vars(build_parser().parse_args([*SMALL, *args])), progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four runs shared by the tests (each compiles its own program)."""
    d = tmp_path_factory.mktemp("async")
    equal = ["--agents", "4", "--steps", "12", "--record-every", "2", "--lr", "0.2"]
    slow = ["--agents", "8", "--steps", "60", "--record-every", "2", "--lr", "0.2",
            "--straggler", "0", "--slowdown", "10", "--latency", "0.5"]
    return {"async_equal": run(*equal, "--async", "async_sgp"),
            "sync_equal": run(*equal, "--optimizer", "sgd", "--style", "atc"),
            "async_slow": run(*slow, "--async", "async_sgp"),
            "sync_slow": run(*slow, "--optimizer", "sgd", "--style", "awc"),
            "dir": d}


def test_async_sgp_with_equal_speeds_and_instant_links_is_synchronous_atc_sgd(runs):
    a, s = runs["async_equal"], runs["sync_equal"]
    assert a["async"]["events"] == 12 and a["async"]["own_steps"] == [12] * 4
    assert a["history"]["step"] == s["history"]["step"] == list(range(0, 13, 2))
    for key in ("loss", "local_loss", "test_accuracy", "consensus_distance"):
        np.testing.assert_allclose(a["history"][key], s["history"][key], rtol=2e-5, atol=2e-6)
    for x, y in zip(_leaves(a["_final_params"]), _leaves(s["_final_params"])):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    # one clock: with mean step 1, no jitter and no latency both are at virtual time k
    assert a["history"]["virtual_time"] == s["history"]["virtual_time"] == [
        float(k) for k in range(0, 13, 2)]


def _leaves(params):
    import jax

    return [np.asarray(v) for v in jax.tree_util.tree_leaves(params)]


def test_straggler_clocks_have_the_closed_form(runs):
    a, s = runs["async_slow"], runs["sync_slow"]
    # synchronous: every step waits for agent 0 (10) and the slowest link (0.5)
    np.testing.assert_allclose(s["history"]["virtual_time"],
                               [10.5 * k for k in s["history"]["step"]], rtol=1e-12)
    # asynchronous, horizon 60 x 1.0: normal agents step at 1, 2, ..., agent 0 at 10, 20, ...
    assert a["async"]["events"] == 60 and a["async"]["own_steps"] == [6] + [60] * 7
    assert a["async"]["compute_means"] == [10.0] + [1.0] * 7
    np.testing.assert_allclose(a["history"]["virtual_time"], a["history"]["step"], rtol=1e-12)


def time_to(history, target):
    hit = np.flatnonzero(np.asarray(history["loss"]) <= target)
    return history["virtual_time"][hit[0]] if hit.size else np.inf


def test_async_beats_sync_dgd_with_a_10x_straggler(runs):
    """Target: the loss synchronous DGD reaches after half its steps."""
    a, s = runs["async_slow"], runs["sync_slow"]
    target = s["history"]["loss"][len(s["history"]["loss"]) // 2]
    t_sync, t_async = time_to(s["history"], target), time_to(a["history"], target)
    assert t_sync == pytest.approx(10.5 * 30)
    assert 3 * t_async < t_sync, (t_async, t_sync)
    assert a["history"]["loss"][-1] < a["history"]["loss"][0]


def test_plot_draws_against_virtual_time(runs):
    path = runs["dir"] / "a.png"
    a = {k: v for k, v in runs["async_slow"].items() if k != "_final_params"}
    plot_history(a, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a refused run gets as far as building the experiment."""
    from bluefog_train import training

    def boom(cfg):
        raise AssertionError("the run was not refused before building the experiment")

    monkeypatch.setattr(training, "make_experiment", boom)


REFUSED = [
    (["--async", "ad_psgd"], "--async ad_psgd averages pairs of neighbours, so it needs "
     "symmetric edges; --topology exponential is directed. Pass --topology "
     "symmetric_exponential"),
    (["--async", "async_sgp", "--topology", "one_peer_exponential"],
     "--async async_sgp needs a static --topology (its windows are created once); got "
     "one_peer_exponential."),
    (["--async", "async_sgp", "--checkpoint-dir", "{t}/ck", "--checkpoint-every", "10"],
     "--async async_sgp does not checkpoint: messages in flight (and, under MPI, the window "
     "memory) are not part of a checkpoint."),
    (["--async", "async_sgp", "--optimizer", "adam"],
     "--async async_sgp takes plain SGD steps inside its own mixing; got --optimizer adam. "
     "Drop --optimizer (or pass --optimizer sgd)."),
    (["--async", "async_sgp", "--momentum", "0.9"],
     "--momentum 0.9 does not apply to --async async_sgp"),
    (["--async", "async_sgp", "--lr-schedule", "cosine"],
     "--lr-schedule cosine does not apply to --async async_sgp"),
    (["--async", "async_sgp", "--duration", "0"],
     "--duration must be a positive finite float; got 0.0."),
    (["--duration", "5"], "--duration is the deadline of an --async run; a synchronous run "
     "takes --steps steps. Pass --async METHOD, or drop --duration 5.0."),
    (["--slowdown", "10"], "--slowdown 10.0 needs the agents to slow down: pass --straggler "
     "RANK (one agent) or --slow-fraction F (a random fraction)."),
    (["--straggler", "0"], "--straggler/--slow-fraction make agents --slowdown times slower; "
     "got --slowdown 1.0 (nobody slower). Pass e.g. --slowdown 10."),
    (["--straggler", "4", "--slowdown", "2"],
     "--straggler must be an agent (rank) in [0, 4); got 4. Pass e.g. --straggler 0."),
    (["--straggler", "0", "--slow-fraction", "0.2", "--slowdown", "2"],
     "pass either --straggler (one slow agent) or --slow-fraction (a random fraction), not "
     "both"),
    (["--straggler", "0", "--slowdown", "0.5"],
     "--slowdown must be a finite real number in [1, inf]; got 0.5. Pass e.g. --slowdown 10."),
    (["--jitter", "1"], "--jitter must be a finite real number in [0, 1); got 1.0."),
    (["--latency", "-1"], "--latency must be a finite real number in [0, inf]; got -1.0."),
    (["--latency", "nan"], "--latency must be a finite real number in [0, inf]; got nan."),
    (["--compute-time", "0"], "--compute-time must be a finite real number in (0, inf]; got "
     "0.0."),
]


@pytest.mark.parametrize("args,message", REFUSED)
def test_bad_async_and_straggler_flags_are_refused_before_building(tmp_path, capsys,
                                                                    no_training, args,
                                                                    message):
    assert main(["--agents", "4", *SMALL, *[a.format(t=tmp_path) for a in args]]) == 2
    assert f"bluefog-train: error: {message}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unknown_async_method_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--async", "async_push_sum"])
    assert exc.value.code == 2
    assert "argument --async: invalid choice: 'async_push_sum'" in capsys.readouterr().err


MPI_REFUSED = [
    (["--async", "async_sgp"], "--async async_sgp under --backend mpi needs --duration "
     "SECONDS"),
    (["--latency", "0.1"], "--latency is the simulator's link latency (virtual seconds); "
     "under --backend mpi the links are real. Drop --latency 0.1."),
    (["--straggler", "0", "--slowdown", "5"], "--straggler/--slow-fraction/--jitter under "
     "--backend mpi scale the emulated compute of every step, which is 0 without "
     "--compute-time"),
]


@pytest.mark.parametrize("args,message", MPI_REFUSED)
def test_mpi_only_refusals(args, message):
    from bluefog_train.config import validate_config

    cfg = vars(build_parser().parse_args(["--backend", "mpi", "--agents", "4", *args]))
    with pytest.raises(ValueError) as exc:
        validate_config(cfg)
    assert message in str(exc.value)


def test_horizon_without_a_single_step_is_refused(capsys):
    assert main(["--agents", "4", *SMALL, "--async", "async_sgp", "--duration", "0.5"]) == 2
    assert ("--async: no agent completes a step within the virtual horizon 0.5 (--duration, "
            "or --steps x --compute-time); the fastest step takes 1.") in capsys.readouterr().err


def test_defaults_resolve_per_mode():
    from bluefog_train.config import resume_key, validate_config

    sync = validate_config(vars(build_parser().parse_args(["--agents", "4"])))
    asyn = validate_config(vars(build_parser().parse_args(["--agents", "4", "--async",
                                                           "async_sgp"])))
    mpi = validate_config(vars(build_parser().parse_args(["--agents", "4", "--backend", "mpi"])))
    assert (sync["optimizer"], sync["momentum"], sync["compute_time"]) == ("dmsgd", 0.9, 1.0)
    assert (asyn["optimizer"], asyn["momentum"]) == ("sgd", 0.0)
    assert mpi["compute_time"] == 0.0
    # checkpoints of synchronous runs do not depend on the straggler flags
    slow = validate_config(vars(build_parser().parse_args(
        ["--agents", "4", "--straggler", "1", "--slowdown", "3", "--latency", "0.2"])))
    assert resume_key(slow) == resume_key(sync) and "async_method" not in resume_key(sync)


def test_emulated_compute_sleeps_the_model_and_leaves_the_arithmetic_alone():
    """The wrapped step (used under MPI) equals the plain one bit for bit inside a compiled
    scan, runs its host callback once per step in order, and sleeps per-rank durations within
    the model's bounds: mean 1 ms, jitter 0.5, rank 1 three times slower."""
    from typing import NamedTuple

    import jax
    import jax.numpy as jnp

    from bluefog.algorithm import Algorithm
    from bluefog_train.stragglers import EmulatedCompute

    class S(NamedTuple):
        x: jax.Array
        count: jax.Array

    plain = Algorithm(lambda p, ctx: S(p, jnp.zeros((), jnp.int32)),
                      lambda s, ctx: S(0.5 * s.x + jnp.sin(s.x), s.count + 1), lambda s: s.x,
                      "toy", {})
    cfg = {"agents": 4, "compute_time": 1e-3, "jitter": 0.5, "straggler": 1, "slow_fraction": 0.0,
           "slowdown": 3.0, "seed": 0}
    slow, fast = EmulatedCompute(cfg, 1), EmulatedCompute(cfg, 2)

    def scan(alg):
        return jax.jit(lambda s: jax.lax.scan(lambda c, _: (alg.step(c, None), None), s, None,
                                              length=7)[0])(S(jnp.linspace(-1.0, 2.0, 5),
                                                              jnp.zeros((), jnp.int32)))

    want, got = scan(plain), scan(slow.wrap(plain))
    assert np.array_equal(np.asarray(want.x), np.asarray(got.x)) and int(got.count) == 7
    assert sorted(slow.starts) == list(range(7))
    assert np.all(np.diff([slow.starts[k] for k in range(7)]) >= 1.5e-3)   # it slept
    assert all(1.5e-3 <= slow.seconds(k) <= 4.5e-3 for k in range(200))
    assert all(0.5e-3 <= fast.seconds(k) <= 1.5e-3 for k in range(200))
    none = EmulatedCompute({**cfg, "compute_time": 0.0}, 1)
    assert none.seconds(5) == 0.0
