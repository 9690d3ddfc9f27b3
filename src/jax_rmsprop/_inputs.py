"""Checks of training arguments, shared by ``fit`` and training sweeps, before compiling.

Each error names the argument as the user wrote it: ``fit(batch_size=...)``, or
``Task(batch_size=...)`` for a sweep (``call`` says which).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from typing import Any

import jax
import numpy as np

from ._host import fetch
from ._model import FUNCTIONAL, NNX, PURE, Model


def length(name: str, data: Any, call: str = "fit") -> int:
    """The common leading axis of ``data``'s leaves; ``ValueError`` naming ``name`` if none."""
    sizes: set[tuple[int, ...]] = {getattr(a, "shape", ())[:1] for a in jax.tree.leaves(data)}
    if len(sizes) == 1 and () not in sizes:  # (the common case, without the leaves' paths)
        return int(next(iter(sizes))[0])
    return _length_error(name, data, call)


def _length_error(name: str, data: Any, call: str) -> int:
    """``length``'s refusal, naming the leaves at fault by their paths."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"`{call}({name}=...)` needs at least one array.")
    scalars = [p for p, a in leaves if not hasattr(a, "shape")]
    if scalars:  # a Python list of rows is a pytree of numbers, not an array
        where = jax.tree_util.keystr(scalars[0]) or "<root>"
        raise ValueError(
            f"`{call}({name}=...)` must be arrays (NumPy or JAX), or a tuple/dict of them; "
            f"{where} is a Python {type(dict(leaves)[scalars[0]]).__name__} among "
            f"{len(scalars)} such leaves (a list of rows? convert it with np.asarray)."
        )
    sizes = {jax.tree_util.keystr(p) or "<root>": np.shape(a)[:1] for p, a in leaves}
    if len(set(sizes.values())) != 1 or () in sizes.values():
        raise ValueError(
            f"`{call}({name}=...)`: every array needs the same leading (example) axis; got "
            + ", ".join(f"{k}: {v[0] if v else 'a scalar'}" for k, v in sizes.items())
        )
    return int(next(iter(sizes.values()))[0])


def check_tx(tx: Any, call: str = "fit") -> None:
    """Refuses a ``tx`` that is not an optax transformation (a constructor not called)."""
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return
    name = getattr(tx, "__name__", None)
    if callable(tx) and name is not None:
        raise TypeError(
            f"`{call}(tx=...)` must be an optax GradientTransformation; got the function "
            f"{name}: call it, e.g. {name}(1e-3)."
        )
    raise TypeError(
        f"`{call}(tx=...)` must be an optax GradientTransformation (with init and update); "
        f"got {type(tx).__name__}."
    )


def check_data(
    data, validation, epochs, batch_size, call: str = "fit", check_finite: bool = True
) -> int:
    """Data, validation, ``epochs`` and ``batch_size``; returns the number of examples.

    With ``check_finite=False`` NaN and infinity in the data are the caller's to handle
    (a loss that masks them).
    """
    n = length("data", data, call)
    if n == 0:
        raise ValueError(f"`{call}(data=...)` holds no examples (its leading axis is 0).")
    if validation is not None and length("validation", validation, call) == 0:
        raise ValueError(f"`{call}(validation=...)` holds no examples (its leading axis is 0).")
    if validation is not None:
        want: Any = jax.tree.structure(data)  # (Any: PyTreeDef is opaque to mypy)
        if jax.tree.structure(validation) != want:
            raise ValueError(f"`{call}(validation=...)` must have the structure of `data`.")
    if check_finite:
        finite({"data": data, "validation": validation}, call)
    if not isinstance(epochs, int | np.integer) or epochs < 1:
        raise ValueError(f"`fit(epochs=...)` must be a positive int; got {epochs!r}.")
    if not isinstance(batch_size, int | np.integer) or not 1 <= batch_size <= n:
        raise ValueError(
            f"`{call}(batch_size=...)` must be an int in [1, {n}] (the number of examples); "
            f"got {batch_size!r}."
        )
    return n


@jax.jit
def _all_finite(a: jax.Array) -> jax.Array:
    return jax.numpy.isfinite(a).all()


# id -> (weak reference, finite): a JAX array never changes, so a fit called again on
# the same data (one epoch per call, in a loop) checks it once
_FINITE: dict[int, tuple[weakref.ref, bool]] = {}


def _known(a: jax.Array) -> bool | None:
    """Whether a JAX array checked before is finite; ``None`` if not checked while it lives."""
    got = _FINITE.get(id(a))
    return got[1] if got is not None and got[0]() is a else None


def _remember(a: jax.Array, ok: bool) -> None:
    i = id(a)
    try:
        ref = weakref.ref(a, lambda _: _FINITE.pop(i, None))
    except TypeError:  # (an array type without weak references: not remembered)
        return
    _FINITE[i] = (ref, ok)


def finite(named: dict[str, Any], call: str = "fit") -> None:
    """Refuses NaN or infinity in the floating arrays of ``named``'s trees (``None``: none).

    ``named`` maps each argument's name to its data. One reduction per array (NumPy's
    for host arrays, one compiled call for device arrays, all of whose flags come back
    in one wait, none for arrays checked before); the rows are looked for, and the
    array and row named, only in an array that has one.
    """
    leaves = [(n, i, a) for n, t in named.items() for i, a in enumerate(jax.tree.leaves(t))]
    pending = {}
    for n, i, a in leaves:
        if not _inexact(a.dtype):
            continue
        if isinstance(a, np.ndarray):
            ok: bool | None = bool(np.isfinite(a).all())
        elif (ok := _known(a)) is None:
            pending[n, i] = _all_finite(a)
            continue
        if not ok:
            _refuse(named[n], i, a, n, call)
    for (n, i), ok_ in fetch(pending).items() if pending else ():
        a = jax.tree.leaves(named[n])[i]
        _remember(a, bool(ok_))
        if not ok_:
            _refuse(named[n], i, a, n, call)


def _refuse(data: Any, i: int, a: Any, name: str, call: str) -> None:
    """``finite``'s ``ValueError`` for leaf ``i`` of ``data``, naming it and its first bad row."""
    path = jax.tree_util.tree_leaves_with_path(data)[i][0]
    rows = jax.numpy.isfinite(a).reshape(a.shape[0], int(np.prod(a.shape[1:])))
    bad = ~np.asarray(rows.all(axis=1))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"`{call}({name}=...)`{jax.tree_util.keystr(path)} holds NaN or infinity: "
            f"{int(bad.sum())} rows, the first is row {row}; training on it would give "
            "NaN losses. Drop or impute those rows first, or pass check_finite=False "
            "if the loss handles them (e.g. masks NaN with jnp.where)."
        )


# how each kind of model calls its loss: (the call as text, positional arguments, keywords)
_CALLS = {
    PURE: ("loss(params, batch)", 2, {}),
    NNX: ("loss(model, batch)", 2, {}),
    FUNCTIONAL: ("loss(params, state, batch, *, key, training)", 3, {"key": 0, "training": 1}),
}


def check_loss(model: Model, call: str = "fit") -> None:
    """Refuses a loss that cannot take the call its model form makes, before any tracing.

    Read from ``inspect.signature`` (``*args``, keywords with defaults and
    ``functools.partial`` bind as they would); a loss whose signature cannot be read is
    left to the call itself.
    """
    try:
        why = _loss_refusal(model.kind, model.loss)
    except TypeError:  # (an unhashable loss: checked without the cache)
        why = _loss_refusal.__wrapped__(model.kind, model.loss)
    if why is not None:
        raise ValueError(f"`{call}(loss=...)` is called as {why}")


@functools.lru_cache(maxsize=256)
def _loss_refusal(kind: str, loss: Any) -> str | None:
    """Why ``loss`` cannot take ``kind``'s call (the message's tail), or ``None``."""
    try:
        sig = inspect.signature(loss)
    except (TypeError, ValueError):  # (a builtin or an object without a readable one)
        return None
    text, positional, keywords = _CALLS[kind]
    try:
        sig.bind(*range(positional), **keywords)
    except TypeError as err:
        name = getattr(loss, "__name__", type(loss).__name__)
        hint = ""
        required = [
            p for p in sig.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]  # fmt: skip
        if kind != FUNCTIONAL and len(required) > 2:
            hint = " (the batch is one argument: def loss(params, batch): x, y = batch)"
        return f"{text}; {name}{sig} cannot be: {err}{hint}."
    return None


@functools.lru_cache(maxsize=64)
def _inexact(dtype: Any) -> bool:
    return bool(jax.numpy.issubdtype(dtype, jax.numpy.inexact))


def loss_output(model: Model, params, state, data, batch_size: int, call: str = "fit"):
    """Traces one batch's loss: ``(loss dtype, metric names)``, checked to be scalars.

    The batch is ``data``'s first ``batch_size`` examples. Traced once per model and
    signature (shapes and dtypes of the arguments).
    """
    leaves, treedef = jax.tree.flatten(data)
    batch = treedef, tuple(((int(batch_size), *np.shape(a)[1:]), _dtype(a)) for a in leaves)
    dtype, metrics = _traced(model, _signature(params), _signature(state), batch)
    if isinstance(dtype, str):  # the loss's output shape, not a scalar
        raise ValueError(f"`{call}(loss=...)` must return a scalar for one batch; got {dtype}.")
    for name, shape in metrics:
        if shape != ():
            raise ValueError(
                f"`{call}(loss=...)`: metric {name!r} must be a scalar per batch; got {shape}."
            )
        if name == "loss" or name.startswith("val_"):
            raise ValueError(f"`{call}(loss=...)`: a metric may not be named {name!r}.")
    return dtype, tuple(name for name, _ in metrics)


def _signature(tree: Any) -> tuple:
    """A hashable description of ``tree``: its structure and each leaf's shape and dtype."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(a)), _dtype(a)) for a in leaves)


def _dtype(a: Any) -> Any:
    return a.dtype if hasattr(a, "dtype") else np.result_type(a)


@functools.lru_cache(maxsize=64)
def _traced(model: Model, params_sig: tuple, state_sig: tuple, batch_sig: tuple):
    """``(dtype or shape text, ((metric, shape), ...))`` of the loss for these signatures."""

    def abstract(sig):
        treedef, leaves = sig
        return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])

    key = jax.random.key(0)
    f, (_, metrics) = jax.eval_shape(
        lambda p, s, b: model.apply(p, s, b, key, True),
        abstract(params_sig),
        abstract(state_sig),
        abstract(batch_sig),
    )
    shape = getattr(f, "shape", type(f).__name__)
    described = tuple((name, getattr(v, "shape", type(v).__name__)) for name, v in metrics.items())
    return (np.dtype(f.dtype) if shape == () else str(shape)), described


def direction(monitor: str, mode: str, call: str = "fit") -> float:
    """+1 if lower ``monitor`` is better, -1 if higher (Keras's ``mode``, ``auto`` by name)."""
    if mode == "min":
        return 1.0
    if mode == "max":
        return -1.0
    if mode != "auto":
        raise ValueError(f"`{call}(mode=...)` must be 'auto', 'min' or 'max'; got {mode!r}.")
    name = monitor.removeprefix("val_")
    if "loss" in name or "error" in name:
        return 1.0
    if any(w in name for w in ("acc", "auc", "precision", "recall", "f1")):
        return -1.0
    raise ValueError(
        f"`{call}(mode='auto')` cannot tell whether {monitor!r} should go down or up: pass "
        "mode='min' or mode='max'."
    )
