"""algorithms: decentralized methods written once against the Communicator protocol.

Every factory returns a :class:`bluefog.Algorithm` (pure ``init``/``step``/``params``) that
runs unchanged in the simulator (:func:`bluefog_sim.run`) and under MPI
(:func:`bluefog_dist.run`). :data:`REGISTRY` maps each name to its factory; :data:`COMPRESSED_REGISTRY` does the same for
the methods built for compressed communication (CHOCO, BEER and the naive baselines).
:func:`robust_push_sum` (exact averaging under message loss, for :mod:`bluefog.faults`) is
registered with the other consensus methods (it takes no step size).
"""

from . import problems
from .optim import decentralized, dmsgd, qg_dsgdm  # decentralized optax optimizers
from .transform import DecentralizedMixState, mix_state, optax_decentralized  # own loop
from ._async_adpsgd import ADPSGDState, ad_psgd
from ._async_push_diging import AsyncPushDIGingState, async_push_diging
from ._async_push_sum import AsyncPushSumState, async_push_sum, async_sgp
from ._beer import BeerState, beer
from ._choco import (ChocoState, CompressedDGDState, choco_gossip, choco_sgd, compressed_dgd,
                     compressed_gossip)
from ._consensus import ConsensusState, PushSumState, consensus, push_sum
from ._dgd import DGDState, dgd, diffusion
from ._dsgd import SGDState, dsgd, gradient_allreduce
from ._exact_diffusion import ExactDiffusionState, exact_diffusion, nids
from ._extra import ExtraState, extra
from ._robust_push_sum import RobustPushSumState, robust_push_sum
from ._gradient_tracking import (GradientTrackingState, PushDIGingState, gradient_tracking,
                                push_diging)

#: Name -> factory of every uncompressed algorithm (each takes ``lr``, or nothing for the
#: consensus methods ``consensus``, ``push_sum`` and ``robust_push_sum``).
REGISTRY = {
    "consensus": consensus,
    "push_sum": push_sum,
    "robust_push_sum": robust_push_sum,
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

#: Name -> factory of the asynchronous methods, written against the window ops (run them
#: in virtual time with :func:`bluefog.asynchrony.asynchronous`; under a plain run they are
#: their synchronous counterparts).
ASYNC_REGISTRY = {
    "async_push_sum": async_push_sum,
    "async_sgp": async_sgp,
    "ad_psgd": ad_psgd,
    "async_push_diging": async_push_diging,
}

#: Name -> factory of the methods for compressed communication (each takes a
#: :class:`bluefog.compression.Compressor`; see :mod:`algorithms._choco` and
#: :mod:`algorithms._beer`).
COMPRESSED_REGISTRY = {
    "choco_gossip": choco_gossip,
    "choco_sgd": choco_sgd,
    "compressed_gossip": compressed_gossip,
    "compressed_dgd": compressed_dgd,
    "beer": beer,
}

__all__ = [
    "REGISTRY",
    "COMPRESSED_REGISTRY",
    "ASYNC_REGISTRY",
    "async_push_sum",
    "async_sgp",
    "ad_psgd",
    "async_push_diging",
    "AsyncPushSumState",
    "AsyncPushDIGingState",
    "ADPSGDState",
    "problems",
    "consensus",
    "push_sum",
    "robust_push_sum",
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
    "optax_decentralized",
    "mix_state",
    "DecentralizedMixState",
    "choco_gossip",
    "choco_sgd",
    "compressed_gossip",
    "compressed_dgd",
    "beer",
    "BeerState",
    "ChocoState",
    "CompressedDGDState",
    "ConsensusState",
    "PushSumState",
    "RobustPushSumState",
    "DGDState",
    "ExactDiffusionState",
    "ExtraState",
    "GradientTrackingState",
    "PushDIGingState",
    "SGDState",
]
