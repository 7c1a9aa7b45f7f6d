"""``bfrun`` inside a Slurm allocation: hosts and rank count from Slurm's variables.

Inside ``salloc``/``sbatch``, ``bfrun python train.py`` (no ``-np``, no ``-H``) launches
``SLURM_NTASKS`` ranks on the allocation's nodes, ``SLURM_TASKS_PER_NODE`` slots each::

    SLURM_JOB_NODELIST=node[01-02],gpu7  SLURM_TASKS_PER_NODE=4(x2),2  SLURM_NTASKS=10
    -> bfrun -np 10 -H node01:4,node02:4,gpu7:2 ...

The node list is expanded here, in Python, with the grammar of ``scontrol show hostnames``
(comma-separated names; ``prefix[a-b,c]suffix`` ranges, zero padding kept, several bracket
groups per name), so the launcher needs no Slurm tools. An explicit ``-np``, ``-H`` or
``--hostfile`` wins over the allocation. ``bfrun --dry-run`` prints the resulting
``mpiexec`` command. (Alternatively launch with ``srun --mpi=pmi2 python train.py`` where the
MPI library was built with Slurm's PMI.)

Reference: Slurm's ``scontrol(1)`` ("show hostnames") and ``sbatch(1)`` (OUTPUT ENVIRONMENT
VARIABLES: ``SLURM_JOB_NODELIST``, ``SLURM_TASKS_PER_NODE``, ``SLURM_NTASKS``).
"""

from __future__ import annotations

import os
import re

__all__ = ["expand_hostlist", "tasks_per_node", "allocation", "fill_from_allocation"]


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _expand_one(name: str) -> list[str]:
    m = re.search(r"\[([^\]]*)\]", name)
    if m is None:
        return [name]
    head, tail = name[:m.start()], name[m.end():]
    out = []
    for item in m.group(1).split(","):
        lo, _, hi = item.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise ValueError(f"Slurm host list: bad range {item!r} in {name!r}; expected e.g. "
                             "node[01-04,07].")
        width = len(lo)
        for k in range(int(lo), int(hi or lo) + 1):
            out += [head + str(k).zfill(width) + rest for rest in _expand_one(tail)]
    return out


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm host list (``SLURM_JOB_NODELIST``) like ``scontrol show hostnames``.

    Examples
    --------
    >>> expand_hostlist("node[01-03,07],gpu5")
    ['node01', 'node02', 'node03', 'node07', 'gpu5']
    >>> expand_hostlist("r[1-2]n[1-2]")
    ['r1n1', 'r1n2', 'r2n1', 'r2n2']
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"Slurm host list must be a non-empty string; got {text!r}.")
    if text.count("[") != text.count("]"):
        raise ValueError(f"Slurm host list {text!r} has unbalanced brackets.")
    return [h for part in _split_top(text.strip()) if part for h in _expand_one(part)]


def tasks_per_node(text: str, nodes: int) -> list[int]:
    """Expand ``SLURM_TASKS_PER_NODE`` (``"4(x2),2"`` -> ``[4, 4, 2]``) to ``nodes`` counts."""
    counts = []
    for item in text.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if m is None:
            raise ValueError(f"SLURM_TASKS_PER_NODE={text!r}: cannot read {item!r}; expected "
                             "e.g. 4(x2),2.")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    if len(counts) != nodes:
        raise ValueError(f"SLURM_TASKS_PER_NODE={text!r} describes {len(counts)} nodes but the "
                         f"node list has {nodes}.")
    return counts


def allocation(env=None) -> tuple[int, str] | None:
    """``(ranks, "host:slots,...")`` of the Slurm allocation, or ``None`` outside one.

    Ranks: ``SLURM_NTASKS`` (default: the sum of the slots). Slots per host:
    ``SLURM_TASKS_PER_NODE`` (default 1 each).
    """
    env = os.environ if env is None else env
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        return None
    hosts = expand_hostlist(nodelist)
    per_node = env.get("SLURM_TASKS_PER_NODE")
    slots = tasks_per_node(per_node, len(hosts)) if per_node else [1] * len(hosts)
    ntasks = env.get("SLURM_NTASKS", "").strip()
    ranks = int(ntasks) if ntasks.isdigit() else sum(slots)
    return ranks, ",".join(f"{h}:{s}" for h, s in zip(hosts, slots))


def fill_from_allocation(args, env=None):
    """Give ``bfrun``'s parsed ``args`` the allocation's hosts (and rank count when ``-np``
    is missing), unless ``-H``/``--hostfile`` was given; returns ``args``."""
    if getattr(args, "hosts", None) or getattr(args, "hostfile", None):
        return args
    found = allocation(env)
    if found is not None:
        ranks, hosts = found
        args.np = ranks if args.np is None else args.np
        args.hosts = hosts
    return args
