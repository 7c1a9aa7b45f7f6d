"""bluefog_sim: the single-process ``jax.vmap`` simulator of decentralized algorithms."""

from .comm import AXIS_NAME, SimComm
from .runner import agent_keys, run, spmd

__all__ = ["SimComm", "AXIS_NAME", "run", "spmd", "agent_keys"]
