r"""One experiment of ``bluefog-train``: topology, optimizer, problem and in-loop metrics.

An experiment is a model (:mod:`bluefog_train.models`) and a data split across agents
(:mod:`bluefog_train.data`), which together make a :class:`bluefog.Problem`; an optimizer of
the algorithm library (:mod:`algorithms.optim`), which is a :class:`bluefog.Algorithm`; a
topology (:mod:`bluefog.topology`); and the metric function
:func:`bluefog_train.evaluation.classification_metrics`, evaluated inside the compiled loop
with communicator collectives (so every agent / rank records the same values).
:func:`make_experiment` builds all of it from the CLI's configuration dict; nothing here runs
a step.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .evaluation import classification_metrics, with_test_data

__all__ = ["TOPOLOGIES", "OPTIMIZERS", "make_topology", "make_optimizer", "make_lr",
           "async_bytes_per_step",
           "classification_metrics", "make_experiment"]

#: Topology names accepted by ``--topology`` / ``--machine-topology``.
TOPOLOGIES = ("exponential", "symmetric_exponential", "ring", "star", "full", "hypercube",
              "torus", "grid", "one_peer_exponential", "random_matching")
#: Optimizer names accepted by ``--optimizer``.
OPTIMIZERS = ("sgd", "dmsgd", "nesterov", "adam", "qg_dsgdm")


def _near_square(n: int) -> tuple[int, int]:
    r = int(math.isqrt(n))
    while n % r:
        r -= 1
    return r, n // r


def make_topology(name: str, n: int, seed: int = 0):
    r"""The topology ``name`` (one of :data:`TOPOLOGIES`) over ``n`` agents.

    ``torus``/``grid`` use the most square factorisation :math:`r \times c = n`
    (:math:`r = \max\{d \le \sqrt n : d \mid n\}`); ``hypercube`` needs :math:`n = 2^k`;
    ``exponential`` lets agent :math:`i` receive from :math:`i - 2^k \bmod n` (Ying et al.,
    "Exponential graph is provably efficient for decentralized deep training", NeurIPS
    2021); the dynamic ``one_peer_exponential`` and ``random_matching`` change pattern
    every communication. Constructors: :mod:`bluefog.topology`.

    Raises
    ------
    ValueError
        For an unknown ``name`` or a ``hypercube`` over a non-power-of-two ``n``.
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


def parse_compressor(spec: str):
    """The compressor of ``--compress SPEC`` (:func:`bluefog.compression.parse`)."""
    from bluefog.compression import parse

    return parse(spec)


def make_lr(cfg: dict):
    r"""The step size of ``--lr`` and ``--lr-schedule`` (an optax schedule, or a float).

    With peak :math:`\gamma` = ``--lr``, :math:`T` = ``--steps`` and :math:`w` =
    ``--warmup-steps``: ``constant`` :math:`\gamma_t = \gamma`; ``cosine``
    :math:`\gamma_t = \tfrac{\gamma}{2}(1 + \cos(\pi t / T))`; ``warmup_cosine`` linear from 0
    to :math:`\gamma` over :math:`w` steps, then cosine to 0 at :math:`T` (Loshchilov & Hutter,
    "SGDR", ICLR 2017; Goyal et al., arXiv:1706.02677 for the warm-up). :math:`t` is the
    optimizer's step counter, so a resumed run continues the same schedule.
    """
    import optax

    kind = cfg.get("lr_schedule") or "constant"
    if kind == "constant":
        return cfg["lr"]
    if kind == "cosine":
        return optax.cosine_decay_schedule(cfg["lr"], cfg["steps"])
    return optax.warmup_cosine_decay_schedule(0.0, cfg["lr"], cfg["warmup_steps"], cfg["steps"])


def make_optimizer(cfg: dict, machine_topology):
    r"""The decentralized optimizer named by ``cfg["optimizer"]`` (one of :data:`OPTIMIZERS`).

    ``sgd``/``dmsgd``/``nesterov``/``adam`` wrap the optax optimizer of that name with
    :func:`algorithms.optim.decentralized` (ATC: :math:`x_i \leftarrow \sum_j w_{ij}
    (x_j + u_j)` with :math:`u_j` the optax update; AWC: :math:`x_i \leftarrow \sum_j
    w_{ij} x_j + u_i`); ATC ``dmsgd``/``nesterov`` use :func:`algorithms.optim.dmsgd`
    (Ying et al., BlueFog, arXiv:2111.04287, "DmSGD"); ``qg_dsgdm`` is quasi-global
    momentum (Lin et al., ICML 2021, Alg. 1). ``machine_topology`` is the topology over
    machines for ``communication="hierarchical"`` (else ``None``). With ``cfg["compress"]``
    (``--compress topk:0.01``) the mixing is CHOCO's with consensus step
    ``cfg["consensus_step"]`` and only compressed payloads are exchanged.
    """
    import optax

    from algorithms.optim import decentralized, dmsgd, qg_dsgdm

    if cfg.get("async_method"):  # checked by bluefog_train.stragglers: plain SGD steps
        from algorithms import ASYNC_REGISTRY

        return ASYNC_REGISTRY[cfg["async_method"]](cfg["lr"])
    common = dict(communication=cfg["communication"],
                  steps_per_communication=cfg["steps_per_communication"],
                  machine_topology=machine_topology)
    name, lr, beta = cfg["optimizer"], make_lr(cfg), cfg["momentum"]
    compression = {}
    if cfg.get("compress"):  # checked by bluefog_train.config.validate_config
        compression = dict(compressor=parse_compressor(cfg["compress"]),
                           consensus_step=cfg["consensus_step"])
    if name == "qg_dsgdm":
        return qg_dsgdm(lr, beta, **common)
    if name in ("dmsgd", "nesterov") and cfg["style"] == "atc":
        return dmsgd(lr, beta, nesterov=name == "nesterov", **common, **compression)
    inner = {"sgd": lambda: optax.sgd(lr),
             "dmsgd": lambda: optax.sgd(lr, momentum=beta),
             "nesterov": lambda: optax.sgd(lr, momentum=beta, nesterov=True),
             "adam": lambda: optax.adam(lr)}[name]()
    return decentralized(inner, style=cfg["style"],
                         name=f"{cfg['style']}-{name}" + ("-choco" if compression else ""),
                         config={"inner": name, "lr": cfg["lr"], "momentum": beta,
                                 "lr_schedule": cfg.get("lr_schedule") or "constant"}, **common,
                         **compression)


def async_bytes_per_step(cfg: dict, params, topology) -> float:
    r"""Bytes one agent sends per own step of an ``--async`` method, averaged over agents.

    With :math:`d_j` agent :math:`j`'s out-degree (off-diagonal non-zeros of column
    :math:`j` of ``W``) and :math:`b` the parameters' bytes: ``async_sgp`` accumulates
    :math:`(x_j, w_j)` into every out-neighbour, :math:`ar d\,(b + s)` with :math:`s` the
    weight's bytes; ``ad_psgd`` puts its model to every out-neighbour and one correction
    to the neighbour it averaged with, :math:`(ar d + 1)\,b`.
    """
    import jax

    leaves = jax.tree_util.tree_leaves(params)
    b = float(sum(np.asarray(v).nbytes for v in leaves))
    W = np.asarray(topology.weights)
    degree = float(np.mean(np.count_nonzero(W, axis=0) - (np.diag(W) != 0)))
    if cfg["async_method"] == "ad_psgd":
        return (degree + 1.0) * b
    return degree * (b + np.asarray(leaves[0]).dtype.itemsize)


def make_experiment(cfg: dict, agents: range | None = None) -> dict:
    """Everything a run needs, from a configuration dict (the CLI's parsed arguments).

    Returns a dict with ``problem``, ``topology``, ``algorithm``, ``metrics``, ``model``,
    ``bytes_per_step`` (bytes sent per agent per step,
    :func:`algorithms.optim.communication_bytes_per_step`) and ``label_histogram`` (per-agent label counts).

    ``agents``: a contiguous ``range`` of the agents this process runs (``None``: all, the
    simulator). The problem then holds only their training rows (``Problem.shard``): the
    files of ``--data mnist|fashion_mnist|cifar10`` are read for those rows only
    (:func:`bluefog_train.datasets.load_agent_shards` with ``agents=``); digits and
    synthetic data are generated and split in-process as before and only those rows kept.
    Every agent's labels stay known, so the label histogram covers all agents. Every process
    reads the whole test set; the problem's data carries only its agents' slices of it
    (:func:`bluefog_train.evaluation.with_test_data`), on which the compiled metrics score the
    averaged model (``--track-agents`` also scores each agent's own model on the whole set).

    Raises
    ------
    TypeError, ValueError
        ``agents`` not a non-empty ``range(first, last + 1)`` inside ``range(n)``; a bad data
        or model option (named, with the fix).
    """
    from .data import load_digits, partition, synthetic_classification
    from .datasets import DATASETS

    n = cfg["agents"]
    agents = _check_agents(agents, n)
    if cfg["data"] in DATASETS:
        return _files_experiment(cfg, n, agents)
    if cfg["data"] == "digits":
        X_tr, y_tr, X_te, y_te = load_digits(seed=cfg["seed"])
    else:
        X, y = synthetic_classification(cfg["synthetic_samples"], 64, 10, seed=cfg["seed"])
        cut = int(0.8 * len(y))
        X_tr, y_tr, X_te, y_te = X[:cut], y[:cut], X[cut:], y[cut:]
    Xs, ys = partition(X_tr, y_tr, n, cfg["split"], alpha=cfg["alpha"], seed=cfg["seed"])
    own = slice(agents.start, agents.stop)
    return _assemble(cfg, n, agents, np.asarray(Xs)[own], np.asarray(ys), X_te, y_te)


def _check_agents(agents, n: int) -> range:
    """``agents`` as a non-empty contiguous ``range`` inside ``range(n)`` (default all)."""
    if agents is None:
        return range(n)
    if not isinstance(agents, range):
        raise TypeError(f"make_experiment: agents must be None or a range of agents; got "
                        f"{type(agents).__name__}. Pass e.g. agents=range(rank, rank + 1).")
    if agents.step != 1 or not len(agents) or agents.start < 0 or agents.stop > n:
        raise ValueError(f"make_experiment: agents must be None or a non-empty range(first, "
                         f"last + 1) inside range({n}) (the agents this process runs); got "
                         f"{agents!r}. Pass e.g. agents=range(rank, rank + 1).")
    return agents


def _files_experiment(cfg: dict, n: int, agents: range) -> dict:
    """MNIST / Fashion-MNIST / CIFAR-10 from ``--data-dir`` (:mod:`bluefog_train.datasets`)."""
    from .datasets import agent_labels, load_agent_shards, load_dataset

    if not cfg.get("data_dir"):
        raise ValueError(f"--data {cfg['data']} needs --data-dir DIR, the directory of its "
                         "files (see bluefog_train/datasets.py for names and sources).")
    if cfg["model"] != "mlp":
        raise ValueError(f"--model {cfg['model']} is the 8x8 digits CNN; use --model mlp with "
                         f"--data {cfg['data']}.")
    verify = cfg.get("data_verify") or "warn"
    split = dict(method=cfg["split"], alpha=cfg["alpha"], seed=cfg["seed"])
    Xs, ys = load_agent_shards(cfg["data"], cfg["data_dir"], n, list(agents), verify=verify,
                               **split)
    labels = ys if len(agents) == n else agent_labels(cfg["data"], cfg["data_dir"], n, **split)
    X_te, y_te = load_dataset(cfg["data"], cfg["data_dir"], "test", verify="off")
    return _assemble(cfg, n, agents, Xs, labels, X_te, y_te)


def _assemble(cfg: dict, n: int, agents: range, Xs, labels, X_te, y_te) -> dict:
    """The experiment dict of :func:`make_experiment` from the held agents' shards ``Xs``
    (their rows of the split), every agent's labels ``labels`` ``(n, m)`` and a test set."""
    from .data import label_histogram
    from .models import MODELS, classification_problem
    from algorithms.optim import communication_bytes_per_step

    if cfg["model"] == "mlp":
        model = MODELS["mlp"](hidden=tuple(cfg["hidden"]), input_dim=int(Xs.shape[-1]))
    else:
        model = MODELS["cnn"]()
    own = np.asarray(labels)[agents.start:agents.stop]
    problem = classification_problem(model, Xs, own, batch_size=cfg["batch_size"], seed=cfg["seed"],
                                     l2=cfg["l2"], name=f"{cfg['model']}-{cfg['data']}-{cfg['split']}")
    if len(agents) != n:  # only the held agents' rows (Problem.shard)
        problem = dataclasses.replace(problem, shard=(agents.start, n))
    problem = with_test_data(problem, X_te, y_te)  # each agent's slice of the test set
    topology = make_topology(cfg["topology"], n, seed=cfg["seed"])
    L = cfg["local_size"]
    machine = None
    if cfg["communication"] == "hierarchical":
        if n % L:
            raise ValueError(f"--local-size must divide --agents; got agents={n}, local-size={L}.")
        machine = make_topology(cfg["machine_topology"], n // L, seed=cfg["seed"])
    algorithm = make_optimizer(cfg, machine)
    bytes_per_step = async_bytes_per_step(cfg, problem.init_params, topology) if cfg.get(
        "async_method") else communication_bytes_per_step(
        problem.init_params, communication=cfg["communication"], topology=topology,
        steps_per_communication=cfg["steps_per_communication"], machine_topology=machine,
        local_size=L,
        compressor=parse_compressor(cfg["compress"]) if cfg.get("compress") else None)
    metrics = classification_metrics(model, X_te, y_te, n, agent_accuracy=cfg["track_agents"])
    return {"problem": problem, "topology": topology, "algorithm": algorithm, "metrics": metrics,
            "model": model, "bytes_per_step": bytes_per_step, "test": (X_te, y_te),
            "label_histogram": label_histogram(np.asarray(labels), 10).tolist()}
