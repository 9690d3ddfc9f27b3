"""Search spaces, shared by ``sweep`` and ``tune``: grids, distributions, random draws.

A space maps each hyperparameter (a keyword of the optimizer) to either a 1-D array of
values (a grid axis: ``sweep`` and ``tune`` train their Cartesian product) or an Optuna
distribution (``tune(samples=...)`` draws from it at random, ``tune(sampler=...)`` lets
an Optuna sampler propose): ``FloatDistribution(1e-4, 1e-1, log=True)``,
``IntDistribution``, ``CategoricalDistribution``. The log scale is the distribution's,
never guessed from the name.

Numeric values travel into the compiled program as traced hyperparameters; values that
change the program's structure (``centered``, ``nesterov``: booleans, strings) are static
and get one program each (Optuna's categorical choices only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._loop import apply

# The hyperparameters whose ranges are known, by the names the constructors take
_UNIT = ("decay", "rho", "alpha", "momentum", "b1", "b2", "beta1", "beta2")
_NONNEGATIVE = ("learning_rate", "lr", "eps", "epsilon", "weight_decay", "initial_scale")


def _arg(call: str) -> str:
    """The argument holding the space: ``sweep(grid=...)``, ``tune(space=...)``."""
    return "grid" if call == "sweep" else "space"


def is_distribution(value: Any) -> bool:
    """Whether ``value`` is an Optuna distribution (without importing Optuna)."""
    return type(value).__module__.startswith("optuna.distributions")


def _bounds(name: str) -> tuple[float, float]:
    if name in _UNIT:
        return 0.0, 1.0
    if name in _NONNEGATIVE:
        return 0.0, np.inf
    return -np.inf, np.inf


def _check_values(name: str, arr: np.ndarray, call: str, what: str) -> None:
    """Numbers, finite, inside ``name``'s known range; booleans and text refused."""
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"`{call}({_arg(call)}={{{name!r}: ...}})`: {name} takes "
            f"{'booleans' if arr.dtype == bool else arr.dtype.name + ' values'}, which "
            "change the compiled program; fix it with `options={...}` and run once per "
            "value (or let an Optuna sampler choose it: `tune(sampler=...)` with a "
            "CategoricalDistribution trains one program per value)."
        )
    low, high = _bounds(name)
    ok = np.isfinite(arr) & (arr >= low) & (arr <= high)
    if not ok.all():
        bad = arr[~ok][0]
        span = f" in [{low:g}, {high:g}]" if np.isfinite(high) else " >= 0" if low == 0 else ""
        raise ValueError(
            f"`{call}({_arg(call)}={{{name!r}: ...}})`: {name} must be finite{span}; its {what} "
            f"hold {float(bad)!r}."
        )


def check_space(space: Any, call: str, distributions: bool) -> tuple[str, ...]:
    """The space's names, each entry checked; ``distributions``: Optuna's, else arrays."""
    if not isinstance(space, Mapping):
        raise ValueError(f"`{call}({_arg(call)}=...)` must be a dict of name -> values.")
    if not space:
        raise ValueError(f"`{call}({_arg(call)}=...)` needs at least one hyperparameter.")
    for name, value in space.items():
        if distributions:
            _check_distribution(name, value, call)
            continue
        if is_distribution(value):
            raise ValueError(
                f"`{call}({_arg(call)}={{{name!r}: ...}})` is a distribution: "
                + (
                    "pass `samples=N` (random search) or `sampler=` (an Optuna sampler) to "
                    "draw from it."
                    if call == "tune"
                    else "a sweep trains a grid; give a 1-D array of values."
                )
            )
        if name in PROGRAM_OPTIONS:
            raise ValueError(
                f"`{call}({_arg(call)}={{{name!r}: ...}})`: {name} decides the compiled "
                f"program, and a grid trains one program: give it in `options={{{name!r}: "
                "...}`, one call per value"
                + (
                    ", or as an Optuna CategoricalDistribution with `sampler=` (one program "
                    "per value)."
                    if call == "tune"
                    else "."
                )
            )
        arr = np.asarray(value)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"`{call}({_arg(call)}={{{name!r}: ...}})` must be a non-empty 1-D array of "
                f"values; got shape {arr.shape}."
            )
        _check_values(name, arr, call, "values")
    return tuple(space)


def _check_distribution(name: str, dist: Any, call: str) -> None:
    if not is_distribution(dist):
        raise ValueError(
            f"`{call}({_arg(call)}={{{name!r}: {dist!r}}})` must be an Optuna distribution here "
            "(random search and samplers draw from it), e.g. "
            "optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)."
        )
    kind = type(dist).__name__
    if kind in ("FloatDistribution", "IntDistribution"):
        _check_values(name, np.asarray([dist.low, dist.high], np.float64), call, "bounds")
    elif kind == "CategoricalDistribution":
        if all(_numeric(c) for c in dist.choices):
            _check_values(name, np.asarray(dist.choices, np.float64), call, "choices")
    else:
        raise ValueError(f"`{call}({_arg(call)}={{{name!r}: ...}})`: {kind} is not supported.")


def _numeric(choice: Any) -> bool:
    return isinstance(choice, int | float | np.number) and not isinstance(choice, bool | np.bool_)


# options of the optimizers that decide the compiled program whatever their values' type:
# a number can not be traced there (``state_bits=8`` is a format, not a value)
PROGRAM_OPTIONS = frozenset({"state_bits", "min_quantized_size", "state_dtype"})


def static_names(space: Mapping[str, Any]) -> tuple[str, ...]:
    """The names whose values change the compiled program.

    Categorical choices that are not all numbers, and any categorical choice of a
    ``PROGRAM_OPTIONS`` name (``CategoricalDistribution([8, 4])`` for ``state_bits``).
    """
    return tuple(
        name
        for name, d in space.items()
        if type(d).__name__ == "CategoricalDistribution"
        and (name in PROGRAM_OPTIONS or not all(_numeric(c) for c in d.choices))
    )


def grid(space: Mapping[str, Any], call: str) -> tuple[tuple[str, ...], list[np.ndarray], tuple]:
    """The grid's Cartesian product: names, one flat array per name, the grid's shape."""
    names = check_space(space, call, distributions=False)
    axes = [np.asarray(space[n]) for n in names]
    shape = tuple(a.size for a in axes)
    return names, [m.ravel() for m in np.meshgrid(*axes, indexing="ij")], shape


def draw(space: Mapping[str, Any], samples: Any, seed: int, call: str = "tune"):
    """``samples`` random configurations (names, flat arrays, ``(samples,)``), seeded.

    Each name's values are drawn independently from its distribution: uniform, or
    log-uniform where the distribution says ``log=True``, on its ``step``; categorical
    choices uniformly.
    """
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"`{call}(samples=...)` must be a positive int; got {samples!r}.")
    names = check_space(space, call, distributions=True)
    if static := static_names(space):
        raise ValueError(
            f"`{call}(space={{{static[0]!r}: ...}})` chooses among values that change the "
            "compiled program; random search trains one program: fix it with `options=` "
            "(or use an Optuna sampler, which trains one program per value)."
        )
    rng = np.random.default_rng(seed)
    return names, [_draw_one(space[n], rng, samples) for n in names], (samples,)


def _draw_one(dist: Any, rng: np.random.Generator, n: int) -> np.ndarray:
    if type(dist).__name__ == "CategoricalDistribution":
        return np.asarray(dist.choices, np.float64)[rng.integers(len(dist.choices), size=n)]
    low, high = float(dist.low), float(dist.high)
    step = getattr(dist, "step", None)
    is_int = type(dist).__name__ == "IntDistribution"
    if dist.log:
        out = np.exp(rng.uniform(np.log(low), np.log(high + (0.5 if is_int else 0.0)), size=n))
    elif step is not None:  # a multiple of step above low, each equally likely
        return low + step * rng.integers(int(round((high - low) / step)) + 1, size=n)
    else:
        out = rng.uniform(low, high, size=n)
    return np.clip(np.floor(out), low, high) if is_int else out


def make_tx(optimizer, names, options, values) -> optax.GradientTransformation:
    """``optimizer(**config, **options)`` for one configuration's (traced) values."""
    return optimizer(**dict(zip(names, values)), **dict(options))


def shard_runs(tree: Any, mesh: Mesh | None) -> Any:
    """Places host arrays with their leading (run/config) axis over all the mesh's devices."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
    return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)


_STATIC_USE = (
    jax.errors.ConcretizationTypeError,  # TracerBoolConversionError among them
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def check_traceable(optimizer, names, options, first, params, call: str) -> None:
    """Each searched name can vary inside one program; the optimizer gets what it needs.

    Builds ``optimizer(**config, **options)`` and runs ``init`` and one ``update`` on
    ``params``' shapes (``jax.eval_shape``: nothing is computed), every name traced from
    its first value ``first[i]``: one trace (40 ms saved per call of ``tune`` on four
    names, against one trace per name). Where it fails, one name traced at a time finds
    the culprit: a value the optimizer reads as a Python value (``centered``,
    ``nesterov``...) would change the program, refused naming it. A missing or unknown
    keyword is refused naming the call's arguments.
    """
    options = tuple(dict(options or {}).items())
    try:
        _traced(optimizer, names, options, first, params, range(len(names)))
        return
    except (*_STATIC_USE, TypeError):
        pass  # (which name: below)
    for i, name in enumerate(names):
        try:
            _traced(optimizer, names, options, first, params, (i,))
        except _STATIC_USE:
            raise ValueError(
                f"`{call}({_arg(call)}={{{name!r}: ...}})`: the optimizer reads {name} as a "
                "Python value, so it changes the compiled program and cannot vary inside one; "
                f"fix it with `options={{{name!r}: ...}}` and run once per value."
            ) from None
        except TypeError as err:
            if "argument" not in str(err):
                raise
            raise TypeError(
                f"`{call}({_arg(call)}=..., options=...)`: {err}; every argument the "
                "optimizer needs goes in one of them, once."
            ) from None
    _traced(optimizer, names, options, first, params, range(len(names)))  # (together only)


def _traced(optimizer, names, options, first, params, traced) -> None:
    """``init`` and one ``update`` traced with the names at positions ``traced`` traced."""
    traced = tuple(traced)

    def one(*vs):
        values = list(first)
        for i, v in zip(traced, vs):
            values[i] = v
        tx = make_tx(optimizer, names, options, values)
        value = jnp.zeros((), jax.tree.leaves(params)[0].dtype)  # as training gives it
        return apply(tx, params, tx.init(params), params, value)

    jax.eval_shape(one, *(np.asarray(first[i]) for i in traced))
