"""Checks of hyperparameter values, against the caller's own argument names.

Each public constructor checks its arguments once, by the names its caller used
(``alpha`` for PyTorch, ``rho`` for Keras), before anything is built. Traced values
(inside ``jit``/``vmap``) cannot be inspected without a host round-trip, so only their
dtype is checked; concrete values are checked against a ``Range``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of allowed values (NaN is never allowed)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    required: bool = False  # ``None`` is refused (else it means the option is absent)

    def contains(self, arr: np.ndarray) -> bool:
        """Whether every element of ``arr`` lies in the interval."""
        bad_low = arr <= self.low if self.low_open else arr < self.low
        bad_high = arr >= self.high if self.high_open else arr > self.high
        return not (np.any(np.isnan(arr)) or np.any(bad_low) or np.any(bad_high))

    def __str__(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        return f"{lo}{self.low}, {self.high}{hi}"


ANY = Range()
NONNEGATIVE = Range(low=0.0)
POSITIVE = Range(low=0.0, low_open=True)
UNIT = Range(low=0.0, high=1.0)
UNIT_HALF_OPEN = Range(low=0.0, high=1.0, high_open=True)
# a learning rate must be given: ``None`` would leave the update unscaled and unsigned,
# a step up the gradient
LEARNING_RATE = Range(low=0.0, required=True)


def concrete(value: Any) -> np.ndarray | None:
    """Returns ``value`` as a NumPy array, or None if it is traced or a callable."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        return None


def check(api: str, **args: tuple[Any, Range | None]) -> None:
    """Checks each ``name=(value, range)``; raises ``ValueError`` naming ``api(name=...)``.

    A ``None`` value (an absent option) and a callable (a schedule) are skipped, unless
    the range is ``required``; a ``None`` range checks the dtype only. Text is refused
    (``TypeError``): NumPy would read ``"0.01"`` as a number, the update's arithmetic not.
    """
    for name, (value, allowed) in args.items():
        if value is None and allowed is not None and allowed.required:
            raise ValueError(
                f"`{api}({name}=None)`: {name} must be a number, an array or a schedule "
                f"(None would step up the gradient); e.g. {api}(1e-3)."
            )
        if isinstance(value, str | bytes):
            raise TypeError(
                f"`{api}({name}=...)` must be a number, an array or a schedule; got the "
                f"text {value!r} (write {name}={_unquoted(value)})."
            )
        if value is None or callable(value):
            continue
        _check_precision(api, name, value)
        arr = concrete(value)
        if allowed is not None and arr is not None and not allowed.contains(arr):
            raise ValueError(
                f"`{api}({name}=...)` must be in {allowed} and not NaN; got {value!r}."
            )


def _unquoted(text: str | bytes) -> str:
    """``text`` as the number it spells, or ``...`` when it spells none."""
    try:
        return repr(float(text))
    except ValueError:
        return "..."


def check_average_moves(api: str, decay: Any, initial_scale: Any) -> None:
    """Refuses ``decay=1`` with ``initial_scale=0`` (both concrete).

    With decay 1 the mean square never leaves ``initial_scale``; from 0 every update is
    ``g / eps`` (-1e8 times the gradient for the default eps). With ``initial_scale > 0``
    decay 1 is allowed: a fixed scale, SGD with step ``lr / (sqrt(initial_scale) + eps)``.
    """
    d, s = concrete(decay), concrete(initial_scale)
    if d is None or s is None or not np.any(d == 1.0) or not np.all(s == 0.0):
        return
    raise ValueError(
        f"`{api}(decay=1.0)` with initial_scale=0 keeps the mean square at 0 forever: every "
        "update would be g / eps. Use decay < 1, or initial_scale > 0 for a fixed scale."
    )


def _check_precision(api: str, name: str, value: Any) -> None:
    """Refuses a hyperparameter array in a float type narrower than float32.

    ``optax.inject_hyperparams`` casts hyperparameters to the params' dtype unless told
    otherwise; in bfloat16, ``decay=0.999`` becomes exactly 1.0 and the second moment
    never moves. Checked on the dtype alone, so traced values are checked too.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
        return
    if jnp.finfo(dtype).bits < 32:
        raise ValueError(
            f"`{api}({name}=...)` is a {jnp.dtype(dtype).name} array; hyperparameters need at "
            "least float32 (in bfloat16, 0.999 rounds to 1.0). With optax.inject_hyperparams "
            "on low-precision params, pass hyperparam_dtype=jnp.float32."
        )


def is_zero(value: Any) -> bool:
    """True when ``value`` is concretely zero everywhere (so it can be skipped statically)."""
    arr = concrete(value)
    return arr is not None and bool(np.all(arr == 0))
