r"""Stochastic methods: decentralized (local) SGD with momentum, and the centralized
all-reduce baseline.

Both are thin, documented constructors over the one implementation of the SGD family
(:func:`algorithms.optim.dmsgd`, built by :mod:`algorithms._decentralized`): same update,
same state (:class:`SGDState`), same check of the mixing weights.
"""

from __future__ import annotations

from bluefog.algorithm import Algorithm
from bluefog.validation import check_bool, check_positive_float, check_positive_int, check_unit_interval

from ._decentralized import DecentralizedState, sgd_member

__all__ = ["SGDState", "dsgd", "gradient_allreduce"]

#: State of :func:`dsgd` and :func:`gradient_allreduce`: the family's
#: :class:`~algorithms.optim.DecentralizedState` (``params`` :math:`x_i^{(k)}`, ``opt_state``
#: the ``optax.sgd`` state holding the heavy-ball buffer :math:`m_i^{(k)}`, ``count``).
SGDState = DecentralizedState


def dsgd(lr: float, momentum: float = 0.0, steps_per_communication: int = 1) -> Algorithm:
    r"""Decentralized SGD (adapt-then-combine) with heavy-ball momentum and local steps.

    With :math:`g_i^{(k)}` a stochastic gradient of :math:`f_i` at :math:`x_i^{(k)}`
    (:meth:`bluefog.AgentContext.stochastic_grad`, drawn with ``fold_in(key, k)``):

    .. math::

        m_i^{(k+1)} &= \beta m_i^{(k)} + g_i^{(k)}, \qquad
        x_i^{(k+\frac12)} = x_i^{(k)} - \alpha\, m_i^{(k+1)} \\
        x_i^{(k+1)} &= \begin{cases} \sum_j W_{ij}(r)\, x_j^{(k+\frac12)} &
        \text{if } (k+1) \bmod J = 0,\ r = \lfloor k / J \rfloor \\
        x_i^{(k+\frac12)} & \text{otherwise (a local step)} \end{cases}

    ``J = 1`` is D-PSGD (Lian et al. 2017) in its ATC form; ``J > 1`` is local SGD with
    gossip averaging every ``J`` steps, covered by the unified analysis of Koloskova et al.
    (2020) (mixing matrix ``I`` on local steps). A time-varying topology advances once per
    communication round ``r``. The momentum buffer stays local; only every ``J``-th step
    exchanges messages (a ``lax.cond`` on the step counter, declared uniform with
    ``comm.uniform``).

    This is exactly ``dmsgd(lr, momentum, steps_per_communication=J)`` (one implementation,
    bit-identical trajectories), named ``"dsgd"``. The topology must be row-stochastic
    (:math:`W\mathbf 1 = \mathbf 1`); anything else is refused before the first step.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0` (finite).
    momentum : float in [0, 1)
        Heavy-ball coefficient :math:`\beta`.
    steps_per_communication : int >= 1
        :math:`J`, local steps per communication round.

    Returns
    -------
    Algorithm
        State :class:`SGDState`; ``params(state)`` is ``state.params``.

    References
    ----------
    X. Lian, C. Zhang, H. Zhang, C.-J. Hsieh, W. Zhang, J. Liu, "Can decentralized algorithms
    outperform centralized algorithms?", NeurIPS 2017. A. Koloskova, N. Loizou, S. Boreiri,
    M. Jaggi, S. U. Stich, "A unified theory of decentralized SGD with changing topology and
    local updates", ICML 2020.
    """
    lr = check_positive_float(lr, "lr", where="dsgd")
    beta = check_unit_interval(momentum, "momentum", where="dsgd")
    J = check_positive_int(steps_per_communication, "steps_per_communication", where="dsgd")
    return sgd_member(lr, beta, nesterov=False, communication="neighbor", J=J,
                      machine_topology=None, stochastic=True, name="dsgd", where="dsgd")


def gradient_allreduce(lr: float, momentum: float = 0.0, stochastic: bool = True) -> Algorithm:
    r"""Centralized (Horovod-style) data-parallel SGD: average the gradients of all agents.

    .. math::

        \bar g^{(k)} = \frac1n \sum_j g_j^{(k)}, \qquad
        m^{(k+1)} = \beta m^{(k)} + \bar g^{(k)}, \qquad x^{(k+1)} = x^{(k)} - \alpha m^{(k+1)},

    one ``allreduce`` per step. Starting from the same point, all agents stay identical; with
    exact gradients (``stochastic=False``) this is gradient descent on
    :math:`f = \frac1n\sum_i f_i`, the reference that decentralized methods are compared with.
    With ``stochastic=True`` it is exactly
    ``dmsgd(lr, momentum, communication="gradient_allreduce")`` (one implementation,
    bit-identical trajectories), named ``"gradient_allreduce"``. No mixing matrix is used.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0` (finite).
    momentum : float in [0, 1)
    stochastic : bool
        Use :meth:`bluefog.AgentContext.stochastic_grad` (default) or the exact gradient.

    Returns
    -------
    Algorithm
        State :class:`SGDState`; ``params(state)`` is ``state.params``.

    References
    ----------
    A. Sergeev and M. Del Balso, "Horovod: fast and easy distributed deep learning in
    TensorFlow", arXiv:1802.05799 (2018). P. Goyal et al., "Accurate, large minibatch SGD",
    arXiv:1706.02677 (2017).
    """
    lr = check_positive_float(lr, "lr", where="gradient_allreduce")
    beta = check_unit_interval(momentum, "momentum", where="gradient_allreduce")
    stochastic = check_bool(stochastic, "stochastic", where="gradient_allreduce")
    return sgd_member(lr, beta, nesterov=False, communication="gradient_allreduce", J=1,
                      machine_topology=None, stochastic=stochastic, name="gradient_allreduce",
                      where="gradient_allreduce")
