r"""Data for decentralized deep learning: real digits, agent splits, a synthetic generator.

* :func:`load_digits` - scikit-learn's bundled handwritten digits (1797 images of 8x8
  pixels, 10 classes; UCI "Optical Recognition of Handwritten Digits", Alpaydin & Kaynak
  1998), shipped with scikit-learn, so no download. Pixels are scaled to ``[0, 1]``; a
  stratified held-out test split is drawn deterministically by ``seed``.
* :func:`partition` - split a training set across ``n`` agents with **equal shard sizes**
  (so shards stack into the ``(n, m, ...)`` arrays a :class:`bluefog.Problem` holds):
  ``"iid"``, ``"label_sorted"`` (McMahan et al. 2017's pathological non-iid split) or
  ``"dirichlet"`` (Hsu, Qi & Brown, arXiv:1909.06335, 2019). It *is* the algorithm
  library's :func:`algorithms.problems.split_dataset` (one splitter for the project).
* :func:`synthetic_classification` - a Gaussian-mixture classification set of any size, for
  benchmark runs larger than digits.
"""

from __future__ import annotations

import numpy as np

from algorithms.problems import split_dataset as partition
from bluefog.validation import check_positive_int, check_real, check_seed

__all__ = ["PARTITIONS", "load_digits", "partition", "label_histogram", "synthetic_classification"]

#: Accepted values of ``method`` in :func:`partition`.
PARTITIONS = ("iid", "label_sorted", "dirichlet")


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """Scikit-learn's digits, pixels in ``[0, 1]``, with a stratified held-out test split.

    Parameters
    ----------
    test_fraction : float in (0, 1)
        Fraction of the 1797 images held out for testing (stratified by label).
    seed : int
        Seed of the split (``sklearn.model_selection.train_test_split(random_state=seed)``).

    Returns
    -------
    X_train, y_train, X_test, y_test : numpy arrays
        ``X`` float32 of shape ``(m, 64)`` (row-major 8x8 images), ``y`` int32 in ``[0, 10)``.

    References
    ----------
    E. Alpaydin, C. Kaynak, "Optical recognition of handwritten digits", UCI ML repository
    (1998); bundled as ``sklearn.datasets.load_digits``.
    """
    test_fraction = check_real(test_fraction, "test_fraction", low=0, high=1, low_open=True,
                               high_open=True, example="test_fraction=0.2")
    seed = check_seed(seed)
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    X, y = _load(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    y = y.astype(np.int32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, random_state=seed,
                                              stratify=y)
    return X_tr, y_tr, X_te, y_te


def label_histogram(y_shards, num_classes: int | None = None) -> np.ndarray:
    """Per-agent label counts, shape ``(n, C)`` (to report how non-iid a split is)."""
    y_shards = np.asarray(y_shards)
    C = int(y_shards.max()) + 1 if num_classes is None else int(num_classes)
    return np.stack([np.bincount(row, minlength=C) for row in y_shards.reshape(len(y_shards), -1)])


def synthetic_classification(num_samples: int, num_features: int = 64, num_classes: int = 10,
                             *, separation: float = 2.0, seed: int = 0):
    r"""A Gaussian-mixture classification set of any size.

    Class means :math:`\mu_c = s\, u_c` with :math:`u_c` i.i.d. uniform on the unit sphere of
    :math:`\mathbb R^d` and :math:`s` = ``separation``; labels uniform on ``[0, C)``; samples
    :math:`x = \mu_y + z` with :math:`z \sim \mathcal N(0, \tfrac1d I_d)` (so
    :math:`\mathbb E\|z\|^2 = 1`). Larger ``separation`` is easier.

    Returns
    -------
    X : float32 array, shape (num_samples, num_features)
    y : int32 array, shape (num_samples,)
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    num_features = check_positive_int(num_features, "num_features")
    num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
    separation = check_real(separation, "separation", low=0, example="separation=2.0")
    rng = np.random.default_rng(check_seed(seed))
    U = rng.normal(size=(num_classes, num_features))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    y = rng.integers(0, num_classes, size=num_samples)
    X = float(separation) * U[y] + rng.normal(size=(num_samples, num_features)) / np.sqrt(num_features)
    return X.astype(np.float32), y.astype(np.int32)
