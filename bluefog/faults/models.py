r"""The fault models: what can fail, and when. Each is a small immutable, validated spec.

A message is identified by the step ``t`` (the step counter an algorithm passes to
``neighbor_allreduce``), its sender ``j`` and its receiver ``i``; a model says whether the
message ``j -> i`` of step ``t`` is lost. All messages on one link in one step share that
fate (an algorithm that mixes twice per step loses the same links twice). Combine models with
:class:`bluefog.faults.Faults`; a message is lost when any model loses it.

=====================  =====================================================================
model                  the message ``j -> i`` at step ``t`` is lost when
=====================  =====================================================================
``MessageLoss(p)``     :math:`h(\text{seed}, t, i, j) < p\,2^{32}` (i.i.d. Bernoulli(p))
``BurstyLoss(...)``    the link's block :math:`\lfloor (t + \phi_{ij}) / L \rfloor` is *bad*
                       (probability ``bad``) and a draw falls below ``loss_bad``, or the block
                       is *good* and a draw falls below ``loss_good``
``LinkOutage(...)``    ``(j, i)`` (or ``(i, j)`` unless ``directed``) is listed and
                       ``start <= t < end``
``Partition(...)``     ``start <= t < end`` and ``i``, ``j`` are in different groups
``NodeCrash(...)``     ``i`` or ``j`` is down: ``at <= t < rejoin``
=====================  =====================================================================

``BurstyLoss`` is a deterministic, stateless equivalent of the two-state Gilbert-Elliott
channel: the channel state is constant over blocks of ``L`` steps (one random phase
:math:`\phi_{ij} \in [0, L)` per link, so bursts of different links do not align) and i.i.d.
across blocks, instead of a Markov chain with geometric sojourns; the stationary loss rate is
the same, :math:`\pi_B\, \ell_B + (1 - \pi_B)\, \ell_G`, and losses come in bursts of about
:math:`L\,\ell_B` consecutive steps. Being a pure function of ``(seed, t, i, j)`` it needs no
state and runs identically in both backends.

References
----------
E. N. Gilbert, "Capacity of a burst-noise channel", Bell Syst. Tech. J. 39 (1960);
E. O. Elliott, "Estimates of error rates for codes on burst-noise channels", Bell Syst.
Tech. J. 42 (1963).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import (check_choice, check_nonnegative_int, check_positive_int, check_real,
                          check_seed)

__all__ = ["MessageLoss", "BurstyLoss", "LinkOutage", "Partition", "NodeCrash", "CRASH_STATES"]

#: What a crashed agent's state does while it is down.
CRASH_STATES = ("freeze", "reset")


def _window(start, end, where: str) -> tuple[int, int]:
    start = check_nonnegative_int(start, "start", where=where)
    end = check_positive_int(end, "end", where=where)
    if end <= start:
        raise ValueError(f"{where}: the window must satisfy start < end; got start={start}, "
                         f"end={end}. Pass e.g. start={start}, end={start + 10}.")
    return start, end


def _pair(pair, where: str) -> tuple[int, int]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{where}: every link must be a pair (sender, receiver) of agent "
                        f"indices; got {pair!r}. Pass e.g. links=[(0, 1), (2, 3)].")
    j = check_nonnegative_int(pair[0], "sender", where=where)
    i = check_nonnegative_int(pair[1], "receiver", where=where)
    if i == j:
        raise ValueError(f"{where}: a link joins two different agents; got ({j}, {i}).")
    return j, i


@dataclass(frozen=True)
class MessageLoss:
    """Every message is lost independently with probability ``p`` (i.i.d. Bernoulli).

    Parameters
    ----------
    p : float in [0, 1)
    seed : int in [0, 2**32 - 1]
    """

    p: float
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "p", check_real(self.p, "p", low=0.0, high=1.0, high_open=True,
                                                 where="MessageLoss", example="p=0.1"))
        object.__setattr__(self, "seed", check_seed(self.seed, where="MessageLoss"))


@dataclass(frozen=True)
class BurstyLoss:
    """Bursty loss: a block-constant Gilbert-Elliott channel per link (module docstring).

    Parameters
    ----------
    bad : float in [0, 1)
        Probability that a block of ``burst`` steps is in the bad state.
    burst : int >= 1
        Block length ``L`` in steps.
    loss_bad, loss_good : float in [0, 1]
        Loss probability in the bad / good state (default 1 and 0: Gilbert's channel).
    seed : int
    """

    bad: float
    burst: int
    loss_bad: float = 1.0
    loss_good: float = 0.0
    seed: int = 0

    def __post_init__(self):
        w = "BurstyLoss"
        object.__setattr__(self, "bad", check_real(self.bad, "bad", low=0.0, high=1.0,
                                                   high_open=True, where=w, example="bad=0.1"))
        object.__setattr__(self, "burst", check_positive_int(self.burst, "burst", where=w))
        for name in ("loss_bad", "loss_good"):
            object.__setattr__(self, name, check_real(getattr(self, name), name, low=0.0,
                                                      high=1.0, where=w))
        object.__setattr__(self, "seed", check_seed(self.seed, where=w))

    @property
    def rate(self) -> float:
        """Stationary loss probability :math:`\\pi_B \\ell_B + (1 - \\pi_B) \\ell_G`."""
        return self.bad * self.loss_bad + (1.0 - self.bad) * self.loss_good


@dataclass(frozen=True)
class LinkOutage:
    """The listed links carry nothing during steps ``start <= t < end``.

    Parameters
    ----------
    links : sequence of (sender, receiver) pairs
    start, end : int, ``0 <= start < end``
    directed : bool
        False (default): the outage cuts both directions of every listed pair.
    """

    links: tuple
    start: int
    end: int
    directed: bool = False

    def __post_init__(self):
        w = "LinkOutage"
        if isinstance(self.links, (str, bytes)) or not hasattr(self.links, "__iter__"):
            raise TypeError(f"{w}: links must be a sequence of (sender, receiver) pairs; got "
                            f"{self.links!r}. Pass e.g. links=[(0, 1)].")
        links = tuple(_pair(p, w) for p in self.links)
        if not links:
            raise ValueError(f"{w}: links must list at least one (sender, receiver) pair; got "
                             "none.")
        object.__setattr__(self, "links", links)
        start, end = _window(self.start, self.end, w)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        if not isinstance(self.directed, bool):
            raise TypeError(f"{w}: directed must be True or False; got {self.directed!r}.")


@dataclass(frozen=True)
class Partition:
    """The network splits into ``groups`` during ``start <= t < end``, then heals.

    Messages between agents of different groups are lost; agents not listed form one more
    group together.

    Parameters
    ----------
    groups : sequence of sequences of agent indices (disjoint)
    start, end : int, ``0 <= start < end``
    """

    groups: tuple
    start: int
    end: int

    def __post_init__(self):
        w = "Partition"
        if isinstance(self.groups, (str, bytes)) or not hasattr(self.groups, "__iter__"):
            raise TypeError(f"{w}: groups must be a sequence of agent lists; got "
                            f"{self.groups!r}. Pass e.g. groups=[[0, 1], [2, 3]].")
        groups = tuple(tuple(check_nonnegative_int(a, "agent", where=w) for a in g)
                       for g in self.groups)
        flat = [a for g in groups for a in g]
        if not groups or any(not g for g in groups):
            raise ValueError(f"{w}: groups must be non-empty lists of agents; got {groups}.")
        if len(set(flat)) != len(flat):
            raise ValueError(f"{w}: groups must be disjoint; got {groups} (an agent appears "
                             "twice).")
        object.__setattr__(self, "groups", groups)
        start, end = _window(self.start, self.end, w)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)


@dataclass(frozen=True)
class NodeCrash:
    """Agent ``agent`` is down from step ``at`` (permanently, or until step ``rejoin``).

    While down it sends and receives nothing (all its links are lost) and its state is
    frozen (the step counter still advances, so it rejoins in step with the others). At
    ``rejoin`` it takes part again with its frozen state (``state="freeze"``) or with its
    initial state (``state="reset"``, the state ``algorithm.init`` gave it).

    Parameters
    ----------
    agent : int
    at : int >= 0
    rejoin : int > at, or None (permanent)
    state : {"freeze", "reset"}
    """

    agent: int
    at: int
    rejoin: int | None = None
    state: str = "freeze"

    def __post_init__(self):
        w = "NodeCrash"
        object.__setattr__(self, "agent", check_nonnegative_int(self.agent, "agent", where=w))
        if self.rejoin is None:
            object.__setattr__(self, "at", check_nonnegative_int(self.at, "at", where=w))
        else:
            at, rejoin = _window(self.at, self.rejoin, w)
            object.__setattr__(self, "at", at)
            object.__setattr__(self, "rejoin", rejoin)
        check_choice(self.state, "state", CRASH_STATES, where=w)
        if self.state == "reset" and self.rejoin is None:
            raise ValueError(f"{w}: state='reset' needs a rejoin step (a permanently crashed "
                             "agent never uses its state again); pass rejoin=... or "
                             "state='freeze'.")
