"""The ``devices=`` argument of :func:`bluefog_sim.run`: agents split over local devices."""

from __future__ import annotations

import jax

__all__ = ["check_devices"]


def check_devices(devices, size: int):
    """``devices`` as a tuple of distinct :class:`jax.Device` whose count divides ``size``,
    or ``None`` (one device, the default).

    The agents are split into ``len(devices)`` contiguous blocks of ``size / len(devices)``
    (a ``NamedSharding`` over a one-axis mesh, as in ``jax.sharding``'s documentation).

    Raises
    ------
    TypeError
        If ``devices`` is not a sequence of ``jax.Device``.
    ValueError
        If it is empty, repeats a device, or its length does not divide ``size``.
    """
    if devices is None:
        return None
    if isinstance(devices, jax.Device):
        devices = [devices]
    try:
        devs = tuple(devices)
    except TypeError:
        raise TypeError(f"devices must be a sequence of jax.Device (e.g. jax.devices()); got "
                        f"{type(devices).__name__}.") from None
    bad = [d for d in devs if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(f"devices must be a sequence of jax.Device (e.g. jax.devices()); got an "
                        f"element {bad[0]!r} of type {type(bad[0]).__name__}.")
    if not devs:
        raise ValueError("devices must not be empty; pass e.g. devices=jax.devices() or omit it.")
    if len(set(devs)) != len(devs):
        raise ValueError(f"devices must be distinct; got {list(devs)}. Pass each device once.")
    if size % len(devs):
        raise ValueError(
            f"len(devices) must divide the number of agents ({size}) so every device holds the "
            f"same block; got {len(devs)} devices. Pass e.g. devices=jax.devices()[:k] with k a "
            f"divisor of {size}.")
    return devs
