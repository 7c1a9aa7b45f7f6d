"""Validation of mixing matrices, done once in plain NumPy before anything is traced.

Every check raises a ``ValueError``/``TypeError`` that names the argument, what was expected,
what was received, and how to fix it (docs/architecture.md, "Validate once, at the public boundary").
"""

from __future__ import annotations

import numpy as np

from ..validation import check_positive_int  # noqa: F401  (re-exported: one rule)

__all__ = ["STOCHASTICITY", "MAX_DENSE_AGENTS", "validate_weights", "check_positive_int",
           "check_num_agents"]

#: Accepted values of ``require`` in :func:`validate_weights`.
STOCHASTICITY = ("row", "column", "doubly", "none")

_ATOL = 1e-10

#: Largest number of agents of a topology given or built as a dense ``n x n`` float64
#: matrix (``16384**2 * 8`` bytes is 2 GiB). Topologies built by their edges
#: (:mod:`bluefog.topology.sparse`, e.g. ``exponential_graph``) go up to
#: ``MAX_SPARSE_AGENTS``; their dense matrix is refused above this size.
MAX_DENSE_AGENTS = 16384


def check_num_agents(n, name: str = "n") -> int:
    r"""Return the number of agents ``n`` as an int in ``[1, MAX_DENSE_AGENTS]``, else raise.

    The one place that bounds topology sizes: every constructor calls it before it allocates
    the dense :math:`n \times n` matrix (:math:`8 n^2` bytes in float64).

    Parameters
    ----------
    n : int
    name : str
        How the caller received ``n`` (``"n"``, ``"rows * cols"``, ``"2**dim"``), for the message.

    Returns
    -------
    int

    Raises
    ------
    TypeError
        If ``n`` is not an int.
    ValueError
        If ``n < 1`` or ``n > MAX_DENSE_AGENTS``.
    """
    n = check_positive_int(n, name)
    if n > MAX_DENSE_AGENTS:
        shown = f"{n}" if n < 2**64 else "2**64 or more"
        gib = f"{8 * n * n / 2**30:.3g} GiB" if n < 2**64 else "astronomically many bytes"
        raise ValueError(
            f"{name} must be at most MAX_DENSE_AGENTS = {MAX_DENSE_AGENTS} agents; got {shown}. "
            f"A topology holds its dense n x n float64 mixing matrix (the oracle the backends "
            f"are checked against), which would need {gib} here; {MAX_DENSE_AGENTS} agents "
            "keep it at 2 GiB. Use fewer agents, or a family built by its edges "
            "(exponential_graph(n) goes up to MAX_SPARSE_AGENTS)."
        )
    return n


def validate_weights(weights, *, require: str = "row", name: str = "weights",
                     check_connected: bool = True) -> np.ndarray:
    r"""Check a mixing matrix and return it as a read-only ``float64`` array.

    The convention is :math:`x^{+} = W x`: ``W[i, j]`` is the weight agent ``i`` puts on
    agent ``j``'s value, so row ``i`` lists what agent ``i`` receives.

    Checks, in order: a real dtype (complex is a ``TypeError``); 2-D square shape with
    ``1 <= n <= MAX_DENSE_AGENTS`` rows; finite entries; no negative entries; the stochasticity named by ``require``:

    * ``"row"``: :math:`W\mathbf 1 = \mathbf 1` (consensus / diffusion),
    * ``"column"``: :math:`\mathbf 1^\top W = \mathbf 1^\top` (push-sum),
    * ``"doubly"``: both,
    * ``"none"``: no sum constraint (e.g. a dynamic one-off weight set);

    and, if ``check_connected``, that the communication graph (an edge ``j -> i`` where
    ``W[i, j] > 0``) is strongly connected, so information from every agent reaches every
    other one. Sums are checked to an absolute tolerance of ``1e-10``.

    Parameters
    ----------
    weights : array_like, shape (n, n)
    require : {"row", "column", "doubly", "none"}
    name : str
        Argument name used in error messages.
    check_connected : bool

    Returns
    -------
    numpy.ndarray
        ``float64`` copy of ``weights`` with the write flag cleared.

    References
    ----------
    L. Xiao and S. Boyd, "Fast linear iterations for distributed averaging",
    Systems & Control Letters 53 (2004).
    """
    if require not in STOCHASTICITY:
        raise ValueError(
            f"require must be one of {STOCHASTICITY}; got {require!r}. "
            "Use require='row' for consensus-style mixing or 'column' for push-sum."
        )
    W = _as_square_nonnegative(weights, name)
    _check_sums(W, require, name)
    if check_connected:
        _check_strongly_connected(W, name)
    W.setflags(write=False)
    return W


def _as_square_nonnegative(weights, name: str) -> np.ndarray:
    """``weights`` as a finite, non-negative, square float64 array of 1..MAX_DENSE_AGENTS rows."""
    if isinstance(weights, (str, bytes)) or weights is None:
        raise TypeError(f"{name} must be a square 2-D array of numbers; got {type(weights).__name__}.")
    if np.iscomplexobj(weights):
        raise TypeError(
            f"{name} must be real; got complex dtype {np.asarray(weights).dtype}. Mixing weights "
            f"are real convex-combination coefficients: pass {name}.real if the imaginary parts "
            "are zero."
        )
    shape = getattr(weights, "shape", None)
    if shape is not None and len(shape) == 2 and shape[0] > MAX_DENSE_AGENTS:  # before copying
        check_num_agents(int(shape[0]), f"{name}.shape[0]")
    try:
        W = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a square 2-D array of numbers; got {type(weights).__name__} "
            f"that NumPy cannot convert to float64 ({err})."
        ) from None
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(
            f"{name} must be a square (n, n) matrix; got shape {W.shape}. "
            "Pass W with W[i, j] the weight agent i puts on agent j."
        )
    if W.shape[0] == 0:
        raise ValueError(f"{name} must describe at least one agent; got shape {W.shape} (size 0).")
    check_num_agents(W.shape[0], f"{name}.shape[0]")
    if not np.all(np.isfinite(W)):
        bad = tuple(int(v) for v in np.argwhere(~np.isfinite(W))[0])
        raise ValueError(
            f"{name} must be finite; got {W[bad]} at index {bad}. Replace NaN/inf entries."
        )
    if np.any(W < 0):
        bad = tuple(int(v) for v in np.argwhere(W < 0)[0])
        raise ValueError(
            f"{name} must be non-negative; got {W[bad]:.6g} at index {bad}. "
            "Mixing weights are convex-combination coefficients."
        )
    return W


def _check_sums(W: np.ndarray, require: str, name: str) -> None:
    """Row and/or column sums equal to 1 (to ``_ATOL``) as ``require`` demands."""
    if require in ("row", "doubly"):
        rows = W.sum(axis=1)
        bad = np.flatnonzero(np.abs(rows - 1.0) > _ATOL)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name} must be row-stochastic (each row sums to 1); row {i} sums to "
                f"{rows[i]:.12g}. Normalise rows (W / W.sum(axis=1, keepdims=True)) or pass "
                "require='column' for push-sum weights."
            )
    if require in ("column", "doubly"):
        cols = W.sum(axis=0)
        bad = np.flatnonzero(np.abs(cols - 1.0) > _ATOL)
        if bad.size:
            j = int(bad[0])
            raise ValueError(
                f"{name} must be column-stochastic (each column sums to 1); column {j} sums "
                f"to {cols[j]:.12g}. Normalise columns (W / W.sum(axis=0, keepdims=True))"
                + (" or use Metropolis-Hastings weights for a doubly stochastic W." if require == "doubly" else ".")
            )


def _check_strongly_connected(W: np.ndarray, name: str) -> None:
    """The graph with an edge ``j -> i`` where ``W[i, j] > 0`` is strongly connected."""
    n = W.shape[0]
    if n > 1:
        off = (W > 0) & ~np.eye(n, dtype=bool)
        if not off.any():
            raise ValueError(
                f"{name} has only self-loops (diagonal matrix) for {n} agents: no agent ever "
                "hears from another. Add edges, e.g. use ring_graph(n) or exponential_graph(n)."
            )
        unreachable = _first_unreachable(off)
        if unreachable is not None:
            src, dst = unreachable
            raise ValueError(
                f"{name} describes a graph that is not strongly connected: agent {dst} never "
                f"receives information from agent {src}. Decentralized methods cannot reach "
                "consensus; add edges or use a connected family (ring_graph, exponential_graph)."
            )


def _first_unreachable(adjacency: np.ndarray):
    """First (source, destination) pair with no directed path, or None if strongly connected.

    ``adjacency[i, j]`` means information flows ``j -> i``.
    """
    n = adjacency.shape[0]
    out = adjacency.T  # out[j, i]: j sends to i

    def reach(start, adj):
        seen = np.zeros(n, dtype=bool)
        seen[start] = True
        frontier = [start]
        while frontier:
            nxt = np.flatnonzero(adj[frontier].any(axis=0) & ~seen)
            seen[nxt] = True
            frontier = list(nxt)
        return seen

    fwd = reach(0, out)        # who hears from agent 0
    if not fwd.all():
        return 0, int(np.flatnonzero(~fwd)[0])
    bwd = reach(0, adjacency)  # whom agent 0 hears from
    if not bwd.all():
        return int(np.flatnonzero(~bwd)[0]), 0
    return None
