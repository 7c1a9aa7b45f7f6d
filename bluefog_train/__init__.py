"""bluefog_train: the ``bluefog-train`` application, a client of the bluefog-jax library.

Decentralized training of small classifiers, in the vmap simulator or under MPI: models
(:mod:`~bluefog_train.models`), data and agent splits (:mod:`~bluefog_train.data`), the
experiment (:mod:`~bluefog_train.experiment`), the run with checkpoints
(:mod:`~bluefog_train.training`, :mod:`~bluefog_train.checkpoint`), asynchronous training
and the straggler flags (:mod:`~bluefog_train.asynctrain`, :mod:`~bluefog_train.stragglers`),
the results (:mod:`~bluefog_train.report`), output checks (:mod:`~bluefog_train.paths`),
figures (:mod:`~bluefog_train.plotting`) and the command line (:mod:`~bluefog_train.cli`). The algorithm library it uses is :mod:`algorithms`.
"""

from .cli import build_parser, main
from .training import train

__all__ = ["build_parser", "main", "train"]
