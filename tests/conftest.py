"""Shared pytest configuration: float64 is enabled per test where exactness needs it."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402 (after the environment above, which JAX reads at import)


@pytest.fixture
def x64():
    """Float64 for the duration of one test (``jax.enable_x64``), for tests whose oracle is
    exact to 1e-10 or tighter."""
    import jax

    with jax.enable_x64(True):
        yield
