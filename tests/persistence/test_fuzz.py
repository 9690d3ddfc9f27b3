"""Fuzzing the entry points with the inputs people get wrong.

Hypothesis draws argument combinations for ``fit``, ``sweep`` and ``tune`` (values,
shapes, dtypes, types, NaN, lists, empty arrays, zero-size leaves). Each call either
returns finite results or raises ``ValueError``/``TypeError`` whose one short message
names the argument; never ``IndexError``, ``AttributeError``, ``KeyError``, a tracer error
or a message of hundreds of characters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import jax_rmsprop

pytestmark = pytest.mark.slow
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _loss(p, batch):  # a loss that takes any numeric data (the fuzz is of our checks)
    x, y = (jnp.real(a).astype(p.dtype) for a in batch)
    return jnp.mean((x @ p - y) ** 2)


def _refusal_or_finite(call, names):
    """Runs ``call``: finite results pass, so does a short ValueError/TypeError naming one
    of ``names`` (the arguments as the user wrote them)."""
    try:
        out = call()
    except (ValueError, TypeError) as err:
        msg = str(err)
        assert len(msg) < 400, msg
        assert any(n in msg for n in names), msg
        event("refused")
        return None
    event("ran")
    return out


def _column(kind, n, d, rng):
    if kind == "list":
        return rng.normal(size=(n, d)).tolist()
    if kind == "int":
        return rng.integers(-3, 3, size=(n, d))
    if kind == "bool":
        return rng.random((n, d)) > 0.5
    if kind == "complex":
        return rng.normal(size=(n, d)) + 1j
    if kind == "nan":
        x = rng.normal(size=(n, d))
        if x.size:
            x.flat[rng.integers(x.size)] = np.nan
        return x
    if kind == "3d":
        return rng.normal(size=(n, d, 2))
    return rng.normal(size=(n, d)).astype(kind)


KINDS = ["float32", "float64", "list", "int", "bool", "complex", "nan", "3d"]
numbers = st.one_of(
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.none(),
    st.booleans(),
    st.just("8"),
)
valid = st.integers(1, 6)
counts = st.one_of(valid, valid, valid, numbers)  # mostly valid: errors one at a time


@SETTINGS
@given(
    n=st.integers(0, 40),
    n_y=st.one_of(st.none(), st.none(), st.integers(0, 40)),  # None: as many as x
    d=st.integers(0, 3),
    kind=st.one_of(st.just("float32"), st.just("float64"), st.sampled_from(KINDS)),
    batch_size=counts,
    epochs=counts,
    validation=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fit_refuses_or_trains_finitely(n, n_y, d, kind, batch_size, epochs, validation, seed):
    rng = np.random.default_rng(seed)
    x = _column(kind, n, d, rng)
    y = rng.normal(size=n if n_y is None else n_y)
    p = jnp.zeros(d, jnp.float64)
    val = (_column(kind, 5, d, rng), rng.normal(size=5)) if validation else None
    hist = _refusal_or_finite(
        lambda: jax_rmsprop.fit(
            _loss,
            p,
            jax_rmsprop.rmsprop(0.01),
            (x, y),
            epochs=epochs,
            batch_size=batch_size,
            validation=val,
        ),  # fmt: skip
        ["`fit("],
    )
    if hist is not None:
        assert np.isfinite(hist.loss).all() and np.isfinite(np.asarray(hist.params)).all()


grid_values = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=4),
    st.lists(st.booleans(), min_size=1, max_size=2),
    st.lists(st.text(max_size=3), min_size=1, max_size=2),
    st.just([[0.1, 0.2]]),
    st.just((0.0, 1.0)),
    st.just([]),
)


@SETTINGS
@given(
    names=st.lists(
        st.sampled_from(["learning_rate", "decay", "eps", "momentum", "centered", "bogus"]),
        max_size=2,
        unique=True,
    ),
    values=st.lists(st.one_of(st.just([0.1, 0.5]), grid_values), min_size=2, max_size=2),
    steps=counts,
    tol=st.one_of(st.none(), st.floats(allow_nan=True, width=32)),
)
def test_sweep_refuses_or_runs_finitely(names, values, steps, tol):
    grid = dict(zip(names, values))
    res = _refusal_or_finite(
        lambda: jax_rmsprop.sweep(jax_rmsprop.problems.sphere(), grid, steps, tol=tol),
        ["`sweep(", "`rmsprop("],
    )
    if res is not None:  # finite where it did not diverge
        assert np.isfinite(res.final_loss[~res.diverged]).all()


def _task(n, batch_size, validation):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 3)), rng.normal(size=n)
    val = (x[:5], y[:5]) if validation and n >= 5 else None
    return jax_rmsprop.Task(
        _loss, lambda key: jax.random.normal(key, (3,), jnp.float64), (x, y), batch_size, val
    )


@SETTINGS
@given(
    n=st.integers(0, 24),
    batch_size=counts,
    lr=st.one_of(st.just([1e-2, 1e-1]), st.just([1e-2, 1e-1]), grid_values),
    epochs=counts,
    seeds=counts,
    option=st.sampled_from(["none", "samples", "halving", "patience", "folds"]),
    option_value=counts,
    validation=st.booleans(),
)
def test_tune_refuses_or_trains_finitely(
    n, batch_size, lr, epochs, seeds, option, option_value, validation
):
    task = _task(n, batch_size, validation)
    kw = {} if option == "none" else {option: option_value}
    res = _refusal_or_finite(
        lambda: jax_rmsprop.tune(task, {"learning_rate": lr}, epochs, seeds=seeds, **kw),
        ["`tune(", "`Task(", "`rmsprop("],
    )
    if res is not None:
        trained = res.epochs_run > 0
        assert np.isfinite(res.loss[trained][..., 0]).all()
