"""Where ``bluefog-train``'s checkpoints go: one file in the simulator, one shard per MPI rank.

In the simulator all agents live in one process and a checkpoint is one ``ckpt-<step>.npz``
(:mod:`bluefog_train.checkpoint`). Under MPI no state travels to rank 0: every rank writes
its own shard and rank 0 commits the manifest once all shards are on disk
(:mod:`bluefog_train.sharded`). Restoring takes the newest checkpoint that passes every
check on **every** rank: each rank verifies the manifest, the presence of every shard and
the hash of its own shard, the ranks exchange their verdicts (one ``allgather`` per
candidate, so they all take the same one), and a checkpoint refused by any rank is skipped
with the reasons (naming the files). The simulator reads both kinds (a sharded checkpoint
is stacked), so an MPI run can be continued in the simulator; under MPI a single-file
checkpoint is read whole by every rank, which keeps its own row.

The checkpoint directory must be visible to every rank under the same path (one machine,
or a shared file system).
"""

from __future__ import annotations

import os

import numpy as np

from . import checkpoint as ckpt
from . import sharded
from ._manifest import CheckpointError

__all__ = ["save", "remove", "complete_checkpoints", "candidates", "restore", "step_of",
           "agents_in", "row", "is_leftover"]


def step_of(path) -> int:
    """The step of a checkpoint of either kind, from its name."""
    return sharded.step_of(path) if os.path.isdir(path) else ckpt.step_of(path)


def remove(path) -> None:
    """Delete a checkpoint of either kind (:func:`bluefog_train.checkpoint.remove`,
    :func:`bluefog_train.sharded.remove`)."""
    if os.path.isdir(path):
        sharded.remove(path)
    else:
        ckpt.remove(path)


def candidates(directory) -> list[tuple[int, str]]:
    """Every checkpoint of either kind in ``directory`` (complete or not), newest first."""
    return sorted(ckpt.list_checkpoints(directory) + sharded.list_sharded(directory), reverse=True)


def is_leftover(path) -> bool:
    """Whether ``path`` is a sharded checkpoint directory without manifest: a write that a
    crash interrupted, never committed, replaced by the next writer of its step."""
    return os.path.isdir(path) and not os.path.lexists(os.path.join(path, sharded.MANIFEST))


def complete_checkpoints(directory) -> list[tuple[int, str]]:
    """Single-file checkpoints and sharded ones with a manifest, newest first (names only)."""
    return sorted(ckpt.list_checkpoints(directory)
                  + sharded.list_sharded(directory, complete_only=True), reverse=True)


def _finite(tree) -> bool:
    import jax

    return all(np.isfinite(a).all() for a in jax.tree_util.tree_leaves(tree)
               if np.issubdtype(np.asarray(a).dtype, np.inexact))


def save(backend, directory, state, *, step: int, metadata: dict, replace: bool):
    """Write the checkpoint of ``step``; return ``(path, finite)`` on every rank.

    Simulator: ``state`` is stacked; one file. MPI: ``state`` is this rank's; every rank
    writes its shard, the outcomes are exchanged (one ``allgather``), then rank 0 writes
    the manifest. A rank whose shard failed raises its error (the engine's callback
    agreement then raises on every rank, naming it); the others return ``(None, False)``
    and nothing is committed.
    """
    if backend.name != "mpi":
        return ckpt.save(directory, state, step=step, metadata=metadata, replace=replace), \
            _finite(state)
    error = None
    try:
        mine = sharded.save_shard(directory, step, backend.rank, backend.size, state,
                                  replace=replace)
    except Exception as err:  # noqa: BLE001 - re-raised below, after the others know
        mine, error = None, err
    every = backend.allgather(mine)
    if error is not None:
        raise error  # the engine's callback agreement tells every rank, naming this one
    if any(e is None for e in every):  # another rank failed: nothing is committed
        return None, False
    if backend.rank == 0:
        sharded.write_manifest(directory, step, every, metadata)
    return sharded.step_dir(directory, step), all(e["finite"] for e in every)


def agents_in(path) -> int:
    """The number of agents a checkpoint of either kind holds (shards, or the leading axis of
    a single file's leaves), after checking its manifest."""
    if os.path.isdir(path):
        return int(sharded.read_manifest(path)["size"])
    return ckpt.agent_count(path, directory=os.path.dirname(path))


def _load_all_agents(path, stacked_template, n: int):
    """Every agent's state of ``path`` (``n`` agents), stacked, on this process."""
    import jax

    template = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct((n,) + tuple(a.shape[1:]), a.dtype), stacked_template)
    if os.path.isdir(path):
        state, manifest = sharded.load_stacked(path, template)
    else:
        state, manifest = ckpt.load(path, template, directory=os.path.dirname(path))
    return state, {**manifest, "agents": n}


def _load_here(path, backend, stacked_template, local_template, check, resize=False):
    """``(state, manifest)`` of ``path`` for this process (stacked in the simulator)."""
    if resize:
        import jax

        n = agents_in(path)
        if n != int(jax.tree_util.tree_leaves(stacked_template)[0].shape[0]):
            state, manifest = _load_all_agents(path, stacked_template, n)
            if check is not None:
                check(manifest, state)
            return state, manifest
    if os.path.isdir(path):
        if backend.name != "mpi":
            state, manifest = sharded.load_stacked(path, stacked_template)
        else:
            body = sharded.read_manifest(path)
            if body["size"] != backend.size:
                raise CheckpointError(f"{path}: has {body['size']} shards but the job has "
                                      f"{backend.size} ranks; resume on {body['size']} ranks, "
                                      "or with --elastic (bfrun --elastic) to redistribute it.")
            state, manifest = sharded.load_shard(path, local_template, backend.rank, body)
    else:
        state, manifest = ckpt.load(path, stacked_template, directory=os.path.dirname(path))
        if backend.name == "mpi":
            state = row(state, backend.rank)
    if check is not None:
        check(manifest, state)
    return state, manifest


def row(tree, r: int):
    """Agent ``r``'s state of a stacked state (NumPy leaves)."""
    import jax

    return jax.tree_util.tree_map(lambda a: np.asarray(a)[r], tree)


def restore(backend, directory, stacked_template, *, check=None, resize=False):
    """The newest checkpoint that every rank can use: ``(path, state, manifest, skipped)``.

    Parameters
    ----------
    backend : SimBackend or MpiBackend
    directory : path
    stacked_template : pytree
        The stacked ``(n, ...)`` state structure (``jax.ShapeDtypeStruct`` leaves).
    check : callable ``(manifest, state) -> None``, optional
        Raises :class:`CheckpointError` to refuse a checkpoint.
    resize : bool
        Also take a checkpoint of another number of agents: then ``state`` holds *all* its
        agents' states, stacked, on every process (every shard verified), and ``manifest``
        has ``"agents"``, their number; :func:`bluefog_train.elastic.reshard_state` maps them
        onto this run's agents.

    Returns
    -------
    path : str or None
    state : this process's state (stacked in the simulator, this rank's under MPI) or None
    manifest : dict with ``"step"`` and ``"metadata"``, or None
    skipped : list of (path, reason), newest first; identical on every rank
    """
    import jax

    local = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(tuple(a.shape[1:]), a.dtype), stacked_template)
    found = candidates(directory)
    if backend.name == "mpi":
        found = backend.bcast(found)  # rank 0's listing: every rank tries the same ones
    skipped = []
    for _, path in found:
        error, state, manifest = None, None, None
        try:
            state, manifest = _load_here(path, backend, stacked_template, local, check, resize)
        except CheckpointError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - any failure here refuses this checkpoint
            error = f"{path}: unreadable ({type(err).__name__}: {err})"
        verdicts = backend.allgather(error)
        reasons = list(dict.fromkeys(e for e in verdicts if e))
        if reasons:
            skipped.append((path, "; ".join(reasons)))
            continue
        return path, state, manifest, skipped
    return None, None, None, skipped
