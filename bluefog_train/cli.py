r"""``bluefog-train``: decentralized training of a classifier, in the simulator or under MPI.

Examples
--------
::

    bluefog-train --backend sim --agents 64 --topology exponential --optimizer dmsgd \
        --steps 1000 --out runs/exp64.json --plot runs/exp64.png
    bfrun -np 4 bluefog-train --backend mpi --agents 4 --steps 200 --out runs/mpi4.json

Exit codes: 0 success; 1 writing a checkpoint failed (the earlier ones are intact); 2 a
refused option or output location, or nothing to resume (before any step); 3 the run
diverged (non-finite state or metric); ``128 + signal`` stopped by SIGTERM/SIGHUP/SIGINT at
a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .experiment import OPTIMIZERS, TOPOLOGIES

__all__ = ["build_parser", "main"]


def _groups_run(p) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--backend", choices=("auto", "sim", "mpi"), default="auto",
                   help="sim: all agents in one process (jax.vmap); mpi: one agent per rank "
                        "(launch under bfrun -np N / mpiexec -n N); auto: mpi when launched "
                        "by MPI with more than one rank, else sim.")
    g.add_argument("--agents", type=int, default=None,
                   help="number of agents (None: 64 in sim, the world size under mpi)")
    g.add_argument("--steps", type=int, default=1000, help="training steps in all")
    g.add_argument("--seed", type=int, default=0, help="data split, initial model, minibatches")
    g.add_argument("--record-every", type=int, default=None,
                   help="metrics every this many steps (None: about steps/50, a divisor of "
                        "--checkpoint-every when checkpointing)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar")
    g.add_argument("--allow-nonfinite", action="store_true",
                   help="record NaN/inf and go on instead of stopping at the first non-finite "
                        "state or loss (for studying divergence)")


def _groups_model(p) -> None:
    from algorithms.optim import COMMUNICATIONS

    from .data import PARTITIONS

    g = p.add_argument_group("communication")
    g.add_argument("--topology", choices=TOPOLOGIES, default="exponential", help="agent graph")
    g.add_argument("--communication", choices=COMMUNICATIONS, default="neighbor",
                   help="what is exchanged")
    g.add_argument("--style", choices=("atc", "awc"), default="atc",
                   help="adapt-then-combine or adapt-while-combine")
    g.add_argument("--steps-per-communication", type=int, default=1,
                   help="local steps between exchanges")
    g.add_argument("--local-size", type=int, default=1,
                   help="agents per machine (hierarchical communication)")
    g.add_argument("--machine-topology", choices=TOPOLOGIES, default="exponential",
                   help="topology over machines for --communication hierarchical")
    g.add_argument("--compress", default=None, metavar="SPEC",
                   help="compressed CHOCO mixing: topk:R, randomk:R, int8[:B], int4[:B], "
                        "qsgd[:S], sign, bf16, fp16, or stages joined by + (topk:0.01+int8); "
                        "needs --communication neighbor, --style atc")
    g.add_argument("--consensus-step", type=float, default=0.5,
                   help="CHOCO's gamma in (0, 1] with --compress (smaller for sparser "
                        "compressors, e.g. 0.05 for topk:0.01)")
    g = p.add_argument_group("optimizer")
    # None: dmsgd, or sgd with --async (resolved by bluefog_train.stragglers, so that an
    # explicit choice can be refused with --async); "%(default).0s" prints nothing and keeps
    # the help formatter from appending "(default: None)"
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="local optimizer; sgd with --async (default: dmsgd)%(default).0s")
    g.add_argument("--lr", type=float, default=0.1, help="step size (positive, finite)")
    g.add_argument("--lr-schedule", choices=("constant", "cosine", "warmup_cosine"),
                   default="constant", help="optax schedule of the step size (peak --lr)")
    g.add_argument("--warmup-steps", type=int, default=0,
                   help="linear warm-up steps of --lr-schedule warmup_cosine")
    g.add_argument("--momentum", type=float, default=None,
                   help="in [0, 1); not used by --async (default: 0.9)%(default).0s")
    g.add_argument("--batch-size", type=int, default=16, help="minibatch per agent")
    g.add_argument("--l2", type=float, default=0.0, help="weight decay (finite, >= 0)")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="classifier")
    g.add_argument("--hidden", type=int, nargs="+", default=[64], help="MLP hidden widths")
    g.add_argument("--track-agents", action="store_true",
                   help="record every agent's own test accuracy (mean/min/max) at every record "
                        "(one forward pass of every agent over the test set per record; the "
                        "final per-agent accuracies are always reported)")
    g.add_argument("--data", "--dataset", dest="data", default="digits",
                   choices=("digits", "synthetic", "mnist", "fashion_mnist", "cifar10"),
                   help="data set (mnist, fashion_mnist, cifar10: from --data-dir)")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory of the MNIST/Fashion-MNIST IDX or CIFAR-10 binary files")
    g.add_argument("--data-verify", choices=("warn", "strict", "off"), default="warn",
                   help="check the files' MD5 against the official ones")
    g.add_argument("--synthetic-samples", type=int, default=20000, help="size of --data synthetic")
    g.add_argument("--split", choices=PARTITIONS, default="iid", help="split across agents")
    g.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")


def _groups_async(p) -> None:
    from .stragglers import ASYNC_METHODS

    g = p.add_argument_group(
        "asynchrony and stragglers (simulator: virtual time; MPI: emulated compute, wall time)")
    g.add_argument("--async", dest="async_method", choices=ASYNC_METHODS, default=None,
                   metavar="METHOD",
                   help=f"asynchronous training over one-sided windows ({', '.join(ASYNC_METHODS)}"
                        "): no agent waits for another. Simulator: events of the compute model "
                        "below up to --duration (default --steps x --compute-time); MPI: every "
                        "rank steps until --duration seconds after a common start")
    g.add_argument("--compute-time", type=float, default=None, metavar="MEAN",
                   help="mean compute time of a step: virtual seconds in the simulator "
                        "(default 1.0), seconds of emulated compute (a sleep) per step under "
                        "MPI (default 0: none)")
    g.add_argument("--jitter", type=float, default=0.0,
                   help="relative half-width j in [0, 1) of the uniform jitter U[1-j, 1+j]")
    g.add_argument("--straggler", type=int, default=None, metavar="RANK",
                   help="the agent (rank) made --slowdown times slower")
    g.add_argument("--slowdown", type=float, default=1.0, metavar="K",
                   help="how many times slower the straggler(s) are (>= 1)")
    g.add_argument("--slow-fraction", type=float, default=0.0,
                   help="instead of --straggler: a random fraction of the agents is slower")
    g.add_argument("--latency", type=float, default=0.0,
                   help="simulator only: virtual latency of every link (synchronous methods "
                        "pay it every step)")
    g.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="--async only: the deadline (wall seconds under MPI, required there; "
                        "virtual seconds in the simulator)")


def _groups_output(p) -> None:
    g = p.add_argument_group("output and checkpoints (all checked before the first step)")
    g.add_argument("--out", default=None, help="JSON file of metrics (rank 0 writes it)")
    g.add_argument("--plot", default=None, help="PNG file with the curves")
    g.add_argument("--metrics-csv", default=None, metavar="PATH",
                   help="CSV of the records, written as they arrive (default: <out>.csv)")
    g.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="TensorBoard event files (default: <out>_tb when tensorboardX or "
                        "torch is installed)")
    g.add_argument("--wandb", action="store_true",
                   help="log to Weights & Biases (skipped with a warning without wandb)")
    g.add_argument("--wandb-project", default=None, help="W&B project (default bluefog-jax)")
    g.add_argument("--checkpoint-dir", default=None, help="directory of ckpt-<step>.npz files")
    g.add_argument("--checkpoint-every", type=int, default=0,
                   help="save all agents' states every this many steps (0: never)")
    g.add_argument("--keep", type=int, default=2,
                   help="checkpoints of this run kept (the newest finite one always is)")
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --checkpoint-dir")
    g.add_argument("--elastic", action="store_true",
                   help="--resume may take a checkpoint of another number of agents: every "
                        "agent starts from their average (bluefog_train/elastic.py); set by "
                        "bfrun --elastic, which relaunches a failed job on one rank fewer")
    g.add_argument("--overwrite", action="store_true",
                   help="allow a fresh run to replace another run's checkpoints in "
                        "--checkpoint-dir (they are deleted once this run's first is written)")


def _apply_config_file(parser, argv: list) -> None:
    """``--config run.toml``: its keys (option names, ``-`` or ``_``) become the parser's
    defaults, so flags on the command line override them."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return
    import tomllib

    try:
        with open(known.config, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"--config {known.config!r} cannot be read as TOML: {err}") from None
    dests = {a.dest for a in parser._actions} - {"help", "config"}
    values = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(values) - dests)
    if unknown:
        raise ValueError(f"--config {known.config!r}: unknown option(s) {unknown}; expected "
                         f"option names of bluefog-train --help, e.g. steps = 1000, "
                         f"lr-schedule = \"cosine\".")
    parser.set_defaults(**values)


def build_parser() -> argparse.ArgumentParser:
    """The ``bluefog-train`` argument parser (option names are stable; ``--help`` shows defaults)."""
    p = argparse.ArgumentParser(
        prog="bluefog-train", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Decentralized training of a small classifier on scikit-learn's digits "
                    "(or synthetic data) in the vmap simulator or under MPI.")
    p.add_argument("--config", default=None, metavar="RUN.toml",
                   help="TOML file of options (names as on the command line); flags given "
                        "on the command line override it")
    _groups_run(p)
    _groups_model(p)
    _groups_async(p)
    _groups_output(p)
    return p


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _summary(results: dict, agents: int) -> str:
    f, t = results["final"], results["timing"]
    sps = t["steps_per_second"]
    return (f"{results['algorithm']['name']} | {results['topology']} | n={agents}: "
            f"test accuracy {100 * f['test_accuracy']:.2f}% (averaged model), agents "
            f"{100 * f['agent_accuracy_mean']:.2f}% mean [{100 * f['agent_accuracy_min']:.1f}, "
            f"{100 * f['agent_accuracy_max']:.1f}], loss {f['loss']:.4f}, consensus distance "
            f"{f['consensus_distance']:.2e}, {results['bytes_sent_per_agent_per_step'] / 1e3:.1f} "
            f"kB/agent/step, " + (f"{sps:.0f} steps/s" if sps else "no steps run")
            + f" (+{t['compile_seconds']:.1f}s compile)")


def _write_outputs(results: dict, cfg: dict) -> None:
    from .plotting import plot_history

    if cfg["out"]:
        import os

        os.makedirs(os.path.dirname(os.path.abspath(cfg["out"])), exist_ok=True)
        with open(cfg["out"], "w") as fh:
            json.dump(results, fh, default=_json_default)
        print(f"wrote {cfg['out']}")
    if cfg["plot"]:
        plot_history(results, cfg["plot"])
        print(f"wrote {cfg['plot']}")


def _error(text: str) -> None:
    """Print an error once: under MPI every rank raised the same (agreed) error, so only
    rank 0 prints it."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.COMM_WORLD.Get_rank() == 0:
        print(text, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    """Entry point of the ``bluefog-train`` console script; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).
    """
    from bluefog.engine import CallbackError

    from .training import TrainingDiverged, TrainingStopped, train

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        _apply_config_file(parser, argv)
    except ValueError as err:
        print(f"bluefog-train: error: {err}", file=sys.stderr)
        return 2
    cfg = vars(parser.parse_args(argv))
    cfg["command_line"] = ["bluefog-train"] + argv
    try:
        results = train(cfg, progress=True if cfg["progress"] else False)
    except (ValueError, TypeError, FileNotFoundError) as err:
        _error(f"bluefog-train: error: {err}")
        return 2
    except TrainingDiverged as err:
        _error(f"bluefog-train: error: {err}")
        return 3
    except TrainingStopped as err:
        _error(f"bluefog-train: {err}")
        return err.exit_code
    except CallbackError as err:  # e.g. a full disk while writing a checkpoint
        _error(f"bluefog-train: error: writing a checkpoint failed: {err}. The checkpoints "
               "written before are intact; free the space or fix the directory, then --resume.")
        return 1
    if results is None:  # MPI rank > 0
        return 0
    results.pop("_final_params")
    print(_summary(results, results["config"]["agents"]))
    h = results["history"]
    bad = [s for s, v in zip(h["step"], h["loss"]) if not np.isfinite(v)]
    if bad:  # only reachable with --allow-nonfinite
        print(f"bluefog-train: warning: the loss is not finite from step {bad[0]} on "
              "(--allow-nonfinite recorded it).", file=sys.stderr)
    _write_outputs(results, cfg)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
