r"""``bluefog-train``: decentralized training of a classifier, in the simulator or under MPI.

One experiment = a model (:mod:`algorithms.models`) + a data split across agents
(:mod:`algorithms.data`) = a :class:`bluefog.Problem`, an optimizer
(:mod:`algorithms.optim`) = a :class:`bluefog.Algorithm`, and a topology; the backend's
``run`` (``bluefog_sim.run`` or ``bluefog_dist.run``, unchanged) trains it, with the metrics
of :func:`classification_metrics` computed inside the compiled loop with communicator
collectives (so every agent / rank records the same values). Between segments of
``--checkpoint-every`` steps all agents' states are saved atomically
(:mod:`algorithms.checkpoint`); ``--resume`` continues from the newest valid checkpoint and,
in the simulator, reproduces the uninterrupted run bit for bit.

Examples
--------
::

    bluefog-train --backend sim --agents 64 --topology exponential --optimizer dmsgd \
        --steps 1000 --out runs/exp64.json --plot runs/exp64.png
    bfrun -np 4 bluefog-train --backend mpi --agents 4 --steps 200 --out runs/mpi4.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

__all__ = ["TOPOLOGIES", "OPTIMIZERS", "build_parser", "make_topology", "make_experiment",
           "classification_metrics", "train", "plot_history", "main"]

#: Topology names accepted by ``--topology`` / ``--machine-topology``.
TOPOLOGIES = ("exponential", "symmetric_exponential", "ring", "star", "full", "hypercube",
              "torus", "grid", "one_peer_exponential", "random_matching")
#: Optimizer names accepted by ``--optimizer``.
OPTIMIZERS = ("sgd", "dmsgd", "nesterov", "adam", "qg_dsgdm")
#: Configuration keys that may change between an interrupted run and its resumption.
_RUNTIME_KEYS = ("steps", "resume", "out", "plot", "progress", "checkpoint_dir",
                 "checkpoint_every", "keep", "backend")


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------
def _near_square(n: int) -> tuple[int, int]:
    r = int(math.isqrt(n))
    while n % r:
        r -= 1
    return r, n // r


def make_topology(name: str, n: int, seed: int = 0):
    """The topology ``name`` (one of :data:`TOPOLOGIES`) over ``n`` agents.

    ``torus``/``grid`` use the most square factorisation ``rows x cols = n``; ``hypercube``
    needs ``n`` a power of two; the dynamic ``one_peer_exponential`` and ``random_matching``
    change pattern every communication.
    """
    from bluefog import topology as T

    if name not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}; got {name!r}.")
    if name == "hypercube":
        dim = int(round(math.log2(n))) if n >= 1 else 0
        if 2 ** dim != n:
            raise ValueError(f"topology 'hypercube' needs a power-of-two number of agents; got {n}.")
        return T.hypercube_graph(dim)
    if name in ("torus", "grid"):
        rows, cols = _near_square(n)
        return (T.torus_2d_graph if name == "torus" else T.grid_2d_graph)(rows, cols)
    if name == "random_matching":
        return T.random_matching(n, seed=seed)
    factory = {"exponential": T.exponential_graph, "symmetric_exponential": T.symmetric_exponential_graph,
               "ring": T.ring_graph, "star": T.star_graph, "full": T.fully_connected_graph,
               "one_peer_exponential": T.one_peer_exponential_graph}[name]
    return factory(n)


def _make_optimizer(cfg: dict, machine_topology):
    import optax

    from .optim import decentralized, dmsgd, qg_dsgdm

    common = dict(communication=cfg["communication"],
                  steps_per_communication=cfg["steps_per_communication"],
                  machine_topology=machine_topology)
    name, lr, beta = cfg["optimizer"], cfg["lr"], cfg["momentum"]
    if name == "qg_dsgdm":
        return qg_dsgdm(lr, beta, **common)
    if name in ("dmsgd", "nesterov") and cfg["style"] == "atc":
        return dmsgd(lr, beta, nesterov=name == "nesterov", **common)
    inner = {"sgd": lambda: optax.sgd(lr),
             "dmsgd": lambda: optax.sgd(lr, momentum=beta),
             "nesterov": lambda: optax.sgd(lr, momentum=beta, nesterov=True),
             "adam": lambda: optax.adam(lr)}[name]()
    return decentralized(inner, style=cfg["style"], name=f"{cfg['style']}-{name}",
                         config={"inner": name, "lr": lr, "momentum": beta}, **common)


def _split_test(X_test, y_test, n: int):
    """Pad the test set to ``n * k`` rows and cut it into ``n`` slices (mask marks real rows),
    so that each agent evaluates the averaged model on ``1/n`` of it."""
    N = len(y_test)
    k = -(-N // n)
    pad = n * k - N
    Xp = np.concatenate([X_test, np.zeros((pad,) + X_test.shape[1:], X_test.dtype)])
    yp = np.concatenate([y_test, np.zeros(pad, y_test.dtype)])
    mask = np.concatenate([np.ones(N, np.float32), np.zeros(pad, np.float32)])
    return Xp.reshape(n, k, *X_test.shape[1:]), yp.reshape(n, k), mask.reshape(n, k)


def classification_metrics(model, X_test, y_test, n: int, *, agent_accuracy: bool = False):
    r"""Metric function ``(params, ctx) -> dict`` for :func:`bluefog_sim.run`'s ``metrics=``.

    With :math:`\bar x = \frac1n\sum_i x_i` (an ``allreduce``), :math:`f_i` agent ``i``'s
    full-shard training loss and :math:`\mathrm{acc}(x)` the test accuracy:

    * ``loss`` :math:`= \frac1n\sum_i f_i(\bar x)` (training loss of the averaged model),
    * ``local_loss`` :math:`= \frac1n\sum_i f_i(x_i)`,
    * ``test_accuracy`` :math:`= \mathrm{acc}(\bar x)`, evaluated in a distributed way
      (agent ``i`` scores slice ``i`` of the test set, an ``allreduce`` sums the hits),
    * ``agent_accuracy_mean`` / ``_min`` / ``_max`` over :math:`\mathrm{acc}(x_i)` (an
      ``allreduce`` and an ``allgather``), only with ``agent_accuracy=True``: every agent
      then scores its own model on the whole test set at every record, which in the
      64-agent simulator costs about as much as 16 training steps per record (measured),
    * ``consensus_distance`` :math:`= \sqrt{\frac1n\sum_i\|x_i-\bar x\|^2}`.

    All are computed with communicator collectives, so every agent returns the same values.
    """
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from .models import accuracy

    X_test = np.asarray(X_test, np.float32)
    y_test = np.asarray(y_test, np.int32)
    Xs, ys, mask = (jnp.asarray(a) for a in _split_test(X_test, y_test, n))
    Xt, yt = jnp.asarray(X_test), jnp.asarray(y_test)
    n_test = float(len(y_test))

    def metrics(params, ctx):
        comm = ctx.comm
        xbar = comm.allreduce(params)
        r = comm.rank()
        hits = jnp.sum(mask[r] * (jnp.argmax(model.apply(xbar, Xs[r]), -1) == ys[r]))
        x, _ = ravel_pytree(params)
        xb, _ = ravel_pytree(xbar)
        local = [ctx.loss(xbar), ctx.loss(params), hits.astype(x.dtype), jnp.sum((x - xb) ** 2)]
        if agent_accuracy:
            own = accuracy(model.apply(params, Xt), yt).astype(x.dtype)
            local.append(own)
        red = comm.allreduce(jnp.stack(local), average=False)
        out = {"loss": red[0] / n, "local_loss": red[1] / n, "test_accuracy": red[2] / n_test,
               "consensus_distance": jnp.sqrt(red[3] / n)}
        if agent_accuracy:
            accs = comm.allgather(own)
            out["agent_accuracy_mean"] = red[4] / n
            out["agent_accuracy_min"] = jnp.min(accs)
            out["agent_accuracy_max"] = jnp.max(accs)
        return out

    return metrics


def make_experiment(cfg: dict) -> dict:
    """Everything a run needs, from a configuration dict (the CLI's parsed arguments).

    Returns a dict with ``problem``, ``topology``, ``algorithm``, ``metrics``, ``model``,
    ``bytes_per_step`` (bytes sent per agent per step, :func:`~algorithms.optim.
    communication_bytes_per_step`) and ``label_histogram`` (per-agent label counts).
    """
    from .data import label_histogram, load_digits, partition, synthetic_classification
    from .models import MODELS, classification_problem
    from .optim import communication_bytes_per_step

    n = cfg["agents"]
    if cfg["data"] == "digits":
        X_tr, y_tr, X_te, y_te = load_digits(seed=cfg["seed"])
    else:
        X, y = synthetic_classification(cfg["synthetic_samples"], 64, 10, seed=cfg["seed"])
        cut = int(0.8 * len(y))
        X_tr, y_tr, X_te, y_te = X[:cut], y[:cut], X[cut:], y[cut:]
    Xs, ys = partition(X_tr, y_tr, n, cfg["split"], alpha=cfg["alpha"], seed=cfg["seed"])
    if cfg["model"] == "mlp":
        model = MODELS["mlp"](hidden=tuple(cfg["hidden"]))
    else:
        model = MODELS["cnn"]()
    problem = classification_problem(model, Xs, ys, batch_size=cfg["batch_size"], seed=cfg["seed"],
                                     l2=cfg["l2"], name=f"{cfg['model']}-{cfg['data']}-{cfg['split']}")
    topology = make_topology(cfg["topology"], n, seed=cfg["seed"])
    L = cfg["local_size"]
    machine = None
    if cfg["communication"] == "hierarchical":
        if n % L:
            raise ValueError(f"--local-size must divide --agents; got agents={n}, local-size={L}.")
        machine = make_topology(cfg["machine_topology"], n // L, seed=cfg["seed"])
    algorithm = _make_optimizer(cfg, machine)
    bytes_per_step = communication_bytes_per_step(
        problem.init_params, communication=cfg["communication"], topology=topology,
        steps_per_communication=cfg["steps_per_communication"], machine_topology=machine,
        local_size=L)
    metrics = classification_metrics(model, X_te, y_te, n, agent_accuracy=cfg["track_agents"])
    return {"problem": problem, "topology": topology, "algorithm": algorithm, "metrics": metrics,
            "model": model, "bytes_per_step": bytes_per_step, "test": (X_te, y_te),
            "label_histogram": label_histogram(ys, 10).tolist()}


# --------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------
class _SimBackend:
    name = "sim"
    rank = 0
    size = None

    def run(self, *args, **kwargs):
        import bluefog_sim

        return bluefog_sim.run(*args, **kwargs)

    def stacked(self, state):
        return state

    def unstacked(self, stacked):
        return stacked

    def bcast(self, obj):
        return obj

    def barrier(self):
        pass


class _MpiBackend:
    name = "mpi"

    def __init__(self, local_size):
        import bluefog_dist

        self.comm = bluefog_dist.default_comm(local_size)
        self.mpi = self.comm.comm
        self.rank, self.size = self.mpi.Get_rank(), self.mpi.Get_size()

    def run(self, *args, local_size=None, **kwargs):
        import bluefog_dist

        return bluefog_dist.run(*args, comm=self.comm, **kwargs)

    def stacked(self, state):
        """All ranks' states stacked on rank 0 (``None`` elsewhere)."""
        import jax

        leaves, treedef = jax.tree_util.tree_flatten(state)
        gathered = self.mpi.gather([np.asarray(v) for v in leaves], root=0)
        if self.rank != 0:
            return None
        return jax.tree_util.tree_unflatten(treedef, [np.stack(v) for v in zip(*gathered)])

    def unstacked(self, stacked):
        import jax

        return jax.tree_util.tree_map(lambda a: np.asarray(a)[self.rank], stacked)

    def bcast(self, obj):
        return self.mpi.bcast(obj, root=0)

    def barrier(self):
        self.mpi.Barrier()


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------
def _resume_key(cfg: dict) -> dict:
    return {k: v for k, v in sorted(cfg.items()) if k not in _RUNTIME_KEYS}


def _state_template(algorithm, problem, n):
    import jax

    one = jax.eval_shape(lambda p: algorithm.init(p, None), problem.init_params)
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct((n,) + s.shape, s.dtype), one)


def train(cfg: dict, *, progress: bool | None = None) -> dict | None:
    """Run the experiment described by ``cfg``; return the results dict (rank 0) or ``None``.

    ``cfg`` holds the CLI's options (see :func:`build_parser`; ``vars(parser.parse_args())``).
    The run proceeds in segments of ``checkpoint_every`` steps (one segment when 0); after
    each, all agents' states are checkpointed. With ``resume`` the newest valid checkpoint
    of ``checkpoint_dir`` is loaded (its configuration must match, apart from
    ``steps``/output options) and training continues to ``steps``.
    """
    from . import checkpoint as ckpt

    cfg = dict(cfg)
    _validate(cfg)
    backend = _MpiBackend(cfg["local_size"]) if cfg["backend"] == "mpi" else _SimBackend()
    exp = make_experiment(cfg)
    problem, topology, algorithm = exp["problem"], exp["topology"], exp["algorithm"]
    n, steps, every = cfg["agents"], cfg["steps"], cfg["record_every"]
    if backend.name == "mpi" and backend.size != n:
        raise ValueError(
            f"--agents must equal the MPI world size under --backend mpi; got agents={n}, world "
            f"size={backend.size}. Launch with bfrun -np {n} or pass --agents {backend.size}.")

    state, start, history, stacked = None, 0, {}, None
    if cfg["resume"]:
        path = ckpt.latest(cfg["checkpoint_dir"]) if backend.rank == 0 else None
        path = backend.bcast(path)
        if path is None:
            raise FileNotFoundError(
                f"--resume: no valid checkpoint in {cfg['checkpoint_dir']!r}. Run without "
                "--resume first (with --checkpoint-dir and --checkpoint-every).")
        stacked, manifest = ckpt.load(path, _state_template(algorithm, problem, n))
        saved = manifest["metadata"].get("config", {})
        if saved != json.loads(json.dumps(_resume_key(cfg))):
            diff = sorted(k for k in set(saved) | set(_resume_key(cfg))
                          if saved.get(k) != json.loads(json.dumps(_resume_key(cfg).get(k))))
            raise ValueError(
                f"--resume: the checkpoint {path} was written with a different configuration "
                f"(differs in {diff}). Resume with the same options, or use a fresh "
                "--checkpoint-dir.")
        start = int(manifest["step"])
        history = {k: list(v) for k, v in manifest["metadata"]["history"].items()}
        if start > steps:
            raise ValueError(f"--resume: the checkpoint is at step {start} > --steps {steps}; "
                             f"pass --steps >= {start}.")
        state = backend.unstacked(stacked)

    bounds = list(range(start, steps, cfg["checkpoint_every"] or steps)) + [steps]
    t_run = t_compile = 0.0
    t0 = time.perf_counter()
    for a, b in zip(bounds[:-1], bounds[1:]):
        res = backend.run(algorithm, problem, topology, b - a, seed=cfg["seed"],
                          record_every=min(every, b - a), progress=progress,
                          metrics=exp["metrics"], state=state, local_size=cfg["local_size"])
        state = res.state
        t_run += res.run_seconds
        t_compile += res.compile_seconds
        keep_from = 0 if not history else 1  # a continuation re-records its starting point
        for k, v in res.history.items():
            v = np.asarray(v)[keep_from:]
            if k == "step":
                v = v + a
            history.setdefault(k, []).extend(v.tolist())
        if cfg["checkpoint_every"]:
            stacked = backend.stacked(state)
            if backend.rank == 0:
                ckpt.save(cfg["checkpoint_dir"], stacked, step=b, keep=cfg["keep"],
                          metadata={"config": _resume_key(cfg), "history": history})
            backend.barrier()
    wall = time.perf_counter() - t0
    if len(bounds) > 1:
        final_params = backend.stacked(res.params) if backend.name == "mpi" else res.params
    else:  # resumed at --steps: nothing left to run, report the checkpoint
        import jax

        final_params = jax.vmap(algorithm.params)(stacked)
    if backend.rank != 0:
        return None

    per_agent = _per_agent_accuracy(exp["model"], final_params, *exp["test"])
    done = steps - start
    results = {
        "config": {k: cfg[k] for k in sorted(cfg)},
        "algorithm": {"name": algorithm.name, "config": algorithm.config},
        "topology": topology.name,
        "history": history,
        "final": {**{k: history[k][-1] for k in ("loss", "local_loss", "test_accuracy",
                                                 "consensus_distance")},
                  "agent_accuracy_mean": float(np.mean(per_agent)),
                  "agent_accuracy_min": min(per_agent), "agent_accuracy_max": max(per_agent)},
        "per_agent_test_accuracy": per_agent,
        "bytes_sent_per_agent_per_step": exp["bytes_per_step"],
        "bytes_sent_per_agent_total": exp["bytes_per_step"] * steps,
        "label_histogram": exp["label_histogram"],
        "timing": {"steps_this_invocation": done, "run_seconds": t_run,
                   "compile_seconds": t_compile, "wall_seconds": wall,
                   "steps_per_second": done / t_run if t_run > 0 else None},
        "resumed_from_step": start if cfg["resume"] else None,
    }
    results["_final_params"] = final_params
    return results


def _per_agent_accuracy(model, stacked_params, X_test, y_test) -> list:
    """Test accuracy of every agent's final model (``stacked_params`` has leading axis n)."""
    import jax
    import jax.numpy as jnp

    from .models import accuracy

    Xt, yt = jnp.asarray(X_test), jnp.asarray(y_test)
    accs = jax.jit(jax.vmap(lambda p: accuracy(model.apply(p, Xt), yt)))(stacked_params)
    return [float(a) for a in np.asarray(accs)]


def plot_history(results: dict, path: str) -> None:
    """Save a 2x2 PNG: training loss, test accuracy (averaged model, agents' mean and
    min-max band), consensus distance, and the final per-agent accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = {k: np.asarray(v) for k, v in results["history"].items()}
    step = h["step"]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    ax[0, 0].semilogy(step, h["loss"], label=r"$f(\bar x)$ (averaged model)")
    ax[0, 0].semilogy(step, h["local_loss"], label=r"$\frac{1}{n}\sum_i f_i(x_i)$", ls="--")
    ax[0, 0].set(title="training loss", xlabel="step")
    ax[0, 0].legend()
    ax[0, 1].plot(step, 100 * h["test_accuracy"], label="averaged model")
    if "agent_accuracy_mean" in h:  # recorded with --track-agents
        ax[0, 1].plot(step, 100 * h["agent_accuracy_mean"], label="mean over agents", ls="--")
        ax[0, 1].fill_between(step, 100 * h["agent_accuracy_min"], 100 * h["agent_accuracy_max"],
                              alpha=0.2, label="agents min-max")
    else:
        per = results["per_agent_test_accuracy"]
        ax[0, 1].errorbar([step[-1]], [100 * np.mean(per)],
                          yerr=[[100 * (np.mean(per) - min(per))], [100 * (max(per) - np.mean(per))]],
                          fmt="o", capsize=4, label="final: agents mean, min-max")
    ax[0, 1].set(title="test accuracy (%)", xlabel="step", ylim=(0, 100))
    ax[0, 1].legend(loc="lower right")
    later = step > 0  # at step 0 every agent holds the same model (distance = rounding only)
    ax[1, 0].semilogy(step[later], np.maximum(h["consensus_distance"][later], 1e-12))
    ax[1, 0].set(title=r"consensus distance $\sqrt{\frac{1}{n}\sum_i\|x_i-\bar x\|^2}$", xlabel="step")
    per = results.get("per_agent_test_accuracy")
    if per:
        ax[1, 1].bar(np.arange(len(per)), 100 * np.asarray(per))
        ax[1, 1].set(title="final test accuracy per agent (%)", xlabel="agent",
                     ylim=(max(0, 100 * min(per) - 10), 100))
    else:
        ax[1, 1].axis("off")
    cfg = results["config"]
    mb = results["bytes_sent_per_agent_per_step"] / 1e3
    fig.suptitle(f"{results['algorithm']['name']} | {results['topology']} | {cfg['model']} on "
                 f"{cfg['data']} ({cfg['split']}) | n={cfg['agents']} | {mb:.1f} kB/agent/step")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``bluefog-train`` argument parser (option names are stable)."""
    from .data import PARTITIONS
    from .optim import COMMUNICATIONS

    p = argparse.ArgumentParser(
        prog="bluefog-train",
        description="Decentralized training of a small classifier on scikit-learn's digits "
                    "(or synthetic data) in the vmap simulator or under MPI.")
    g = p.add_argument_group("run")
    g.add_argument("--backend", choices=("sim", "mpi"), default="sim",
                   help="sim: all agents in one process (jax.vmap); mpi: one agent per rank "
                        "(launch under bfrun -np N / mpiexec -n N).")
    g.add_argument("--agents", type=int, default=None,
                   help="number of agents (default: 64 in sim, the world size under mpi)")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--record-every", type=int, default=None,
                   help="metrics every this many steps (default steps // 50)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar")
    g = p.add_argument_group("communication")
    g.add_argument("--topology", choices=TOPOLOGIES, default="exponential")
    g.add_argument("--communication", choices=COMMUNICATIONS, default="neighbor")
    g.add_argument("--style", choices=("atc", "awc"), default="atc")
    g.add_argument("--steps-per-communication", type=int, default=1)
    g.add_argument("--local-size", type=int, default=1,
                   help="agents per machine (hierarchical communication)")
    g.add_argument("--machine-topology", choices=TOPOLOGIES, default="exponential",
                   help="topology over machines for --communication hierarchical")
    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="dmsgd")
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--batch-size", type=int, default=16, help="minibatch per agent")
    g.add_argument("--l2", type=float, default=0.0, help="weight decay")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    g.add_argument("--hidden", type=int, nargs="+", default=[64], help="MLP hidden widths")
    g.add_argument("--track-agents", action="store_true",
                   help="record every agent's own test accuracy (mean/min/max) at every record "
                        "(one forward pass of every agent over the test set per record; the "
                        "final per-agent accuracies are always reported)")
    g.add_argument("--data", choices=("digits", "synthetic"), default="digits")
    g.add_argument("--synthetic-samples", type=int, default=20000)
    g.add_argument("--split", choices=PARTITIONS, default="iid")
    g.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    g = p.add_argument_group("output and checkpoints")
    g.add_argument("--out", default=None, help="JSON file of metrics (rank 0 writes it)")
    g.add_argument("--plot", default=None, help="PNG file with the curves")
    g.add_argument("--checkpoint-dir", default=None)
    g.add_argument("--checkpoint-every", type=int, default=0,
                   help="save all agents' states every this many steps (0: never)")
    g.add_argument("--keep", type=int, default=2, help="checkpoints kept")
    g.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint in --checkpoint-dir")
    return p


def _validate(cfg: dict) -> None:
    for key in ("steps", "batch_size", "steps_per_communication", "local_size", "keep",
                "synthetic_samples"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be a positive int; got {cfg[key]!r}.")
    if cfg["agents"] is None:
        cfg["agents"] = 64
        if cfg["backend"] == "mpi":
            from mpi4py import MPI

            cfg["agents"] = MPI.COMM_WORLD.Get_size()
    if not isinstance(cfg["agents"], int) or cfg["agents"] < 1:
        raise ValueError(f"--agents must be a positive int; got {cfg['agents']!r}.")
    if cfg["record_every"] is None:
        cfg["record_every"] = max(1, cfg["steps"] // 50)
    if cfg["record_every"] < 1:
        raise ValueError(f"--record-every must be a positive int; got {cfg['record_every']!r}.")
    if not cfg["lr"] > 0:
        raise ValueError(f"--lr must be positive; got {cfg['lr']!r}.")
    if cfg["checkpoint_every"] < 0:
        raise ValueError(f"--checkpoint-every must be >= 0 (0: no checkpoints); got {cfg['checkpoint_every']}.")
    if (cfg["checkpoint_every"] or cfg["resume"]) and not cfg["checkpoint_dir"]:
        raise ValueError("--checkpoint-every and --resume need --checkpoint-dir DIR.")
    if cfg["checkpoint_every"] and cfg["checkpoint_every"] % cfg["record_every"]:
        raise ValueError(
            f"--checkpoint-every must be a multiple of --record-every so that a resumed run "
            f"records the same steps; got checkpoint-every={cfg['checkpoint_every']}, "
            f"record-every={cfg['record_every']}.")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def main(argv=None) -> int:
    """Entry point of the ``bluefog-train`` console script."""
    args = build_parser().parse_args(argv)
    cfg = vars(args)
    try:
        results = train(cfg, progress=True if cfg["progress"] else False)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"bluefog-train: error: {err}", file=sys.stderr)
        return 2
    if results is None:  # MPI rank > 0
        return 0
    results.pop("_final_params")
    f = results["final"]
    t = results["timing"]
    sps = t["steps_per_second"]
    print(f"{results['algorithm']['name']} | {results['topology']} | n={cfg['agents']}: "
          f"test accuracy {100 * f['test_accuracy']:.2f}% (averaged model), agents "
          f"{100 * f['agent_accuracy_mean']:.2f}% mean [{100 * f['agent_accuracy_min']:.1f}, "
          f"{100 * f['agent_accuracy_max']:.1f}], loss {f['loss']:.4f}, consensus distance "
          f"{f['consensus_distance']:.2e}, {results['bytes_sent_per_agent_per_step'] / 1e3:.1f} "
          f"kB/agent/step, " + (f"{sps:.0f} steps/s" if sps else "no steps run")
          + f" (+{t['compile_seconds']:.1f}s compile)")
    if cfg["out"]:
        os.makedirs(os.path.dirname(os.path.abspath(cfg["out"])), exist_ok=True)
        with open(cfg["out"], "w") as fh:
            json.dump(results, fh, default=_json_default)
        print(f"wrote {cfg['out']}")
    if cfg["plot"]:
        plot_history(results, cfg["plot"])
        print(f"wrote {cfg['plot']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
