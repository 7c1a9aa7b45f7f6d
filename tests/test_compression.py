"""Compressors against their defining properties (literature bounds, exact identities).

Oracles: Monte Carlo means for unbiasedness (tolerance from the sample's own standard error),
the contraction bound of top-k (Stich et al. 2018), QSGD's variance bound (Alistarh et al.
2017, Lemma 3.1), the per-entry error of round-to-nearest, and the telescoping identity of
error feedback.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog import compression as C

D = 257  # not a multiple of any block size or of 8


def _x(seed=0, d=D):
    return jax.random.normal(jax.random.PRNGKey(seed), (d,), jnp.float32) * 3.0


ALL = [C.top_k(0.1), C.random_k(0.1), C.random_k(0.2, unbiased=False), C.cast("bfloat16"),
       C.cast("float16"), C.blockwise(8, 64), C.blockwise(4, 32), C.blockwise(8, 64, stochastic=True),
       C.qsgd(8), C.scaled_sign(), C.chain(C.top_k(0.1), C.blockwise(8, 16)),
       C.chain(C.random_k(0.25), C.qsgd(4))]


@pytest.mark.parametrize("comp", ALL, ids=lambda c: c.name)
def test_roundtrip_is_jittable_vmappable_and_shape_static(comp):
    x = _x()
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    xs = jnp.stack([_x(s) for s in range(4)])
    payload = jax.jit(jax.vmap(comp.compress))(xs, keys)
    out = jax.vmap(lambda p: comp.decompress(p, D, jnp.float32))(payload)
    assert out.shape == (4, D) and out.dtype == jnp.float32
    single = comp.decompress(comp.compress(x, keys[0]), D, jnp.float32)
    np.testing.assert_allclose(out[0], single, rtol=1e-6, atol=1e-6)
    bits = C.payload_bits(comp, D)
    assert 0 < bits <= 32 * D + 64 * 40  # never more than dense float32 plus a few scales/keys


@pytest.mark.parametrize("comp,bits", [
    (C.top_k(0.1), 26 * 64),                     # k = 26 values + 26 int32 indices
    (C.random_k(0.1), 26 * 32 + 64),             # 26 values + one 64-bit key
    (C.cast("bfloat16"), 16 * D),
    (C.blockwise(8, 64), 8 * 320 + 32 * 5),      # padded to 5 blocks of 64
    (C.blockwise(4, 32), 4 * 288 + 32 * 9),
    (C.qsgd(8), 32 + 8 * D),
    (C.scaled_sign(), 32 + 8 * 33),              # ceil(257 / 8) bytes of signs
])
def test_wire_bits(comp, bits):
    assert C.payload_bits(comp, D) == bits


@pytest.mark.parametrize("comp", [C.random_k(0.1), C.blockwise(8, 64, stochastic=True),
                                  C.blockwise(4, 32, stochastic=True), C.qsgd(4),
                                  C.chain(C.random_k(0.25), C.qsgd(4))], ids=lambda c: c.name)
def test_unbiased_compressors_have_mean_x(comp):
    assert comp.unbiased
    x = _x(1)
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    samples = jax.vmap(lambda k: comp.decompress(comp.compress(x, k), D, jnp.float32))(keys)
    mean = np.asarray(samples, np.float64).mean(0)
    se = np.asarray(samples, np.float64).std(0) / np.sqrt(n)
    z = np.abs(mean - np.asarray(x)) / np.maximum(se, 1e-6)
    assert np.mean(z < 4.5) > 0.995, f"max z {z.max():.1f}"


def test_top_k_is_contractive_with_delta_k_over_d():
    for seed in range(20):
        x = _x(seed)
        err = C.roundtrip(C.top_k(0.1), x, jax.random.PRNGKey(0)) - x
        k = 26
        assert float(jnp.sum(err ** 2)) <= (1 - k / D) * float(jnp.sum(x ** 2)) + 1e-4
        kept = np.flatnonzero(np.asarray(C.roundtrip(C.top_k(0.1), x, jax.random.PRNGKey(0))))
        np.testing.assert_array_equal(np.sort(kept), np.sort(np.argsort(-np.abs(np.asarray(x)))[:k]))


def test_qsgd_variance_bound():
    s = 4
    x = _x(2)
    keys = jax.random.split(jax.random.PRNGKey(11), 3000)
    comp = C.qsgd(s)
    samples = jax.vmap(lambda k: comp.decompress(comp.compress(x, k), D, jnp.float32))(keys)
    var = float(jnp.mean(jnp.sum((samples - x) ** 2, axis=1)))
    bound = min(D / s**2, np.sqrt(D) / s) * float(jnp.sum(x ** 2))
    assert var <= bound


def test_round_to_nearest_error_is_at_most_half_a_step():
    x = _x(4)
    out = C.roundtrip(C.blockwise(8, 64), x, jax.random.PRNGKey(0))
    xb = np.pad(np.asarray(x), (0, 320 - D)).reshape(5, 64)
    step = np.abs(xb).max(1) / 127
    err = np.pad(np.abs(np.asarray(out - x)), (0, 320 - D)).reshape(5, 64)
    assert np.all(err <= step[:, None] / 2 + 1e-6)


def test_scaled_sign_is_the_l1_scaled_sign():
    x = _x(5)
    out = np.asarray(C.roundtrip(C.scaled_sign(), x, jax.random.PRNGKey(0)))
    expected = np.abs(np.asarray(x)).mean() * np.where(np.asarray(x) >= 0, 1, -1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_error_feedback_loses_nothing():
    """sum_t x_hat_t = sum_t x_t - e_T exactly (the memory telescopes)."""
    ef = C.error_feedback(C.scaled_sign())
    tree = {"w": _x(0, 40).reshape(8, 5), "b": _x(1, 3)}
    e = ef.init(tree)
    sent = jax.tree_util.tree_map(jnp.zeros_like, tree)
    total = jax.tree_util.tree_map(jnp.zeros_like, tree)
    for t in range(30):
        x = jax.tree_util.tree_map(lambda a, t=t: a * np.cos(t), tree)
        _, x_hat, e = ef.compress(x, e, jax.random.PRNGKey(t))
        sent = jax.tree_util.tree_map(jnp.add, sent, x_hat)
        total = jax.tree_util.tree_map(jnp.add, total, x)
    for k in tree:
        np.testing.assert_allclose(sent[k] + e[k], total[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: C.top_k(0.0), ValueError, r"top_k: ratio must be a finite real number in \(0, 1\]"),
    (lambda: C.top_k("1%"), TypeError, r"top_k: ratio must be a finite real number"),
    (lambda: C.random_k(1.5), ValueError, r"random_k: ratio must be a finite real number in"),
    (lambda: C.blockwise(6), ValueError, r"blockwise: bits must be one of 8, 4; got 6"),
    (lambda: C.blockwise(4, 33), ValueError, r"blockwise: block must be even for 4-bit codes"),
    (lambda: C.qsgd(300), ValueError, r"qsgd: levels must be an integer <= 127 \(levels travel as int8\)"),
    (lambda: C.cast("int8"), ValueError, r"cast: dtype must be one of 'float16', 'bfloat16'"),
    (lambda: C.chain(C.top_k(0.1), "int8"), TypeError, r"chain: second must be a bluefog.compression.Compressor"),
    (lambda: C.error_feedback(None), TypeError, r"error_feedback: compressor must be"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("spec,name", [
    ("topk:0.01", "top_k(0.01)"), ("randomk:0.1", "random_k(0.1)"),
    ("int8", "blockwise(8 bits, block=256)"), ("int4:64", "blockwise(4 bits, block=64)"),
    ("qsgd", "qsgd(16)"), ("sign", "scaled_sign()"), ("bf16", "cast(bfloat16)"),
    ("topk:0.01+int8", "top_k(0.01)>blockwise(8 bits, block=256)"),
])
def test_parse(spec, name):
    assert C.parse(spec).name == name


@pytest.mark.parametrize("spec,exc,match", [
    ("zip", ValueError, r"parse: unknown compressor 'zip' in 'zip'; expected one of topk"),
    ("topk", ValueError, r"parse: 'topk' needs its ratio, e.g. 'topk:0.01'"),
    ("topk:x", ValueError, r"parse: the argument of 'topk:x' must be a number"),
    ("topk:0", ValueError, r"top_k: ratio must be a finite real number in \(0, 1\]"),
    ("sign:2", ValueError, r"parse: 'sign' takes no argument"),
    ("", TypeError, r"parse: spec must be a non-empty str"),
])
def test_parse_refuses(spec, exc, match):
    with pytest.raises(exc, match=match):
        C.parse(spec)


def _np_top_k(x, k):
    out = np.zeros_like(x)
    idx = np.argsort(-np.abs(x), kind="stable")[:k]
    out[idx] = x[idx]
    return out


def _np_blockwise(x, bits, block):
    levels = 2 ** (bits - 1) - 1
    xb = np.pad(x, (0, (-len(x)) % block)).reshape(-1, block)
    scale = np.abs(xb).max(axis=1, keepdims=True) / levels
    q = np.clip(np.round(xb / np.where(scale > 0, scale, 1.0)), -levels, levels)
    return (q * scale).reshape(-1)[:len(x)]


@pytest.mark.parametrize("comp,reference", [
    (C.top_k(0.1), lambda x: _np_top_k(x, 26)),
    (C.blockwise(8, 64), lambda x: _np_blockwise(x, 8, 64)),
    (C.blockwise(4, 32), lambda x: _np_blockwise(x, 4, 32)),
    (C.scaled_sign(), lambda x: np.abs(x).sum() / len(x) * np.where(x >= 0, 1.0, -1.0)),
    (C.cast("float16"), lambda x: x.astype(np.float16).astype(np.float32)),
    (C.chain(C.top_k(0.1), C.blockwise(8, 16)),
     lambda x: _chain_reference(x)),
], ids=lambda c: getattr(c, "name", ""))
def test_roundtrip_equals_a_numpy_reference(comp, reference):
    x = np.asarray(_x(7))
    got = np.asarray(C.roundtrip(comp, jnp.asarray(x), jax.random.PRNGKey(0)))
    np.testing.assert_allclose(got, reference(x.astype(np.float64)).astype(np.float32),
                               rtol=1e-6, atol=1e-6)


def _chain_reference(x):
    """top-26 entries, their values quantised in blocks of 16 in the order top-k sends them
    (descending magnitude)."""
    idx = np.argsort(-np.abs(x), kind="stable")[:26]
    out = np.zeros_like(x)
    out[idx] = _np_blockwise(x[idx], 8, 16)
    return out


@pytest.mark.parametrize("comp", [C.top_k(0.5), C.blockwise(8, 4), C.scaled_sign()],
                         ids=lambda c: c.name)
def test_non_float_input_is_refused(comp):
    with pytest.raises(TypeError, match=r"compressors take floating-point arrays .* dtype int32"):
        C.roundtrip(comp, {"w": jnp.ones(3), "steps": jnp.arange(8, dtype=jnp.int32)},
                    jax.random.PRNGKey(0))
