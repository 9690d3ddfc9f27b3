"""Inputs people get wrong, refused before compiling: one ValueError that names the
argument, in under 400 characters."""

import functools
import gc

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop


def _loss(p, b):
    return jnp.mean((b[0] @ p - b[1]) ** 2)


def _data(n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5], np.float32))


def _refused(call, words, error=ValueError):
    with pytest.raises(error) as info:
        call()
    msg = str(info.value)
    assert words in msg, msg
    assert len(msg) < 400, len(msg)
    return msg


def _fit(**kw):
    args = dict(loss=_loss, params=jnp.zeros(3, jnp.float32), tx=jax_rmsprop.rmsprop(0.01),
                data=_data(), epochs=1, batch_size=8) | kw  # fmt: skip
    return lambda: jax_rmsprop.fit(args.pop("loss"), args.pop("params"), args.pop("tx"),
                                   args.pop("data"), **args)  # fmt: skip


def test_python_lists_as_data():
    x, y = _data(400)
    msg = _refused(_fit(data=(x.tolist(), y.tolist())), "`fit(data=...)` must be arrays")
    assert "np.asarray" in msg


@pytest.mark.parametrize("where", ["data", "validation"])
def test_nan_in_the_data_names_the_array_and_the_row(where):
    x, y = _data()
    x = x.copy()
    x[7, 1], x[12, 0] = np.nan, np.inf
    kw = {"data": (x, y)} if where == "data" else {"validation": (x, y)}
    msg = _refused(_fit(**kw), f"`fit({where}=...)`[0] holds NaN or infinity")
    assert "2 rows, the first is row 7" in msg


def test_a_device_arrays_check_is_remembered_while_it_lives(monkeypatch):
    """A JAX array never changes: fit checks its finiteness once (a loop of one-epoch
    fits pays it once), and a NaN array is refused at every call all the same."""
    from jax_rmsprop import _inputs

    calls = []
    real = _inputs._all_finite
    monkeypatch.setattr(_inputs, "_all_finite", lambda a: calls.append(a.shape) or real(a))
    x, y = (jnp.asarray(a) for a in _data())
    for _ in range(3):
        _fit(data=(x, y))()
    assert calls == [x.shape, y.shape]
    bad = x.at[5, 0].set(jnp.nan)
    for _ in range(2):
        _refused(_fit(data=(bad, y)), "`fit(data=...)`[0] holds NaN or infinity: 1 rows")
    assert len(calls) == 3
    n = len(_inputs._FINITE)
    del bad
    gc.collect()  # (the refusals' tracebacks hold it in a cycle)
    assert len(_inputs._FINITE) == n - 1  # forgotten with the array


def test_an_optimizer_state_of_another_optimizer():
    params = jnp.zeros(3, jnp.float32)
    adam_state = optax.adam(0.1).init(params)
    _refused(_fit(opt_state=adam_state), "`fit(opt_state=...)` does not match `tx.init(params)`")


def _task():
    return jax_rmsprop.Task(_loss, lambda key: jnp.zeros(3, jnp.float32), _data(), 8)


@pytest.mark.parametrize(
    "grid, words",
    [
        ({"learning_rate": [0.1, -0.01]}, "learning_rate must be finite >= 0; its values hold"),
        ({"learning_rate": [0.1, float("nan")]}, "learning_rate must be finite"),
        ({"learning_rate": [0.1], "decay": np.linspace(0.5, 1.5, 4)},
         "decay must be finite in [0, 1]"),
        ({"learning_rate": [0.1], "centered": [False, True]},
         "centered takes booleans, which change the compiled program; fix it with `options="),
        ({"learning_rate": [[0.1, 0.2]]}, "must be a non-empty 1-D array"),
        ({}, "=...)` needs at least one hyperparameter"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["task", "problem"])
def test_bad_grids_name_the_hyperparameter(grid, words, kind):
    if kind == "task":
        _refused(lambda: jax_rmsprop.tune(_task(), grid, 2), "`tune(space=")
        _refused(lambda: jax_rmsprop.tune(_task(), grid, 2), words)
    else:
        _refused(lambda: jax_rmsprop.sweep(jax_rmsprop.problems.sphere(), grid, 2), "`sweep(grid=")
        _refused(lambda: jax_rmsprop.sweep(jax_rmsprop.problems.sphere(), grid, 2), words)


def test_random_search_needs_distributions_and_halving_needs_rungs():
    task = _task()
    _refused(
        lambda: jax_rmsprop.tune(task, {"learning_rate": [1e-3, 1e-2, 1e-1]}, 2, samples=5),
        "`tune(space={'learning_rate': [0.001, 0.01, 0.1]})` must be an Optuna distribution "
        "here (random search and samplers draw from it), e.g. "
        "optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)",
    )
    _refused(
        lambda: jax_rmsprop.tune(task, {"learning_rate": np.logspace(-3, -1, 4)}, 2, halving=3),
        "`tune(halving=3)` needs at least 3 epochs and 3 configurations for two rungs; "
        "got epochs=2",
    )


def test_each_entry_point_refuses_what_belongs_to_the_other():
    from optuna.distributions import FloatDistribution

    grid = {"learning_rate": [0.1]}
    sphere = jax_rmsprop.problems.sphere()
    _refused(lambda: jax_rmsprop.sweep(_task(), grid, 2), "with `jax_rmsprop.tune(", TypeError)
    _refused(lambda: jax_rmsprop.tune(sphere, grid, 2), "swept with `sweep`", TypeError)
    for kw, words in [
        (dict(trials=4), "`tune(trials=...)` counts an Optuna sampler's trials"),
        (dict(monitor="val_loss"), "`tune(monitor=...)` chooses what a sampler is told"),
    ]:
        _refused(lambda: jax_rmsprop.tune(_task(), grid, 2, **kw), words, TypeError)  # noqa: B023
    space = {"learning_rate": FloatDistribution(1e-3, 1e-1, log=True)}
    sampler = __import__("optuna").samplers.RandomSampler(seed=0)
    for kw in (dict(samples=3), dict(halving=2)):
        _refused(
            lambda: jax_rmsprop.tune(_task(), space, 2, sampler=sampler, trials=4, **kw),  # noqa: B023
            "`samples` and `halving` do not apply",
            TypeError,
        )
    _refused(lambda: jax_rmsprop.tune(_task(), space, 2), "is a distribution: pass `samples=N`")
    _refused(
        lambda: jax_rmsprop.tune(_task(), space, 2, sampler=sampler, trials=2, chunk_size=4),
        "size it with `batch=`",
        TypeError,
    )


def test_a_diverging_fit_stops_at_the_first_non_finite_epoch_keeping_finite_params():
    """lr 1e30 on a quadratic overflows float32 in the third epoch: fit warns naming it,
    stops, and returns the parameters of the last finite epoch (equal to a 2-epoch fit)."""
    x, y = _data()

    def loss(p, b):  # finite for finite p; overflows to inf as p grows
        return jnp.mean((b[0] @ p - b[1]) ** 2) + jnp.sum(p**8)

    kw = dict(epochs=10, batch_size=40)
    tx = optax.sgd(1e-6)
    grow = optax.chain(
        optax.scale(-1.0),
        optax.scale_by_schedule(lambda t: jnp.float32(10.0) ** (4 * t).astype(jnp.float32)),
    )
    with pytest.warns(RuntimeWarning, match=r"fit: epoch (\d) gave a non-finite loss") as rec:
        hist = jax_rmsprop.fit(loss, jnp.full(3, 0.5, jnp.float32), optax.chain(tx, grow), (x, y),
                               **kw)  # fmt: skip
    bad = hist.stopped_epoch
    assert str(bad) in str(rec[0].message) and len(hist.loss) == bad + 1
    assert np.isfinite(hist.loss[:bad]).all() and not np.isfinite(hist.loss[bad])
    assert np.isfinite(np.asarray(hist.params)).all()
    before = jax_rmsprop.fit(loss, jnp.full(3, 0.5, jnp.float32), optax.chain(tx, grow), (x, y),
                             epochs=bad, batch_size=40)  # fmt: skip
    np.testing.assert_array_equal(hist.params, before.params)
    # opting out trains on into NaN
    on = jax_rmsprop.fit(loss, jnp.full(3, 0.5, jnp.float32), optax.chain(tx, grow), (x, y),
                         terminate_on_nan=False, **kw)  # fmt: skip
    assert len(on.loss) == 10 and not np.isfinite(np.asarray(on.params)).all()


def test_a_grid_of_what_the_optimizer_reads_as_a_python_value_is_refused_by_name():
    """Numbers for `centered` pass the grid's checks but cannot vary inside one program:
    refused before compiling, naming it (was a TracerBoolConversionError)."""
    sphere = jax_rmsprop.problems.sphere()
    words = "the optimizer reads centered as a Python value, so it changes the compiled program"
    grid = {"learning_rate": [0.1], "centered": (0.0, 1.0)}
    _refused(lambda: jax_rmsprop.sweep(sphere, grid, 2), words)
    _refused(lambda: jax_rmsprop.tune(_task(), grid, 2), words)
    missing = "rmsprop() missing 1 required positional argument: 'learning_rate'; every argument"
    _refused(lambda: jax_rmsprop.sweep(sphere, {"decay": [0.5]}, 2), missing, TypeError)
    unknown = "got an unexpected keyword argument 'bogus'"
    _refused(lambda: jax_rmsprop.tune(_task(), {"bogus": [0.5]}, 2), unknown, TypeError)


def test_data_without_examples_is_refused_naming_it():
    x = np.zeros((0, 3), np.float32)
    _refused(_fit(data=(x, np.zeros(0, np.float32))), "`fit(data=...)` holds no examples")
    val = (x, np.zeros(0, np.float32))
    _refused(_fit(validation=val), "`fit(validation=...)` holds no examples")


def _three(p, x, y):
    return jnp.mean((x @ p - y) ** 2)


class _CallableLoss:
    def __call__(self, params, batch, scale=1.0):
        return scale * _loss(params, batch)


def _functional_as_pure(params, state, batch):  # missing key= and training=
    return _loss(params, batch), state


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(loss=_three),
         "`fit(loss=...)` is called as loss(params, batch); _three(p, x, y) cannot be: missing a "
         "required argument: 'y' (the batch is one argument: def loss(params, batch): x, y = "
         "batch)."),
        (dict(loss=lambda p: jnp.sum(p)),
         "`fit(loss=...)` is called as loss(params, batch); <lambda>(p) cannot be: too many "
         "positional arguments."),
        (dict(loss=lambda p, b, *, weight: _loss(p, b)),
         "missing a required argument: 'weight'"),
        (dict(loss=_functional_as_pure, state=()),
         "`fit(loss=...)` is called as loss(params, state, batch, *, key, training); "
         "_functional_as_pure(params, state, batch) cannot be: got an unexpected keyword "
         "argument 'key'."),
    ],
)  # fmt: skip
def test_a_loss_of_the_wrong_signature_is_refused_before_tracing(kw, words, monkeypatch):
    from jax_rmsprop import _inputs

    monkeypatch.setattr(_inputs, "_traced", lambda *a: pytest.fail("traced"))
    _refused(_fit(**kw), words)


@pytest.mark.parametrize(
    "loss, scale",
    [
        (lambda *args: _loss(*args), 1.0),
        (lambda p, b, *, scale=2.0: scale * _loss(p, b), 2.0),
        (functools.partial(lambda scale, p, b: scale * _loss(p, b), 3.0), 3.0),
        (_CallableLoss(), 1.0),
    ],
    ids=["args", "keyword-only-default", "partial", "callable-object"],
)
def test_losses_that_can_take_the_call_are_not_refused(loss, scale):
    hist = _fit(loss=loss)()
    np.testing.assert_allclose(hist.loss, scale * _fit()().loss, rtol=1e-6)


def test_a_task_with_a_loss_of_the_wrong_signature():
    task = jax_rmsprop.Task(_three, lambda key: jnp.zeros(3, jnp.float32), _data(), 8)
    words = "`Task(loss=...)` is called as loss(params, batch); _three(p, x, y) cannot be"
    _refused(lambda: jax_rmsprop.tune(task, {"learning_rate": [0.1]}, 1), words)


def test_an_optimizer_constructor_not_called():
    msg = _refused(_fit(tx=jax_rmsprop.rmsprop), "`fit(tx=...)` must be an optax", TypeError)
    assert msg.endswith("got the function rmsprop: call it, e.g. rmsprop(1e-3).")
    _refused(_fit(tx=0.01), "`fit(tx=...)` must be an optax GradientTransformation (with init "
             "and update); got float.", TypeError)  # fmt: skip


def _nan_rows():
    x, y = _data()
    x = x.copy()
    x[[3, 17], 1] = np.nan
    return x, y


def _masked(p, b):
    """A loss that imputes 0 for the NaN entries of ``x`` itself."""
    x, y = b
    return _loss(p, (jnp.where(jnp.isnan(x), 0.0, x), y))


def test_nan_rows_train_when_the_caller_says_the_loss_handles_them():
    """check_finite=False: a loss imputing NaN entries trains exactly as the plain loss on
    the same data with those entries zeroed beforehand (the losses bit for bit; the
    parameters within 2 float32 eps: the two programs are fused differently, and jax 0.5.3
    rounds one weight 1 ulp apart)."""
    x, y = _nan_rows()
    msg = _refused(_fit(loss=_masked, data=(x, y), terminate_on_nan=False), "2 rows")
    assert "pass check_finite=False if the loss handles them" in msg
    hist = _fit(loss=_masked, data=(x, y), epochs=3, check_finite=False)()
    zeroed = _fit(data=(np.nan_to_num(x), y), epochs=3)()
    assert np.isfinite(hist.loss).all()
    np.testing.assert_array_equal(hist.loss, zeroed.loss)
    eps = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(hist.params, zeroed.params, rtol=2 * eps, atol=0)


def test_a_task_takes_nan_rows_with_check_finite_false():
    init = lambda key: jnp.zeros(3, jnp.float32)  # noqa: E731
    x, y = _nan_rows()
    refused = jax_rmsprop.Task(_masked, init, (x, y), 8)
    _refused(lambda: jax_rmsprop.tune(refused, {"learning_rate": [0.1]}, 1), "`Task(data=...)`[0]")
    task = jax_rmsprop.Task(_masked, init, (x, y), 8, check_finite=False)
    res = jax_rmsprop.tune(task, {"learning_rate": [0.01]}, 2)
    clean = jax_rmsprop.Task(_loss, init, (np.nan_to_num(x), y), 8)
    np.testing.assert_array_equal(
        res.loss, jax_rmsprop.tune(clean, {"learning_rate": [0.01]}, 2).loss
    )
