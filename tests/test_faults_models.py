"""Fault models: the counter hash, the masks and the validation of every input.

Oracles: a plain-Python (arbitrary-precision int) implementation of the lowbias32 chain;
binomial bounds for i.i.d. loss; the window/partition definitions written directly from the
model parameters; NumPy evaluation vs traced JAX evaluation of the same masks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog.faults import (BurstyLoss, Faults, LinkOutage, MessageLoss, NodeCrash, Partition,
                            draw, threshold)
from bluefog_sim import SimComm

M32 = 0xFFFFFFFF


def _py_mix(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def _py_draw(seed, salt, *counters):
    h = _py_mix((seed ^ salt) & M32)
    for c in counters:
        h = _py_mix((h + c * 0x9E3779B9) & M32)
    return h


def test_hash_matches_python_ints_in_numpy_and_traced_jax():
    t, i, j = np.meshgrid(np.arange(0, 3000, 97), np.arange(9), np.arange(0, 60, 7), indexing="ij")
    ref = np.vectorize(lambda a, b, c: _py_draw(12345, 0xBEEF, a, b, c))(t, i, j)
    assert (draw(12345, 0xBEEF, t, i, j) == ref).all()
    traced = jax.jit(lambda a, b, c: draw(12345, 0xBEEF, a, b, c, xp=jnp))(t, i, j)
    assert (np.asarray(traced) == ref).all()
    assert threshold(0.0) == 0 and threshold(0.5) == 2**31


def _lost_table(f, steps, n, xp=np):
    t = np.arange(steps)[:, None, None]
    i, j = np.arange(n)[None, :, None], np.arange(n)[None, None, :]
    if xp is np and all(isinstance(m, (MessageLoss, BurstyLoss)) for m in f.models):
        return np.asarray(f.lost(t, i, j))  # the hash broadcasts over arrays
    if xp is np:
        return np.vectorize(lambda a, b, c: bool(f.lost(a, b, c)))(t, i, j)
    fn = lambda a, b, c: f.lost(a, b, c, xp=jnp)  # noqa: E731
    fn = jax.vmap(jax.vmap(jax.vmap(fn, (None, None, 0)), (None, 0, None)), (0, None, None))
    return np.asarray(jax.jit(fn)(jnp.arange(steps), jnp.arange(n), jnp.arange(n)))


def test_iid_loss_rate_and_independence_within_binomial_bounds():
    p, steps, n = 0.1, 400, 16
    L = _lost_table(Faults(MessageLoss(p, seed=3)).check_size(n), steps, n)
    N = L.size
    assert abs(L.mean() - p) < 4 * np.sqrt(p * (1 - p) / N)  # 4 sigma
    # consecutive steps on one link are independent: P(lost at t and t+1) ~ p^2
    both = (L[1:] & L[:-1]).mean()
    assert abs(both - p * p) < 4 * np.sqrt(p * p / N)
    assert (_lost_table(Faults(MessageLoss(p, seed=3)).check_size(n), 50, n, jnp) == L[:50]).all()
    assert not (L[:50] == _lost_table(Faults(MessageLoss(p, seed=4)).check_size(n), 50, n)).all()


def test_bursty_loss_has_the_stationary_rate_and_long_runs():
    m = BurstyLoss(bad=0.1, burst=8, seed=1)
    steps, n = 800, 8
    L = _lost_table(Faults(m).check_size(n), steps, n)
    off = ~np.eye(n, dtype=bool)
    runs = []
    for i, j in zip(*np.nonzero(off)):
        seq = np.concatenate([[0], L[:, i, j].astype(int), [0]])
        d = np.diff(seq)
        runs += list(np.flatnonzero(d == -1) - np.flatnonzero(d == 1))
    assert abs(L[:, off].mean() - m.rate) < 0.03  # 56 links x 100 blocks of i.i.d. states
    assert np.mean(runs) >= 8  # whole blocks are lost: bursts, not isolated losses
    assert (_lost_table(Faults(m).check_size(n), 64, n, jnp) == L[:64]).all()


def test_windows_partitions_and_crashes_follow_their_definitions():
    n, steps = 6, 30
    f = Faults(LinkOutage([(0, 1)], 3, 7), LinkOutage([(2, 3)], 5, 9, directed=True),
               Partition([[0, 1, 2]], 10, 14), NodeCrash(5, at=20, rejoin=25)).check_size(n)
    L = _lost_table(f, steps, n)
    ref = np.zeros_like(L)
    ref[3:7, 1, 0] = ref[3:7, 0, 1] = True
    ref[5:9, 3, 2] = True  # directed: 2 -> 3 only
    side = np.array([1, 1, 1, 0, 0, 0])
    ref[10:14] |= side[:, None] != side[None, :]
    ref[20:25, 5, :] = ref[20:25, :, 5] = True
    assert (L == ref).all()
    assert (_lost_table(f, steps, n, jnp) == ref).all()
    assert [bool(f.down(t, 5)) for t in (19, 20, 24, 25)] == [False, True, True, False]


@pytest.mark.parametrize("make, exc, text", [
    (lambda: MessageLoss(1.0), ValueError, "p must be a finite real number in [0, 1)"),
    (lambda: MessageLoss(-0.1), ValueError, "[0, 1)"),
    (lambda: MessageLoss("0.1"), TypeError, "p must be a finite real number"),
    (lambda: MessageLoss(0.1, seed=-1), ValueError, "seed"),
    (lambda: BurstyLoss(0.1, 0), ValueError, "burst must be an integer >= 1"),
    (lambda: LinkOutage([(0, 1)], 5, 5), ValueError, "start < end"),
    (lambda: LinkOutage([(0, 0)], 0, 5), ValueError, "two different agents"),
    (lambda: LinkOutage([0, 1], 0, 5), TypeError, "pair (sender, receiver)"),
    (lambda: LinkOutage([], 0, 5), ValueError, "at least one"),
    (lambda: Partition([[0, 1], [1, 2]], 0, 5), ValueError, "disjoint"),
    (lambda: NodeCrash(1, at=5, rejoin=3), ValueError, "start < end"),
    (lambda: NodeCrash(1, at=5, state="reset"), ValueError, "needs a rejoin step"),
    (lambda: NodeCrash(1, at=5, state="zero"), ValueError, "'freeze', 'reset'"),
    (lambda: Faults(MessageLoss(0.1), rule="drop"), ValueError, "rule must be one of"),
    (lambda: Faults(0.1), TypeError, "every model must be one of"),
    (lambda: SimComm(8, faults=Faults(NodeCrash(8, at=1))), ValueError, "names agent 8"),
    (lambda: SimComm(8, faults=Partition([[0]], 0, 1)), TypeError, "bluefog.faults.Faults"),
])
def test_bad_inputs_are_refused_with_the_fix(make, exc, text):
    with pytest.raises(exc) as info:
        make()
    assert text in str(info.value)


def test_one_faults_object_serves_runs_of_different_sizes():
    f = Faults(Partition([[0, 1]], 0, 5))
    small, big = f.check_size(4), f.check_size(8)
    assert bool(small.lost(1, 3, 0)) and bool(big.lost(1, 7, 0)) and not bool(big.lost(1, 7, 6))
    assert not bool(small.lost(5, 3, 0))  # healed
    with pytest.raises(ValueError, match=r"use faults.check_size\(n\)"):
        f.lost(1, 3, 0)
    with pytest.raises(ValueError, match="names agent 4"):
        Faults(NodeCrash(4, at=0)).check_size(4)


def test_bound_tables_give_the_other_models_masks_in_one_traced_function():
    """bind: a function traced once for one model evaluates another model of the same
    structure exactly as that model's own NumPy evaluation (the oracle, itself checked
    against the definitions above)."""
    n, steps = 6, 40

    def model(seed, p, start, crash_at, group):
        return Faults(MessageLoss(p, seed=seed), BurstyLoss(0.2, 4, loss_good=0.05, seed=seed),
                      LinkOutage([(0, 1)], start, start + 5), Partition([group], 3, 9),
                      NodeCrash(4, at=crash_at, rejoin=crash_at + 6, state="reset")).check_size(n)

    first, second = model(1, 0.1, 2, 10, [0, 1]), model(987654321, 0.35, 11, 20, [2, 3, 5])
    assert first.structure == second.structure

    def masks(params):
        f = first.bind(params)
        per = lambda t, i, j: f.lost(t, i, j, xp=jnp)  # noqa: E731
        lost = jax.vmap(jax.vmap(jax.vmap(per, (None, None, 0)), (None, 0, None)),
                        (0, None, None))
        t = jnp.arange(steps)
        return (lost(t, jnp.arange(n), jnp.arange(n)), jax.vmap(lambda s: f.down(s, 4, jnp))(t),
                jax.vmap(lambda s: f.reset_now(s, 4, jnp))(t))

    traced = jax.jit(masks)
    for f in (first, second):
        lost, down, reset = (np.asarray(a) for a in traced(f.params()))
        assert (lost == _lost_table(f, steps, n)).all()
        assert (down == [bool(f.down(t, 4)) for t in range(steps)]).all()
        assert (reset == [bool(f.reset_now(t, 4)) for t in range(steps)]).all()
    assert traced._cache_size() == 1  # one trace served both models
    assert (np.asarray(traced(first.params())[0])
            != np.asarray(traced(second.params())[0])).any()


def test_bind_and_params_refuse_what_does_not_fit():
    f = Faults(MessageLoss(0.1))
    with pytest.raises(ValueError, match=r"table 'iid' must have shape \(1, 2\) and dtype uint32; "
                                         r"got shape \(2, 2\)"):
        f.bind(Faults(MessageLoss(0.1), MessageLoss(0.2)).params())
    with pytest.raises(TypeError, match=r"Faults.bind: params must be a dict with the tables"):
        f.bind([1, 2])
    with pytest.raises(ValueError, match=r"a Partition needs the number of agents; use "
                                         r"faults.check_size\(n\).params\(\)"):
        Faults(Partition([[0, 1]], 0, 5)).params()
