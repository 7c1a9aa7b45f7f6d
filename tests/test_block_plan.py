"""The hybrid backend's round plan (bluefog_dist.block_plan), executed in NumPy for every
rank at once.

Oracle: the round itself, ``received[i] = X[sources[i]]``; the plans of all ranks are run
as the messages they describe (each rank sends ``block[send_rows]`` to ``dest``, receives
from ``source``) and must reproduce it, with matched message sizes and every rank taking
part in every rank-level step.
"""

import numpy as np
import pytest

from bluefog.topology import erdos_renyi_graph, exponential_graph, ring_graph
from bluefog_dist.block_plan import plan_round


def execute_plans(sources, ranks, k):
    n = ranks * k
    X = np.arange(n, dtype=float) * 10 + 0.5
    plans = [plan_round(sources, q, k) for q in range(ranks)]
    for p in plans:  # each rank executes its messages in the order of the rank-level steps
        assert [m.step for m in p.messages] == sorted({m.step for m in p.messages})
    inbox = [[] for _ in range(ranks)]
    steps = {m.step for p in plans for m in p.messages}
    for step in sorted(steps):
        sent = {}
        for q, p in enumerate(plans):
            for msg in (m for m in p.messages if m.step == step):
                block = X[q * k:(q + 1) * k]
                sent[(q, msg.dest)] = block[msg.send_rows] if msg.send_rows.size else block[:1]
        for q, p in enumerate(plans):
            for msg in (m for m in p.messages if m.step == step):
                got = sent.pop((msg.source, q))  # the peer sends to me in this very step
                assert len(got) == max(1, msg.recv_rows), "message sizes do not match"
                inbox[q].append(got)
        assert not sent, f"messages nobody received in step {step}: {list(sent)}"
    out = []
    for q, p in enumerate(plans):
        ext = np.concatenate([X[q * k:(q + 1) * k]] + inbox[q])
        out.append(ext[p.lookup])
    return np.concatenate(out), X, plans


@pytest.mark.parametrize("ranks,k", [(4, 16), (3, 5), (8, 2), (1, 7)])
def test_circulant_rounds_are_reproduced_with_at_most_two_peers(ranks, k):
    n = ranks * k
    for rnd in exponential_graph(n).schedule.rounds:
        got, X, plans = execute_plans(rnd.sources, ranks, k)
        np.testing.assert_array_equal(got, X[rnd.sources])
        assert all(len(p.messages) <= 2 for p in plans), [len(p.messages) for p in plans]
        # contiguous blocks: rows whose source is in the same block never travel
        for q, p in enumerate(plans):
            sent = sum(m.recv_rows for m in p.messages)
            crossing = int(np.sum(rnd.sources[q * k:(q + 1) * k] // k != q))
            assert sent == crossing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_permutations_and_non_circulant_graphs(seed):
    rng = np.random.default_rng(seed)
    ranks, k = 4, 6
    rounds = [rng.permutation(ranks * k) for _ in range(3)]
    rounds += [r.sources for r in erdos_renyi_graph(ranks * k, 0.35, seed=seed).schedule.rounds]
    for sources in rounds:
        got, X, _ = execute_plans(sources, ranks, k)
        np.testing.assert_array_equal(got, X[sources])


def test_identity_round_is_local():
    plan = plan_round(np.arange(12), 1, 4)
    assert plan.local_only and plan.messages == ()
    np.testing.assert_array_equal(plan.lookup, np.arange(4))
    ring = ring_graph(12).schedule.rounds[0]
    assert not plan_round(ring.sources, 1, 4).local_only
