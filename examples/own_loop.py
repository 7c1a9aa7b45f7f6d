"""Decentralized training in your own loop: a Flax model with BatchNorm, optax.adamw with a
warm-up + cosine schedule, and ``algorithms.optax_decentralized`` doing the neighbor exchange.

    source .venv/bin/activate            # once per shell
    python examples/own_loop.py --backend sim --agents 64
    bfrun -np 4 python examples/own_loop.py --backend mpi

The loss, the model (``flax.linen``), the data pipeline and the loop are the user's; the
library contributes one optax transformation (the exchange happens inside its ``update``)
and :func:`algorithms.mix_state`, which averages the BatchNorm running statistics with the
same mixing matrix as the parameters. One per-agent function, ``train_chunk(comm, ...)``,
runs ``--record-every`` steps in a ``lax.scan``; the simulator maps it over agents with
``bluefog_sim.spmd`` (``jax.vmap`` over the agent axis), MPI jits it on every rank with an
``MpiComm``. Data: scikit-learn's digits, split iid across agents (under MPI every rank
keeps only its own shard).
"""

from __future__ import annotations

import argparse
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algorithms import mix_state, optax_decentralized
from bluefog.engine import agent_key
from bluefog.topology import exponential_graph
from bluefog_train.data import load_digits, partition


class Net(nn.Module):
    """Dense -> BatchNorm -> ReLU -> Dense (the model has state: BatchNorm statistics)."""

    hidden: int = 64

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(self.hidden)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(10)(nn.relu(x))


def make_chunk(model, tx, topology, X_test, y_test, batch_size: int, length: int):
    """The per-agent training function ``(comm, carry, X_i, y_i) -> (carry, metrics)``."""

    def loss_fn(params, stats, xb, yb):
        logits, new = model.apply({"params": params, "batch_stats": stats}, xb, train=True,
                                  mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, new["batch_stats"]

    def accuracy(params, stats):
        logits = model.apply({"params": params, "batch_stats": stats}, X_test, train=False)
        return jnp.mean(jnp.argmax(logits, -1) == y_test)

    def train_chunk(comm, carry, X_i, y_i):
        def step(carry, _):
            params, stats, opt_state, key, t = carry
            idx = jax.random.choice(jax.random.fold_in(key, t), X_i.shape[0], (batch_size,),
                                    replace=False)
            (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, stats, X_i[idx], y_i[idx])
            updates, opt_state = tx.update(grads, opt_state, params)  # neighbor exchange
            params = optax.apply_updates(params, updates)
            stats = mix_state(comm, topology, stats, t)  # BatchNorm stats: same W
            return (params, stats, opt_state, key, t + 1), loss

        carry, losses = jax.lax.scan(step, carry, None, length=length)
        params, stats = carry[0], carry[1]
        mean_params, mean_stats = comm.allreduce((params, stats))  # the averaged model
        metrics = {"loss": comm.allreduce(losses.mean()),
                   "test_accuracy": accuracy(mean_params, mean_stats),
                   "agent_accuracy_mean": comm.allreduce(accuracy(params, stats))}
        return carry, metrics

    return train_chunk


def setup(args, n: int):
    """Model, optimizer, topology, data shards, test set and the initial per-agent carry."""
    X_tr, y_tr, X_te, y_te = load_digits(seed=args.seed)
    Xs, ys = partition(X_tr, y_tr, n, "iid", seed=args.seed)
    model = Net(args.hidden)
    variables = model.init(jax.random.PRNGKey(args.seed), jnp.zeros((1, X_tr.shape[1])),
                           train=False)  # every agent starts from the same model
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, args.steps,
                                                  end_value=args.lr * 0.05)
    topology = exponential_graph(n)
    return model, schedule, topology, (Xs, ys), (jnp.asarray(X_te), jnp.asarray(y_te)), variables


def run(args) -> dict:
    """Train; return the history and final metrics (identical on every MPI rank)."""
    if args.backend == "mpi":
        import bluefog_dist
        from bluefog_dist import failfast

        failfast.install()  # an exception on one rank ends the job instead of a hang
        comm = bluefog_dist.MpiComm()
        n, rank = comm.size, comm.rank()
    else:
        import bluefog_sim

        comm, n, rank = bluefog_sim.SimComm(args.agents), args.agents, None
    model, schedule, topology, (Xs, ys), (X_te, y_te), variables = setup(args, n)
    tx = optax_decentralized(comm, topology, style=args.style,
                             inner=optax.adamw(schedule, weight_decay=args.weight_decay))
    params, stats = variables["params"], variables["batch_stats"]
    carry0 = (params, stats, tx.init(params))
    chunk = make_chunk(model, tx, topology, X_te, y_te, args.batch_size, args.record_every)
    if args.backend == "mpi":
        carry = carry0 + (agent_key(args.seed, rank), jnp.zeros((), jnp.int32))
        data = (jnp.asarray(Xs[rank]), jnp.asarray(ys[rank]))  # this rank's shard only
        compiled = jax.jit(lambda c, X, y: chunk(comm, c, X, y))
    else:
        import bluefog_sim

        stack = lambda v: jnp.broadcast_to(v, (n,) + jnp.shape(v))  # noqa: E731
        carry = jax.tree_util.tree_map(stack, carry0) + (bluefog_sim.agent_keys(args.seed, n),
                                                         jnp.zeros((n,), jnp.int32))
        data = (jnp.asarray(Xs), jnp.asarray(ys))
        compiled = bluefog_sim.spmd(chunk, n)
    history, start = [], time.perf_counter()
    for _ in range(args.steps // args.record_every):
        carry, metrics = compiled(carry, *data)
        row = {k: float(np.ravel(v)[0]) for k, v in metrics.items()}
        row["step"], row["wall_s"] = len(history) * args.record_every + args.record_every, \
            time.perf_counter() - start
        history.append(row)
        if rank in (None, 0) and not args.quiet:
            print(f"step {row['step']:5d}  loss {row['loss']:.4f}  test acc (averaged model) "
                  f"{100 * row['test_accuracy']:.2f}%  agents {100 * row['agent_accuracy_mean']:.2f}%")
    return {"backend": args.backend, "agents": n, "rank": rank, "history": history,
            "final": history[-1]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", choices=("sim", "mpi"), default="sim")
    p.add_argument("--agents", type=int, default=64, help="simulator only; MPI: world size")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--record-every", type=int, default=100, help="steps per compiled chunk")
    p.add_argument("--lr", type=float, default=3e-3, help="peak of the schedule")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16, help="per agent")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--style", choices=("atc", "awc"), default="atc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file of the history (rank 0 writes it)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.steps < args.record_every or args.steps % args.record_every:
        p.error(f"--steps must be a positive multiple of --record-every={args.record_every}; "
                f"got {args.steps}.")
    if not 0 <= args.warmup < args.steps:
        p.error(f"--warmup must be in [0, --steps={args.steps}); got {args.warmup}.")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = run(args)
    f = result["final"]
    if result["rank"] not in (None, 0):
        return result
    print(f"own_loop {args.backend} n={result['agents']}: test accuracy "
          f"{100 * f['test_accuracy']:.2f}% (averaged model), agents "
          f"{100 * f['agent_accuracy_mean']:.2f}% mean, loss {f['loss']:.4f}, "
          f"{f['wall_s']:.1f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh)
    return result


if __name__ == "__main__":
    main()
