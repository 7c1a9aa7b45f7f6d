"""Input validation for every public entry point of bluefog-jax: one rule, one place.

Each check runs in plain Python, before anything is traced or sent, and returns the value in
its canonical type. The rule for the exception type is the same everywhere:

* ``TypeError``  - the value has the wrong *type* (a string where a number is expected, a
  ``bool`` where an ``int`` is expected, a float where an int is expected);
* ``ValueError`` - the type is right but the *value* is not allowed (negative, non-finite,
  out of range, not one of the choices).

Every message names the argument, what was expected, what was received and the fix. The
optional ``where`` prefix names the public function that was called (``"dgd: lr must ..."``),
so a user who called a factory sees which one refused.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "MAX_SEED",
    "MAX_STEPS",
    "check_positive_int",
    "check_nonnegative_int",
    "check_seed",
    "check_steps",
    "check_real",
    "check_positive_float",
    "check_unit_interval",
    "check_choice",
    "check_bool",
    "check_callable",
    "check_optional_bool",
]

#: Seeds are folded into 32-bit PRNG keys (``jax.random.PRNGKey``).
MAX_SEED = 2**32 - 1
#: The step counter lives in an int32 inside every algorithm state.
MAX_STEPS = 2**31 - 1


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_positive_int(value, name: str, *, minimum: int = 1, maximum: int | None = None,
                       where: str | None = None, why_max: str = "") -> int:
    """Return ``value`` as ``int`` if it is an integer in ``[minimum, maximum]``, else raise.

    Booleans are refused (``True`` is an ``int`` in Python, but never a size).
    """
    p = _prefix(where)
    if not _is_int(value):
        raise TypeError(
            f"{p}{name} must be an integer >= {minimum}; got {value!r} of type "
            f"{type(value).__name__}. Pass a plain int, e.g. {name}={max(minimum, 8)}."
        )
    if value < minimum:
        raise ValueError(
            f"{p}{name} must be an integer >= {minimum}; got {value}. "
            f"Use {name}={minimum} or larger."
        )
    if maximum is not None and value > maximum:
        raise ValueError(
            f"{p}{name} must be an integer <= {maximum}{' (' + why_max + ')' if why_max else ''}; "
            f"got {value}. Use a smaller {name}."
        )
    return int(value)


def check_nonnegative_int(value, name: str, *, where: str | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer ``>= 0``, else raise."""
    return check_positive_int(value, name, minimum=0, where=where)


def check_seed(value, name: str = "seed", *, where: str | None = None) -> int:
    """Return a PRNG seed as ``int`` if it is an integer in ``[0, 2**32 - 1]``, else raise."""
    p = _prefix(where)
    if not _is_int(value):
        raise TypeError(
            f"{p}{name} must be an int; got {value!r} of type {type(value).__name__}. Pass an "
            f"int in [0, {MAX_SEED}], e.g. {name}=0."
        )
    if not 0 <= int(value) <= MAX_SEED:
        raise ValueError(
            f"{p}{name} must be an int in [0, {MAX_SEED}] (it seeds a 32-bit PRNG key); got "
            f"{value}. Pass e.g. {name}=0."
        )
    return int(value)


def check_steps(value, name: str = "steps", *, where: str | None = None) -> int:
    """Return a number of steps in ``[1, 2**31 - 1]`` (the int32 step counter's range)."""
    return check_positive_int(value, name, maximum=MAX_STEPS, where=where,
                              why_max="the step counter is an int32")


def check_real(value, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, where: str | None = None,
               example: str | None = None) -> float:
    """Return ``value`` as a finite ``float`` within the given bounds, else raise.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``. NaN and infinities are
    always refused: a non-finite hyper-parameter silently turns every state into NaN.
    """
    p = _prefix(where)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    rng = f"{lo}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{hi}"
    fix = f" Pass e.g. {example}." if example else ""
    if isinstance(value, bool) or not isinstance(value, (Real, np.integer, np.floating)):
        raise TypeError(
            f"{p}{name} must be a finite real number in {rng}; got {value!r} of type "
            f"{type(value).__name__}.{fix}"
        )
    v = float(value)
    bad = (not math.isfinite(v)
           or (low is not None and (v <= low if low_open else v < low))
           or (high is not None and (v >= high if high_open else v > high)))
    if bad:
        raise ValueError(f"{p}{name} must be a finite real number in {rng}; got {v}.{fix}")
    return v


def check_positive_float(value, name: str = "lr", *, where: str | None = None) -> float:
    """Return ``value`` as ``float`` if it is finite and ``> 0`` (step sizes), else raise."""
    p = _prefix(where)
    call = f"{where}({name}=0.1)" if where else f"{name}=0.1"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{p}{name} must be a positive finite float; got {value!r} of type "
            f"{type(value).__name__}. Pass e.g. {call}."
        )
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{p}{name} must be a positive finite float; got {v}. Pass e.g. {call}.")
    return v


def check_unit_interval(value, name: str, *, where: str | None = None) -> float:
    """Return ``value`` as ``float`` if it lies in ``[0, 1)`` (momentum, decay), else raise."""
    p = _prefix(where)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{p}{name} must be a float in [0, 1); got {value!r} of type {type(value).__name__}."
        )
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(
            f"{p}{name} must be in [0, 1); got {v}. Use e.g. {name}=0.9 for heavy-ball momentum "
            f"or {name}=0.0 to switch it off."
        )
    return v


def check_choice(value, name: str, choices: Iterable, *, where: str | None = None):
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable / incomparable
        ok = False
    if not ok:
        raise ValueError(
            f"{_prefix(where)}{name} must be one of {', '.join(repr(c) for c in choices)}; got "
            f"{value!r}."
        )
    return value


def check_bool(value, name: str, *, where: str | None = None) -> bool:
    """Return ``value`` if it is a ``bool``, else raise ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{_prefix(where)}{name} must be True or False; got {value!r} of type "
            f"{type(value).__name__}."
        )
    return bool(value)


def check_optional_bool(value, name: str, *, where: str | None = None, none_means: str = "auto"):
    """Return ``value`` if it is ``True``, ``False`` or ``None``, else raise ``TypeError``."""
    if value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{_prefix(where)}{name} must be True, False or None ({none_means}); got {value!r}."
        )
    return bool(value)


def check_callable(value, name: str, signature: str, *, where: str | None = None) -> Callable:
    """Return ``value`` if it is callable, else raise ``TypeError`` naming the signature."""
    if not callable(value):
        raise TypeError(
            f"{_prefix(where)}{name} must be a callable {signature}; got "
            f"{type(value).__name__}."
        )
    return value

