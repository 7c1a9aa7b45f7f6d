"""algorithms: decentralized methods written once against the Communicator protocol.

Every factory returns a :class:`bluefog.Algorithm` (pure ``init``/``step``/``params``) that
runs unchanged in the simulator (:func:`bluefog_sim.run`) and under MPI
(:func:`bluefog_dist.run`). :data:`REGISTRY` maps each name to its factory.
"""

from . import problems
from .optim import decentralized, dmsgd, qg_dsgdm  # decentralized optax optimizers (issue 5)
from ._consensus import ConsensusState, PushSumState, consensus, push_sum
from ._dgd import DGDState, dgd, diffusion
from ._dsgd import SGDState, dsgd, gradient_allreduce
from ._exact_diffusion import ExactDiffusionState, exact_diffusion, nids
from ._extra import ExtraState, extra
from ._gradient_tracking import (GradientTrackingState, PushDIGingState, gradient_tracking,
                                push_diging)

#: Name -> factory of every algorithm in the library.
REGISTRY = {
    "consensus": consensus,
    "push_sum": push_sum,
    "dgd": dgd,
    "diffusion": diffusion,
    "exact_diffusion": exact_diffusion,
    "extra": extra,
    "nids": nids,
    "gradient_tracking": gradient_tracking,
    "push_diging": push_diging,
    "dsgd": dsgd,
    "gradient_allreduce": gradient_allreduce,
}

__all__ = [
    "REGISTRY",
    "problems",
    "consensus",
    "push_sum",
    "dgd",
    "diffusion",
    "exact_diffusion",
    "nids",
    "extra",
    "gradient_tracking",
    "push_diging",
    "dsgd",
    "gradient_allreduce",
    "decentralized",
    "dmsgd",
    "qg_dsgdm",
    "ConsensusState",
    "PushSumState",
    "DGDState",
    "ExactDiffusionState",
    "ExtraState",
    "GradientTrackingState",
    "PushDIGingState",
    "SGDState",
]
