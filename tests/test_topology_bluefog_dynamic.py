"""Dynamic topologies against transcriptions of Bluefog's generators.

Oracles: line-by-line transcriptions of Bluefog's ``bluefog/common/topology_util.py``
(``ExponentialGraph``, ``GetDynamicOnePeerSendRecvRanks``, ``GetExp2DynamicSendRecvMachineRanks``,
``GetInnerOuterRingDynamicSendRecvRanks``, ``GetInnerOuterExpo2DynamicSendRecvRanks``) run on
``networkx`` graphs built here, and Bluefog's weights ``1 / (len(recv_ranks) + 1)``.
"""

import math

import networkx as nx
import numpy as np
import pytest

from bluefog.topology import (
    dynamic_one_peer_graph,
    erdos_renyi_graph,
    exponential_graph,
    grid_2d_graph,
    inner_outer_exponential_graph,
    inner_outer_ring_graph,
    one_peer_exponential_graph,
    random_regular_graph,
    ring_graph,
    star_graph,
)
from bluefog.topology.hierarchical import lift_machine_topology


# ------------------------------------------------------------ transcriptions of Bluefog
def bf_exponential_graph(size, base=2):
    """Bluefog's ``ExponentialGraph`` (exact integer powers instead of ``isPowerOf``)."""
    powers = {base ** k for k in range(64)}
    x = np.array([1.0] + [1.0 if i in powers else 0.0 for i in range(1, size)])
    x /= x.sum()
    topo = np.empty((size, size))
    for i in range(size):
        topo[i] = np.roll(x, i)
    return nx.from_numpy_array(topo, create_using=nx.DiGraph)


def bf_one_peer(topo, self_rank):
    """Bluefog's ``GetDynamicOnePeerSendRecvRanks``."""
    size = topo.number_of_nodes()
    sorted_send_ranks = []
    for rank in range(size):
        sorted_ranks = sorted(topo.successors(rank),
                              key=lambda r, rk=rank: r - rk if r >= rk else r - rk + size)
        if sorted_ranks[0] == rank:
            sorted_ranks = sorted_ranks[1:]
        sorted_send_ranks.append(sorted_ranks)
    self_degree = topo.out_degree(self_rank) - 1
    index = 0
    while True:
        send_rank = sorted_send_ranks[self_rank][index % self_degree]
        recv_ranks = []
        for other_rank in range(size):
            if other_rank == self_rank:
                continue
            degree = topo.out_degree(other_rank) - 1
            if sorted_send_ranks[other_rank][index % degree] == self_rank:
                recv_ranks.append(other_rank)
        yield [send_rank], recv_ranks
        index += 1


def bf_exp2_machine(world_size, local_size, self_rank, local_rank):
    """Bluefog's ``GetExp2DynamicSendRecvMachineRanks``."""
    machine_id = self_rank // local_size
    machine_size = world_size // local_size
    exp_2_size = int(np.log2(machine_size - 1)) if machine_size > 1 else 0
    index = 0
    while True:
        machine_dist = 2 ** (index % (exp_2_size + 1))
        yield [(machine_id + machine_dist) % machine_size], [(machine_id - machine_dist) % machine_size]
        index += 1


def as_bluefog_digraph(topology):
    """Bluefog's matrix convention: ``M[i, j]`` is the weight of the edge i -> j = our ``W[j, i]``."""
    return nx.from_numpy_array(np.asarray(topology.weights).T, create_using=nx.DiGraph)


def check_against_generators(dyn, gens, steps):
    """Pattern ``t`` has the send/recv ranks and Bluefog's weights of every agent's t-th next()."""
    for t in range(steps):
        pattern = dyn.at(t)
        W = pattern.weights
        for i, gen in enumerate(gens):
            send, recv = next(gen)
            assert pattern.out_neighbors(i) == sorted(send), (t, i)
            assert pattern.in_neighbors(i) == sorted(recv), (t, i)
            w = 1.0 / (len(recv) + 1)
            assert W[i, i] == w and all(W[i, j] == w for j in recv), (t, i)
        assert np.allclose(W.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def slem(M):
    """Second largest eigenvalue modulus: the product mixes (rank-one limit) iff < 1."""
    return sorted(np.abs(np.linalg.eigvals(M)))[-2]


# ------------------------------------------------------------ one-peer exponential (issue 9)
@pytest.mark.parametrize("n", [2, 3, 5, 6, 8, 12, 16, 17])
def test_one_peer_exponential_equals_bluefog_per_agent(n):
    d = one_peer_exponential_graph(n)
    topo = bf_exponential_graph(n)
    gens = [bf_one_peer(topo, i) for i in range(n)]
    check_against_generators(d, gens, 3 * d.period + 1)
    assert d.period == math.ceil(math.log2(n))


@pytest.mark.parametrize("n", [2, 3, 6, 8, 12, 31])
def test_one_peer_patterns_are_subgraphs_of_exponential_graph(n):
    static = exponential_graph(n).weights > 0
    for p in one_peer_exponential_graph(n).patterns:
        assert np.all(static[p.weights > 0]), p.name
        assert p.is_doubly_stochastic


@pytest.mark.parametrize("m,L", [(2, 1), (3, 2), (4, 3), (5, 2), (8, 1), (6, 4)])
def test_hierarchical_machine_sequence_equals_bluefog(m, L):
    """The machine-level one-peer exponential sequence, lifted to agents (W_machine kron I_L)."""
    machine = one_peer_exponential_graph(m)
    lifted = lift_machine_topology(machine, L)
    n = m * L
    gens = [bf_exp2_machine(n, L, r, r % L) for r in range(n)]
    for t in range(2 * machine.period + 1):
        for r, gen in enumerate(gens):
            send, recv = next(gen)
            mid, local = divmod(r, L)
            assert machine.at(t).out_neighbors(mid) == send and machine.at(t).in_neighbors(mid) == recv
            assert lifted.at(t).in_neighbors(r) == [recv[0] * L + local]
            assert lifted.at(t).out_neighbors(r) == [send[0] * L + local]


# ------------------------------------------------------------ one peer over any base
BASES = [ring_graph(7), ring_graph(6, directed=True), star_graph(5), grid_2d_graph(2, 3),
         random_regular_graph(8, 3, seed=1), erdos_renyi_graph(9, 0.4, seed=2),
         exponential_graph(10, base=3), exponential_graph(9)]


@pytest.mark.parametrize("base", BASES, ids=lambda b: b.name)
def test_dynamic_one_peer_equals_bluefog_over_any_base(base):
    d = dynamic_one_peer_graph(base)
    topo = as_bluefog_digraph(base)
    n = base.size
    degrees = [topo.out_degree(i) - 1 for i in range(n)]
    assert d.period == math.lcm(*degrees)
    gens = [bf_one_peer(topo, i) for i in range(n)]
    check_against_generators(d, gens, 2 * d.period + 1)
    support = base.weights > 0
    P = np.eye(n)
    for p in d.patterns:
        assert np.all(support[p.weights > 0]) and p.is_row_stochastic
        P = p.weights @ P
    assert slem(P) < 1 - 1e-9  # the period product mixes


def test_dynamic_one_peer_errors():
    with pytest.raises(TypeError, match=r"base must be a static bluefog.topology.Topology; got DynamicTopology"):
        dynamic_one_peer_graph(one_peer_exponential_graph(4))
    with pytest.raises(TypeError, match=r"base must be a static bluefog.topology.Topology; got ndarray"):
        dynamic_one_peer_graph(np.eye(3))
    with pytest.raises(ValueError, match=r"agent 0 sends to nobody in custom"):
        from bluefog.topology import Topology

        dynamic_one_peer_graph(Topology(np.array([[0.5, 0.5, 0], [0, 1.0, 0], [0, 0.5, 0.5]]),
                                        check_connected=False))
    with pytest.raises(ValueError, match=r"one-peer period of 1023 patterns .* above MAX_PERIOD = 512"):
        dynamic_one_peer_graph(star_graph(1024))
    single = dynamic_one_peer_graph(ring_graph(1))
    assert single.period == 1 and single.at(5).weights.tolist() == [[1.0]]


# ------------------------------------------------------------ inner-outer sequences
def bf_inner_outer_ring(world_size, local_size, self_rank):
    """Bluefog's ``GetInnerOuterRingDynamicSendRecvRanks``."""
    num_machines = world_size // local_size
    nodes_per_machine = local_size
    index = 0
    while True:
        machine_id = self_rank // nodes_per_machine
        local_rank_id = self_rank % nodes_per_machine
        local_rank_to_go_outside_id = index % nodes_per_machine
        if local_rank_to_go_outside_id == local_rank_id:
            send_rank = ((machine_id + 1) % num_machines) * nodes_per_machine + local_rank_id
            recv_rank = ((machine_id - 1) % num_machines) * nodes_per_machine + local_rank_id
        else:
            target_local_rank_id = (local_rank_id + 1) % nodes_per_machine
            if target_local_rank_id == local_rank_to_go_outside_id:
                target_local_rank_id = (target_local_rank_id + 1) % nodes_per_machine
            send_rank = target_local_rank_id + machine_id * nodes_per_machine
            source_local_rank_id = (local_rank_id - 1) % nodes_per_machine
            if source_local_rank_id == local_rank_to_go_outside_id:
                source_local_rank_id = (source_local_rank_id - 1) % nodes_per_machine
            recv_rank = source_local_rank_id + machine_id * nodes_per_machine
        yield [send_rank], [recv_rank]
        index += 1


def bf_inner_outer_expo2(world_size, local_size, self_rank):
    """Bluefog's ``GetInnerOuterExpo2DynamicSendRecvRanks``."""
    num_machines = world_size // local_size
    nodes_per_machine = local_size
    exp_2_out_size = int(np.log2(num_machines - 1))
    exp_2_in_size = 0 if nodes_per_machine == 2 else int(np.log2(nodes_per_machine - 2))
    index = 0
    while True:
        machine_id = self_rank // nodes_per_machine
        local_rank_id = self_rank % nodes_per_machine
        local_rank_to_go_outside_id = index % nodes_per_machine
        if local_rank_to_go_outside_id == local_rank_id:
            next_machine_dist = 2 ** (index % (exp_2_out_size + 1))
            send_rank = ((machine_id + next_machine_dist) % num_machines) * nodes_per_machine + local_rank_id
            recv_rank = ((machine_id - next_machine_dist) % num_machines) * nodes_per_machine + local_rank_id
        else:
            dist_to_out = (local_rank_to_go_outside_id - local_rank_id) % nodes_per_machine
            next_inner_dist = 2 ** (index % (exp_2_in_size + 1))
            if next_inner_dist >= dist_to_out:
                next_inner_dist += 1
            send_rank = (local_rank_id + next_inner_dist) % nodes_per_machine + machine_id * nodes_per_machine
            reverse_inner_dist = 2 ** (index % (exp_2_in_size + 1))
            reverse_dist_to_out = (local_rank_id - local_rank_to_go_outside_id) % nodes_per_machine
            if reverse_inner_dist >= reverse_dist_to_out:
                reverse_inner_dist += 1
            recv_rank = (local_rank_id - reverse_inner_dist) % nodes_per_machine + machine_id * nodes_per_machine
        yield [send_rank], [recv_rank]
        index += 1


SHAPES = [(6, 3), (8, 4), (12, 3), (12, 4), (20, 5), (24, 6), (64, 4), (27, 9), (40, 8)]


@pytest.mark.parametrize("kind", ["ring", "expo2"])
@pytest.mark.parametrize("size,L", SHAPES)
def test_inner_outer_equals_bluefog(kind, size, L):
    make, bf = ((inner_outer_ring_graph, bf_inner_outer_ring) if kind == "ring"
                else (inner_outer_exponential_graph, bf_inner_outer_expo2))
    d = make(size, L)
    M = size // L
    want_period = L if kind == "ring" else math.lcm(L, int(np.log2(M - 1)) + 1, int(np.log2(L - 2)) + 1)
    assert d.period == want_period
    check_against_generators(d, [bf(size, L, r) for r in range(size)], 2 * d.period + 1)
    P = np.eye(size)
    for p in d.patterns:
        W = p.weights
        assert np.allclose(W.sum(axis=0), 1, atol=1e-12) and np.allclose(W.sum(axis=1), 1, atol=1e-12)
        P = W @ P
    assert np.linalg.norm(P - np.full((size, size), 1 / size), 2) < 1 - 1e-9  # the product mixes


@pytest.mark.parametrize("make", [inner_outer_ring_graph, inner_outer_exponential_graph])
def test_inner_outer_errors(make):
    who = make.__name__
    with pytest.raises(ValueError, match=r"local_size must divide size \(machines of equal size\); got size=10, local_size=4"):
        make(10, 4)
    with pytest.raises(ValueError, match=rf"{who} needs local_size >= 3 .* got local_size=2"):
        make(8, 2)
    with pytest.raises(ValueError, match=rf"{who} needs at least 2 machines; got size=4, local_size=4"):
        make(4, 4)
    with pytest.raises(TypeError, match=r"local_size must be an integer >= 1; got 2.0"):
        make(8, 2.0)
    with pytest.raises(ValueError, match=r"size must be an integer >= 1; got 0"):
        make(0, 3)
