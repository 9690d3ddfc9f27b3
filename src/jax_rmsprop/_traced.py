"""Optimizers as values: equal configurations share a program, numbers are traced.

``Init`` and ``Update`` are the ``init``/``update`` functions of one RMSProp
configuration. They compare and hash by value (``fit(..., rmsprop(1e-2))`` twice
compiles once when ``tx`` is a static argument), and ``Traced`` hands one to ``jit`` as
a pytree whose leaves are its numbers (learning rate, decay, momentum, ...): a loop over
learning rates runs one program (as optimistix's ``closure_to_pytree`` does for
closures). ``jit_traced`` is ``jax.jit`` for a function of a ``tx`` argument.

``eps`` stays static (its guards are chosen at trace time from its value), as do
schedules (functions) and every other transformation (an optax chain's functions are
closures: compared by identity, as ``jax.jit`` compares them).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._conventions import Derived, Hyperparams, RMSPropState, Variant
from ._transform import init, update


def _value_key(x: Any) -> Any:
    """A hashable stand-in for one hyperparameter.

    Its value for Python and NumPy scalars (with the type, which decides the arithmetic),
    else the object itself (schedules are compared as functions; arrays by identity).
    """
    if x is None or isinstance(x, bool | int | float | complex | str):
        return (type(x).__name__, x)
    if isinstance(x, np.generic):
        return (x.dtype.name, x.item())
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return ("obj", x)


class _ByValue:
    """``init``/``update`` of one configuration, equal to those of an equal configuration.

    Equal optimizers then share compiled programs: ``jax.jit`` hashes a static ``tx`` by
    its functions, and ``fit(..., rmsprop(1e-2))`` called twice compiles once.
    """

    __slots__ = ("_key", "__weakref__")  # (jax.jit(tx.update) keeps a weak reference)
    _key: tuple

    def _fields(self) -> tuple:
        raise NotImplementedError

    @property
    def key(self) -> tuple:
        try:
            return self._key
        except AttributeError:
            *static, hp = self._fields()
            self._key = (type(self).__name__, *static, tuple(_value_key(v) for v in hp))
            return self._key

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.key == self.key  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.key)


class Init(_ByValue):
    __slots__ = ("variant", "hp")

    def __init__(self, variant: Variant, hp: Hyperparams):
        self.variant, self.hp = variant, hp

    def _fields(self) -> tuple:
        return self.variant, self.hp

    def __call__(self, params: Any) -> RMSPropState:
        return init(self.variant, self.hp, params)


class Update(_ByValue):
    __slots__ = ("api", "variant", "hp", "derived", "flat")  # flat: ``Traced``'s, kept
    flat: tuple  # (set by ``Traced.tree_flatten``)

    def __init__(self, api: str, variant: Variant, hp: Hyperparams, derived: Derived):
        self.api, self.variant, self.hp, self.derived = api, variant, hp, derived

    def _fields(self) -> tuple:
        return self.api, self.variant, self.hp

    def __call__(self, grads, state: RMSPropState, params=None, **extra):
        return update(self.api, self.variant, self.hp, self.derived, grads, state, params, **extra)


class _Static:
    """A value in a pytree's static part: equal and hashed by ``_value_key``."""

    __slots__ = ("value", "key")

    def __init__(self, value: Any):
        self.value, self.key = value, _value_key(value)

    def __eq__(self, other: object) -> bool:
        return type(other) is _Static and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


_TRACED = "traced"  # the mark of a field that travels as a leaf
_SCALARS: dict[tuple, Any] = {}


def device_scalar(v: Any) -> Any:
    """A Python number as the device scalar ``jit`` makes of it (weakly typed), made once.

    ``jit`` converts a Python number argument at every call (~3 us each); the array has
    the same abstract value, so the same program runs on the same number. Other values
    are returned as they are.
    """
    if type(v) not in (int, float) or jax.process_count() > 1:
        return v
    key = (type(v), v.hex() if isinstance(v, float) else v, jax.config.read("jax_enable_x64"))
    if (got := _SCALARS.get(key)) is None:
        try:
            got = jnp.asarray(v)
        except OverflowError:  # (an int beyond the integer type: as jit would say)
            return v
        if isinstance(got, jax.core.Tracer):  # (while tracing: left to jit)
            return v
        if len(_SCALARS) > 1024:
            _SCALARS.clear()
        _SCALARS[key] = got
    return got


_FIELDS = Hyperparams._fields + Derived._fields


def _is_number(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int | float | jax.Array):
        return True
    return isinstance(x, np.ndarray | np.generic) and np.issubdtype(x.dtype, np.number)


@jax.tree_util.register_pytree_node_class
class Traced:
    """An optimizer as a ``jit`` argument: its numbers are the leaves, the rest is static.

    ``Traced(tx).tx`` is ``tx``. For a transformation made here (``rmsprop``,
    ``scale_by_rms``, ``compat``) the leaves are the numeric hyperparameters but ``eps``,
    so configurations that differ only in them share one compiled program; a Python
    float enters as a weakly typed scalar and is cast to each leaf's dtype exactly as a
    constant would be (``1 - decay`` and ``-lr`` were formed in Python at construction,
    see ``Derived``), so the numbers are the same bit for bit. Any other transformation
    is static as a whole.
    """

    __slots__ = ("tx",)

    def __init__(self, tx: Any):
        self.tx = tx

    def tree_flatten(self) -> tuple[list, Any]:
        tx = self.tx
        ini, upd = getattr(tx, "init", None), getattr(tx, "update", None)
        if not (isinstance(ini, Init) and isinstance(upd, Update) and ini.hp is upd.hp):
            return [], (None, _Static(tx))
        x64 = jax.config.read("jax_enable_x64")
        flat = getattr(upd, "flat", None)  # (every compiled call flattens its tx)
        if flat is not None and flat[0] is type(tx) and flat[1] == x64:
            return list(flat[2]), flat[3]
        leaves, aux = self._flatten(tx, upd)
        if any(isinstance(v, jax.core.Tracer) for v in leaves):
            return leaves, aux
        leaves = [device_scalar(v) for v in leaves]
        if jax.process_count() > 1 or not any(type(v) in (int, float) for v in leaves):
            upd.flat = (type(tx), x64, tuple(leaves), aux)  # (not while tracing)
        return leaves, aux

    @staticmethod
    def _flatten(tx: Any, upd: Update) -> tuple[list, Any]:
        leaves: list = []
        marks: list = []
        for name, v in zip(_FIELDS, (*upd.hp, *upd.derived)):
            if name != "eps" and _is_number(v):
                leaves.append(v)
                marks.append(_TRACED)
            else:
                marks.append(_Static(v))
        return leaves, (type(tx), (upd.api, upd.variant, tuple(marks)))

    @classmethod
    def tree_unflatten(cls, aux: Any, leaves: Any) -> Traced:
        kind, rest = aux
        if kind is None:
            return cls(rest.value)
        api, variant, marks = rest
        it = iter(leaves)
        values = [next(it) if m == _TRACED else m.value for m in marks]
        hp = Hyperparams(*values[: len(Hyperparams._fields)])
        derived = Derived(*values[len(Hyperparams._fields) :])
        return cls(kind(Init(variant, hp), Update(api, variant, hp, derived)))


def jit_traced(
    fun: Callable,
    *,
    static_argnames: tuple[str, ...] = (),
    donate_argnames: tuple[str, ...] = (),
    jit: Callable = jax.jit,
) -> Callable:
    """``jit(fun, ...)`` for a ``fun`` with an argument ``tx``, passed as ``Traced``.

    A loop over learning rates (``run``, ``fit``) then compiles once.
    """
    sig = inspect.signature(fun)
    at = list(sig.parameters).index("tx")  # its position, when passed by position

    def swap(args, kwargs, change):
        if len(args) > at:
            return (*args[:at], change(args[at]), *args[at + 1 :]), kwargs
        return args, {**kwargs, "tx": change(kwargs["tx"])}

    def unwrapped(*args, **kwargs):
        args, kwargs = swap(args, kwargs, lambda t: t.tx)
        return fun(*args, **kwargs)

    unwrapped.__signature__ = sig  # type: ignore[attr-defined]  # (jit maps names by it)
    compiled = jit(unwrapped, static_argnames=static_argnames, donate_argnames=donate_argnames)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        args, kwargs = swap(args, kwargs, Traced)
        return compiled(*args, **kwargs)

    def lower(*args, **kwargs):
        args, kwargs = swap(args, kwargs, Traced)
        return compiled.lower(*args, **kwargs)

    call.lower = lower  # type: ignore[attr-defined]  # as a jitted function's
    call._cache_size = compiled._cache_size  # type: ignore[attr-defined]  # (programs, for tests)
    return call
