"""Compressor throughput (simulator side): compress + decompress of one float32 vector.

``time_roundtrip`` is one jitted ``decompress(compress(x))``; ``track_gigabytes_per_second``
is the vector's bytes divided by the median of 5 such calls (warm-up excluded), the
throughput through the compressor. ``track_wire_fraction`` is the payload's size relative to the dense vector (what a
neighbor exchange saves on the wire).
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bluefog import compression as C

COMPRESSORS = {"top_k_1pct": lambda: C.top_k(0.01), "random_k_1pct": lambda: C.random_k(0.01),
               "int8": lambda: C.blockwise(8, 1024), "int4": lambda: C.blockwise(4, 1024),
               "qsgd16": lambda: C.qsgd(16), "sign": C.scaled_sign,
               "bf16": lambda: C.cast("bfloat16")}
SIZES = [100_000, 10_000_000]


class Roundtrip:
    params = (list(COMPRESSORS), SIZES)
    param_names = ["compressor", "floats"]
    timeout = 300

    def setup(self, name, d):
        comp = COMPRESSORS[name]()
        self.comp = comp
        self.x = jnp.asarray(np.random.default_rng(0).standard_normal(d), jnp.float32)
        self.key = jax.random.PRNGKey(0)
        self.fn = jax.jit(lambda x, k: comp.decompress(comp.compress(x, k), d, jnp.float32))
        jax.block_until_ready(self.fn(self.x, self.key))

    def time_roundtrip(self, name, d):
        jax.block_until_ready(self.fn(self.x, self.key))

    def track_gigabytes_per_second(self, name, d):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(self.fn(self.x, self.key))
            times.append(time.perf_counter() - t0)
        return 4 * d / statistics.median(times) / 1e9

    track_gigabytes_per_second.unit = "GB/s"

    def track_wire_fraction(self, name, d):
        return C.payload_bits(self.comp, d) / (32 * d)

    track_wire_fraction.unit = "fraction of dense bytes"
