"""Checks of concrete hyperparameter values.

Traced values (inside ``jit``/``vmap``) cannot be inspected without a host
round-trip, so they are passed through unchecked; concrete values are checked
once, when the transformation is built, and a bad one raises ``ValueError``
naming the function and the argument.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def concrete(value) -> np.ndarray | None:
    """Returns ``value`` as a NumPy array, or None if it is traced or a callable."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        return None


def check_range(
    api: str,
    name: str,
    value,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raises ValueError unless every element of concrete ``value`` is in the range."""
    arr = concrete(value)
    if arr is None:
        return
    bad_low = arr <= low if low_open else arr < low
    bad_high = arr >= high if high_open else arr > high
    if np.any(np.isnan(arr)) or np.any(bad_low) or np.any(bad_high):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(
            f"`{api}({name}=...)` must be in {lo}{low}, {high}{hi} and not NaN; got {value!r}."
        )


def check_precision(api: str, name: str, value) -> None:
    """Raises ValueError for a hyperparameter array in a float type narrower than float32.

    ``optax.inject_hyperparams`` casts hyperparameters to the params' dtype unless told
    otherwise; in bfloat16, ``decay=0.999`` becomes exactly 1.0 and the second moment
    never moves. Checked on the dtype alone, so traced values are checked too.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None or callable(value) or not jnp.issubdtype(dtype, jnp.inexact):
        return
    if jnp.finfo(dtype).bits < 32:
        raise ValueError(
            f"`{api}({name}=...)` is a {jnp.dtype(dtype).name} array; hyperparameters need at "
            "least float32 (in bfloat16, 0.999 rounds to 1.0). With optax.inject_hyperparams "
            "on low-precision params, pass hyperparam_dtype=jnp.float32."
        )


def is_zero(value) -> bool:
    """True when ``value`` is concretely zero everywhere (so it can be skipped statically)."""
    arr = concrete(value)
    return arr is not None and not callable(value) and bool(np.all(arr == 0))
