"""validate_weights / Topology / DynamicTopology: every bad input raises a clear, pinned error."""

import numpy as np
import pytest

from bluefog.topology import (
    DynamicTopology,
    Topology,
    exponential_graph,
    one_peer_exponential_graph,
    random_matching,
    ring_graph,
    validate_weights,
)
from bluefog.topology.validation import check_positive_int


@pytest.mark.parametrize("W,kwargs,exc,match", [
    (np.ones((2, 3)) / 3, {}, ValueError, r"weights must be a square \(n, n\) matrix; got shape \(2, 3\)"),
    (np.ones(4) / 4, {}, ValueError, r"must be a square \(n, n\) matrix; got shape \(4,\)"),
    (np.zeros((0, 0)), {}, ValueError, r"at least one agent; got shape \(0, 0\) \(size 0\)"),
    (np.array([[0.5, np.nan], [0.5, 0.5]]), {}, ValueError, r"weights must be finite; got nan at index \(0, 1\)"),
    (np.array([[1.5, -0.5], [0.5, 0.5]]), {}, ValueError, r"weights must be non-negative; got -0.5 at index \(0, 1\)"),
    (np.array([[0.5, 0.4], [0.5, 0.5]]), {}, ValueError, r"must be row-stochastic \(each row sums to 1\); row 0 sums to 0.9"),
    (np.array([[0.5, 0.5], [0.2, 0.8]]), {"require": "column"}, ValueError,
     r"must be column-stochastic \(each column sums to 1\); column 0 sums to 0.7"),
    (np.array([[0.5, 0.5], [0.2, 0.8]]), {"require": "doubly"}, ValueError,
     r"column 0 sums to 0.7.*Metropolis-Hastings"),
    (np.eye(3), {}, ValueError, r"has only self-loops \(diagonal matrix\) for 3 agents"),
    (np.kron(np.eye(2), np.full((2, 2), 0.5)), {}, ValueError,
     r"not strongly connected: agent 2 never receives information from agent 0"),
    (np.array([[1.0, 0.0], [0.5, 0.5]]), {}, ValueError,
     r"not strongly connected: agent 0 never receives information from agent 1"),
    (np.eye(2), {"require": "rows"}, ValueError, r"require must be one of \('row', 'column', 'doubly', 'none'\); got 'rows'"),
    ("abc", {}, TypeError, r"weights must be a square 2-D array of numbers; got str"),
    (None, {}, TypeError, r"got NoneType"),
    ([[1, "x"], [0, 1]], {}, TypeError, r"NumPy cannot convert to float64"),
])
def test_validate_weights_errors(W, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        validate_weights(W, **kwargs)


def test_validate_weights_accepts_and_freezes():
    W = validate_weights([[0.5, 0.5], [0.5, 0.5]])
    assert W.dtype == np.float64 and not W.flags.writeable
    # disconnected matrices pass when connectivity is not demanded (time-varying patterns)
    validate_weights(np.eye(3), check_connected=False)
    validate_weights([[2.0, 1.0], [1.0, 2.0]], require="none")
    # sums within 1e-10 are accepted, 1e-9 off is not
    validate_weights([[0.5 + 5e-11, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="row 0 sums to"):
        validate_weights([[0.5 + 1e-9, 0.5], [0.5, 0.5]])


def test_check_helpers():
    assert check_positive_int(np.int64(3), "n") == 3
    with pytest.raises(TypeError, match=r"n must be an integer >= 1; got True of type bool"):
        check_positive_int(True, "n")
    with pytest.raises(ValueError, match=r"k must be an integer >= 2; got 1. Use k=2 or larger"):
        check_positive_int(1, "k", minimum=2)


def test_topology_argument_errors():
    with pytest.raises(ValueError, match=r"layout must be one of 'circular', 'grid', 'spring', 'shell'; got 'tree'"):
        Topology(np.full((2, 2), 0.5), layout="tree")
    t = ring_graph(5)
    with pytest.raises(ValueError, match=r"agent must be in \[0, 5\); got 5"):
        t.in_neighbors(5)
    with pytest.raises(TypeError, match=r"agent must be an int in \[0, 5\); got 1.0"):
        t.out_neighbors(1.0)


def test_topology_value_semantics():
    a, b = exponential_graph(8), exponential_graph(8)
    assert a == b and hash(a) == hash(b) and a.fingerprint == b.fingerprint
    assert a != exponential_graph(8, base=3) and a != ring_graph(8)
    assert not a.weights.flags.writeable
    assert a.period == 1 and a.patterns == (a,) and a.at(5) is a and a.index(7) == 0
    assert "exponential(n=8, base=2)" in repr(a)


def test_dynamic_topology_errors():
    with pytest.raises(TypeError, match=r"patterns must be a non-empty sequence of Topology objects; got \[\]"):
        DynamicTopology([], period=None)
    with pytest.raises(TypeError, match=r"got \['ndarray'\]"):
        DynamicTopology([np.eye(2)], period=1)
    with pytest.raises(ValueError, match=r"all patterns must have the same size; got sizes \[4, 5\]"):
        DynamicTopology([ring_graph(4), ring_graph(5)], period=2)
    with pytest.raises(ValueError, match=r"period must equal len\(patterns\) .* got period=3 with 2 patterns"):
        DynamicTopology([ring_graph(4), ring_graph(4, directed=True)], period=3)
    d = one_peer_exponential_graph(8)
    with pytest.raises(ValueError, match=r"t must be >= 0; got -1"):
        d.at(-1)
    with pytest.raises(TypeError, match=r"t must be a non-negative int step counter; got 1.5"):
        d.index(1.5)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1; got 0"):
        one_peer_exponential_graph(0)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1; got 0"):
        random_matching(0)
    with pytest.raises(TypeError, match=r"seed must be an int; got None"):
        random_matching(4, seed=None)
    with pytest.raises(ValueError, match=r"pool_size must be an integer >= 1; got 0"):
        random_matching(4, pool_size=0)
