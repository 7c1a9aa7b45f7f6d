r"""Small classification models in pure JAX, and the classification :class:`bluefog.Problem`.

Why pure JAX (no flax / equinox): a model here is two pure functions, ``init(key) ->
params`` and ``apply(params, x) -> logits``, and its parameters are a plain ``dict`` of
arrays. That is exactly what the decentralized machinery needs: the parameters ``vmap``
over 64 agents with no module state to thread, ``ravel_pytree`` fuses them into one message,
and the checkpoint manifest names each leaf by a readable path (``['dense0']['w']``). Two
small models do not justify a dependency (and its version churn) on every MPI rank.

* :func:`mlp` - :math:`\text{logits} = W_L\,\sigma(\cdots\sigma(W_1 x + b_1)\cdots) + b_L`,
  :math:`\sigma` = ReLU, He-normal initialisation (He et al., ICCV 2015).
* :func:`cnn` - LeNet-style (LeCun et al., Proc. IEEE 1998) for 8x8 digits: two 3x3
  convolutions (ReLU, 2x2 average pooling), then a dense layer.
* :func:`classification_problem` - :math:`f_i(x) = \frac1m\sum_{k}
  \mathrm{CE}(\text{apply}(x, a_{ik}), y_{ik}) + \frac{\lambda}{2}\|x\|^2` on agent
  :math:`i`'s shard, with a minibatch estimate for SGD.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bluefog.algorithm import Problem
from bluefog.validation import check_positive_int, check_real, check_seed

__all__ = ["Model", "mlp", "cnn", "MODELS", "cross_entropy", "accuracy", "classification_problem"]


class Model(NamedTuple):
    """A model as two pure functions.

    Attributes
    ----------
    init : callable ``key -> params`` (a dict of float32 arrays; float64 under x64)
    apply : callable ``(params, x) -> logits``; ``x`` of shape ``(B, input_dim)``, logits
        ``(B, num_classes)``.
    name : str
    config : dict (JSON-able hyper-parameters)
    """

    init: Callable
    apply: Callable
    name: str
    config: dict


def _check_sizes(values, name):
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                         for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints; got {values!r}.")
    return tuple(int(v) for v in values)


def _float():
    """The default float dtype: float32, or float64 under ``jax_enable_x64``."""
    return jnp.result_type(float)


def _dense_init(key, fan_in, fan_out):
    w = jax.random.normal(key, (fan_in, fan_out), _float()) * np.sqrt(2.0 / fan_in)
    return {"w": w, "b": jnp.zeros((fan_out,), _float())}


def mlp(hidden=(64,), num_classes: int = 10, input_dim: int = 64) -> Model:
    r"""Multi-layer perceptron with ReLU hidden layers.

    .. math:: h_0 = x,\quad h_k = \max(0, h_{k-1} W_k + b_k),\quad
              \text{logits} = h_{L-1} W_L + b_L

    Weights He-normal :math:`\mathcal N(0, 2/\text{fan\_in})`, biases zero (He et al.,
    "Delving deep into rectifiers", ICCV 2015).
    """
    hidden = _check_sizes(hidden, "hidden")
    (num_classes, input_dim) = _check_sizes((num_classes, input_dim), "num_classes/input_dim")
    sizes = (input_dim,) + hidden + (num_classes,)

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return {f"dense{k}": _dense_init(keys[k], sizes[k], sizes[k + 1])
                for k in range(len(sizes) - 1)}

    def apply(params, x):
        h = x
        for k in range(len(sizes) - 1):
            layer = params[f"dense{k}"]
            h = h @ layer["w"] + layer["b"]
            if k < len(sizes) - 2:
                h = jax.nn.relu(h)
        return h

    return Model(init, apply, "mlp", {"model": "mlp", "hidden": list(hidden),
                                      "num_classes": num_classes, "input_dim": input_dim})


def cnn(channels=(16, 32), num_classes: int = 10, image_shape=(8, 8)) -> Model:
    r"""Small convolutional network for ``image_shape`` single-channel images.

    ``x`` of shape ``(B, H*W)`` is reshaped to NHWC ``(B, H, W, 1)``; each stage is a 3x3
    "SAME" convolution :math:`h \mapsto \max(0, h * K + b)` followed by 2x2 average pooling
    (8x8 -> 4x4 -> 2x2 for two stages), then a dense layer to the logits. He-normal init.

    Reference: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
    document recognition", Proc. IEEE 86(11), 1998.
    """
    channels = _check_sizes(channels, "channels")
    H, W = _check_sizes(image_shape, "image_shape")
    (num_classes,) = _check_sizes((num_classes,), "num_classes")
    if H % (2 ** len(channels)) or W % (2 ** len(channels)):
        raise ValueError(
            f"image_shape must be divisible by 2**len(channels) = {2 ** len(channels)} (one 2x2 "
            f"pooling per stage); got image_shape={(H, W)}, channels={channels}. Use fewer stages."
        )
    out_hw = (H // 2 ** len(channels)) * (W // 2 ** len(channels))

    def init(key):
        keys = jax.random.split(key, len(channels) + 1)
        params, c_in = {}, 1
        for k, c in enumerate(channels):
            fan_in = 9 * c_in
            params[f"conv{k}"] = {
                "w": jax.random.normal(keys[k], (3, 3, c_in, c), _float()) * np.sqrt(2.0 / fan_in),
                "b": jnp.zeros((c,), _float())}
            c_in = c
        params["dense"] = _dense_init(keys[-1], out_hw * c_in, num_classes)
        return params

    def apply(params, x):
        h = x.reshape(x.shape[0], H, W, 1)
        for k in range(len(channels)):
            p = params[f"conv{k}"]
            h = jax.lax.conv_general_dilated(h, p["w"], (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = jax.nn.relu(h + p["b"])
            B, hh, ww, c = h.shape
            h = h.reshape(B, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
        h = h.reshape(h.shape[0], -1)
        return h @ params["dense"]["w"] + params["dense"]["b"]

    return Model(init, apply, "cnn", {"model": "cnn", "channels": list(channels),
                                      "num_classes": num_classes, "image_shape": [H, W]})


#: Model factories by name (used by the ``bluefog-train`` CLI).
MODELS = {"mlp": mlp, "cnn": cnn}


def cross_entropy(logits, labels) -> jax.Array:
    r"""Mean softmax cross-entropy :math:`-\frac1B\sum_b \log \mathrm{softmax}(z_b)_{y_b}`."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def accuracy(logits, labels) -> jax.Array:
    """Fraction of rows whose arg-max equals the label."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(_float()))


def classification_problem(model: Model, X_shards, y_shards, *, batch_size: int, seed: int = 0,
                           l2: float = 0.0, name: str | None = None) -> Problem:
    r"""The decentralized classification problem of ``model`` on stacked agent shards.

    .. math::

        f_i(x) = \frac1m \sum_{k=1}^m \mathrm{CE}\big(\text{apply}(x, a_{ik}), y_{ik}\big)
                 + \frac{\lambda}{2}\|x\|^2,

    and the minibatch loss draws ``batch_size`` indices uniformly with replacement from the
    agent's ``m`` samples with the step's key (so its gradient is unbiased for
    :math:`\nabla f_i`). Every agent starts from ``model.init(PRNGKey(seed))``.

    Parameters
    ----------
    model : Model
    X_shards : array, shape (n, m, input_dim)
    y_shards : int array, shape (n, m)
    batch_size : int >= 1
    seed : int
        Seed of the common initial parameters.
    l2 : float >= 0
        Weight decay :math:`\lambda`.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an bluefog_train.models.Model (e.g. mlp()); got {type(model).__name__}.")
    X_shards = jnp.asarray(X_shards, _float())
    y_shards = jnp.asarray(y_shards, jnp.int32)
    if X_shards.ndim != 3 or y_shards.shape != X_shards.shape[:2]:
        raise ValueError(
            "X_shards must be (n, m, input_dim) and y_shards (n, m); got X_shards.shape="
            f"{X_shards.shape}, y_shards.shape={y_shards.shape}. Build them with "
            "bluefog_train.data.partition."
        )
    batch_size = check_positive_int(batch_size, "batch_size")
    l2 = check_real(l2, "l2", low=0.0, example="l2=1e-4 (or 0: no decay)")
    seed = check_seed(seed)
    m = int(X_shards.shape[1])
    l2 = float(l2)

    def reg(params):
        if l2 == 0.0:
            return 0.0
        return 0.5 * l2 * sum(jnp.sum(p ** 2) for p in jax.tree_util.tree_leaves(params))

    def loss(params, data):
        return cross_entropy(model.apply(params, data["x"]), data["y"]) + reg(params)

    def stochastic_loss(params, data, key):
        idx = jax.random.randint(key, (int(batch_size),), 0, m)
        return cross_entropy(model.apply(params, data["x"][idx]), data["y"][idx]) + reg(params)

    return Problem(loss, {"x": X_shards, "y": y_shards}, model.init(jax.random.PRNGKey(int(seed))),
                   stochastic_loss=stochastic_loss, name=name or f"{model.name}-classification",
                   config={**model.config, "batch_size": int(batch_size), "l2": l2,
                           "init_seed": int(seed), "shard_size": m})
