"""fit on real models: Flax NNX modules (dropout, batch-norm), the functional form with model
state (Equinox), metrics and a Keras-style history, Keras's fit controls."""

import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import compat

from ..helpers import optax_rules

nnx = pytest.importorskip("flax.nnx")

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "keras_fit_bn_digits.npz"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Net(nnx.Module):
    """Dense(h) - BatchNorm - ReLU - Dropout - Dense(10): Keras's model and its NNX twin."""

    def __init__(self, rngs, hidden=32, rate=0.0, din=64, epsilon=1e-3, bias=True):
        self.dense1 = nnx.Linear(din, hidden, use_bias=bias, rngs=rngs)
        self.bn = nnx.BatchNorm(hidden, momentum=0.99, epsilon=epsilon, rngs=rngs)
        self.drop = nnx.Dropout(rate, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        return self.dense2(self.drop(nnx.relu(self.bn(self.dense1(x)))))


def loss_and_accuracy(model, batch):
    x, y = batch
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, {
        "accuracy": jnp.mean((jnp.argmax(logits, -1).astype(y.dtype) == y).astype(jnp.float32))
    }


def _digits(n=None):
    pytest.importorskip("sklearn", reason="scikit-learn ships the digits data set")
    x, y, xv, yv = _script("make_fit_golden").digits()
    return (x[:n], y[:n]), (xv, yv)


def _set(model: Net, w):
    """Keras's get_weights() order (scripts/make_fit_bn_golden.NAMES) into the NNX twin."""
    for variable, value in zip(_get(model), w, strict=True):
        variable.set_value(jnp.asarray(value))


def _get(model: Net):
    m = model
    return [
        m.dense1.kernel,
        m.dense1.bias,
        m.bn.scale,
        m.bn.bias,
        m.bn.mean,
        m.bn.var,
        m.dense2.kernel,
        m.dense2.bias,
    ]


def test_an_nnx_batch_norm_model_reproduces_keras_fit_with_accuracy():
    """Keras 3 Dense-BatchNormalization-ReLU-Dense with metrics=["accuracy"], recorded by
    scripts/make_fit_bn_golden.py, against fit on the NNX twin from the same weights."""
    gold = np.load(GOLDEN)
    names = _script("make_fit_bn_golden").NAMES
    train, val = _digits()
    model = Net(nnx.Rngs(0))
    _set(model, [gold[f"w0/{n}"] for n in names])
    hist = jax_rmsprop.fit(
        loss_and_accuracy,
        model,
        compat.keras_rmsprop(),
        train,
        epochs=5,
        batch_size=32,
        validation=val,
    )
    msg = str(gold["version"])
    assert hist.params is model and set(hist.history) == {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
    }
    for k in ("loss", "val_loss"):
        np.testing.assert_allclose(hist.history[k], gold[f"history/{k}"], rtol=1e-5, err_msg=msg)
    # accuracies: equal up to one example (a logit tie broken by float rounding)
    for k, n in (("accuracy", len(train[0])), ("val_accuracy", len(val[0]))):
        np.testing.assert_allclose(hist.history[k], gold[f"history/{k}"], atol=1.01 / n, rtol=0)
    for n, got in zip(names, _get(model)):
        want = gold[f"final/{n}"]
        # dense1's bias feeds batch-norm, which subtracts the batch mean: its gradient is 0
        # in exact arithmetic, and both frameworks move it by RMSProp-normalised rounding
        # noise; it is held to 1e-4 of its scale, every other array to 1e-5
        tol = 1e-4 if n == "dense1/bias" else 1e-5
        np.testing.assert_allclose(
            got.get_value(), want, rtol=tol, atol=tol * np.abs(want).max(), err_msg=f"{n} {msg}"
        )
    np.testing.assert_array_equal(hist.loss, hist.history["loss"])


def _fit_module(model, epochs, **kw):
    """``fit`` of ``model`` on 300 digits (the dropout tests' call), in place."""
    train, val = _digits(300)
    return jax_rmsprop.fit(
        loss_and_accuracy,
        model,
        jax_rmsprop.rmsprop(1e-3),
        train,
        epochs=epochs,
        batch_size=32,
        validation=val,
        **kw,
    )


def _dropout_fit(rate, epochs=2, **kw):
    model = Net(nnx.Rngs(0, dropout=1), hidden=16, rate=rate)
    return model, _fit_module(model, epochs, **kw)


def test_dropout_is_deterministic_per_module_and_changes_training():
    a, ha = _dropout_fit(0.5)
    b, hb = _dropout_fit(0.5)
    np.testing.assert_array_equal(ha.loss, hb.loss)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(a, nnx.Param), nnx.state(b, nnx.Param))
    _, h0 = _dropout_fit(0.0)
    assert not np.array_equal(ha.loss, h0.loss)
    # every step draws a fresh mask: the module's dropout stream advanced once per step
    assert int(a.drop.rngs.count.get_value()) == 2 * int(np.ceil(300 / 32))


def _all_state(model):
    return checkpoint_data(nnx.state(model))


def test_the_split_shortcut_trains_a_module_as_nnx_split_does(monkeypatch):
    """fit reads a module's arrays through its pytree structure (a layout cached per
    structure) instead of ``nnx.split`` and ``nnx.update``: the same numbers, bit for bit,
    on a second module of that structure too, and a changed static attribute (dropout
    rate) is a new structure, not a stale layout."""
    from jax_rmsprop import _model

    fast = [_dropout_fit(0.5, epochs=2)[0]]
    assert _model._layout(fast[0], *_model._flatten(fast[0])) is not None  # (taken)
    _fit_module(fast[0], 3, initial_epoch=2)
    fast[0].drop.rate = 0.0
    _fit_module(fast[0], 4, initial_epoch=3)
    monkeypatch.setattr(_model, "_layout", lambda *a: None)  # nnx.split / nnx.update
    slow = _dropout_fit(0.5, epochs=2)[0]
    _fit_module(slow, 3, initial_epoch=2)
    slow.drop.rate = 0.0
    last = _fit_module(slow, 4, initial_epoch=3)
    jax.tree.map(np.testing.assert_array_equal, _all_state(fast[0]), _all_state(slow))
    assert last.params is slow and fast[0].drop.rngs.count.get_value() > 0


def _epoch_copies():
    """Copies in the compiled epoch of ``_dropout_fit``'s model (its HLO)."""
    from jax_rmsprop import _fit, _model

    model, tx = Net(nnx.Rngs(0, dropout=1), hidden=16, rate=0.5), jax_rmsprop.rmsprop(1e-3)
    m, params, state = _model.split(loss_and_accuracy, model, None)
    carry = _fit._start(tx, params, state, None)
    lowered = _fit._epoch.lower(
        m, tx, *carry, _digits(300)[0], None, 0, 32, False, sharding=None, rng=None,
        keep_finite=True,
    )  # fmt: skip
    return lowered.compile().as_text().count(" copy(")


def test_training_programs_compile_with_region_copy_insertion_to_the_same_numbers(monkeypatch):
    """fit's epoch and a sweep's chunk compile with XLA's region-based copy insertion
    (``_compile.OPTIONS``): fewer copies in a dropout epoch (dropout's threefry loop
    carries), the numbers bit for bit those of the plain programs; an XLA that does not
    know the option gets the plain programs."""
    from jax_rmsprop import _compile

    assert _compile._known()
    tuned_copies = _epoch_copies()
    tuned_model, tuned = _dropout_fit(0.5)
    grid = {"learning_rate": np.array([1e-3, 1e-2])}
    tuned_sweep = jax_rmsprop.tune(_nnx_task(96), grid, 1, seeds=2)
    monkeypatch.setattr(_compile, "_known", lambda: False)  # as an XLA without the option
    assert _epoch_copies() > tuned_copies
    plain_model, plain = _dropout_fit(0.5)
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_array_equal(tuned.history[name], plain.history[name])
    jax.tree.map(np.testing.assert_array_equal, _all_state(tuned_model), _all_state(plain_model))
    plain_sweep = jax_rmsprop.tune(_nnx_task(96), grid, 1, seeds=2)
    np.testing.assert_array_equal(tuned_sweep.loss, plain_sweep.loss)
    np.testing.assert_array_equal(tuned_sweep.val_loss, plain_sweep.val_loss)
    monkeypatch.undo()
    monkeypatch.setattr(_compile, "OPTIONS", {"xla_cpu_no_such_option_here": True})
    _compile._known.cache_clear()
    try:
        assert not _compile._known()
        model, again = _dropout_fit(0.5)  # (the plain program, already compiled)
        np.testing.assert_array_equal(again.loss, plain.loss)
    finally:
        monkeypatch.undo()
        _compile._known.cache_clear()


def test_an_optimizer_state_made_on_the_modules_nnx_state_is_taken():
    """tx.init(nnx.state(model, nnx.Param)), what an NNX user writes, equals fit's own."""
    a, b = (Net(nnx.Rngs(0, dropout=1), hidden=16) for _ in range(2))
    own = _fit_module(a, 1)
    made = jax_rmsprop.rmsprop(1e-3).init(nnx.state(b, nnx.Param))
    given = _fit_module(b, 1, opt_state=made)
    np.testing.assert_array_equal(own.loss, given.loss)
    jax.tree.map(np.testing.assert_array_equal, own.opt_state, given.opt_state)


class _Tied(nnx.Module):
    """Two names for one layer: ``nnx.split`` keeps its Variables once."""

    def __init__(self, tied=True):
        self.first = nnx.Linear(3, 3, rngs=nnx.Rngs(0))
        self.second = self.first if tied else nnx.Linear(3, 3, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.second(jnp.tanh(self.first(x)))


def test_a_module_sharing_a_layer_trains_the_shared_weights_once():
    """One step on the full batch equals nnx.grad + optax by hand: the shared kernel gets
    the sum of both uses' gradients (the shortcut, which would train it twice, is not
    taken for a module whose arrays repeat, though an untied one has its structure)."""
    from jax_rmsprop import _model

    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    data = (x, np.flip(x, 1).copy())

    def loss(model, batch):
        return jnp.mean((model(batch[0]) - batch[1]) ** 2)

    tx = optax.rmsprop(0.01)
    jax_rmsprop.fit(loss, _Tied(tied=False), tx, data, epochs=1, batch_size=8)
    model, reference = _Tied(), _Tied()
    assert jax.tree.structure(model) == jax.tree.structure(_Tied(tied=False))
    assert _model._layout(model, *_model._flatten(model)) is None
    jax_rmsprop.fit(loss, model, tx, data, epochs=1, batch_size=8)
    params = nnx.state(reference, nnx.Param)
    grads = nnx.grad(loss)(reference, data)
    updates, _ = tx.update(grads, tx.init(params), params)
    nnx.update(reference, optax.apply_updates(params, updates))
    assert model.first is model.second
    # fit's compiled epoch and these eager ops may round the ~0.01 update of ~1 weights
    # differently (jax 0.8: 1 ulp); a kernel trained twice would be off by ~0.01
    same = functools.partial(np.testing.assert_allclose, rtol=2 * np.finfo(np.float32).eps)
    jax.tree.map(same, nnx.state(model, nnx.Param), nnx.state(reference, nnx.Param))


def test_a_module_whose_last_epoch_diverges_keeps_the_parameters_it_started_from():
    """The module takes its arrays before the last epoch's finiteness is known: a
    non-finite last epoch hands back what it started from (the 2-epoch fit's)."""
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    grow = optax.chain(
        optax.sgd(1e-3),
        optax.scale_by_schedule(lambda t: jnp.float32(100.0) ** (4 * t).astype(jnp.float32)),
    )

    def loss(model, batch):
        return jnp.mean((model(batch[0]) - batch[1]) ** 2) + jnp.sum(model.kernel[...] ** 8)

    def run(epochs):
        model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
        return model, jax_rmsprop.fit(loss, model, grow, (x, x[:, :1]), epochs=epochs,
                                      batch_size=40)  # fmt: skip

    with pytest.warns(RuntimeWarning, match="fit: epoch 2 gave a non-finite loss"):
        diverged, hist = run(3)
    assert hist.stopped_epoch == 2 and len(hist.loss) == 3
    two, _ = run(2)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(diverged), nnx.state(two))


def test_validation_runs_in_evaluation_mode():
    model, hist = _dropout_fit(0.5)
    _, val = _digits(300)
    model.eval()  # dropout off, running statistics: what fit's validation uses
    loss, metrics = loss_and_accuracy(model, val)
    np.testing.assert_allclose(hist.val_loss[-1], loss, rtol=1e-6)
    np.testing.assert_allclose(hist.history["val_accuracy"][-1], metrics["accuracy"], rtol=1e-6)


@pytest.mark.parametrize("key", [None, jax.random.key(3)], ids=["ordered", "shuffled"])
def test_continuing_with_initial_epoch_equals_one_fit_bit_for_bit(key):
    whole_model, whole = _dropout_fit(0.5, epochs=4, key=key)
    model, first = _dropout_fit(0.5, epochs=2, key=key)
    rest = _fit_module(model, 4, initial_epoch=2, opt_state=first.opt_state, key=key)
    assert rest.epoch == (2, 3)
    for k in whole.history:
        np.testing.assert_array_equal(
            np.concatenate([first.history[k], rest.history[k]]), whole.history[k]
        )
    jax.tree.map(
        np.testing.assert_array_equal,
        nnx.state(model, nnx.Param),
        nnx.state(whole_model, nnx.Param),
    )
    jax.tree.map(
        np.testing.assert_array_equal,
        nnx.state(model, nnx.BatchStat),
        nnx.state(whole_model, nnx.BatchStat),
    )


def _plateau_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32) + rng.normal(size=64).astype(np.float32)
    return {"w": jnp.zeros(3, jnp.float32)}, (x, y)


def _mse(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] - y) ** 2)


def test_reduce_on_plateau_gets_the_loss_and_lowers_the_scale():
    params, data = _plateau_problem()
    tx = optax.chain(
        jax_rmsprop.rmsprop(0.3), optax.contrib.reduce_on_plateau(patience=2, factor=0.5)
    )
    with optax_rules():  # optax.contrib mixes dtypes inside
        hist = jax_rmsprop.fit(_mse, params, tx, data, epochs=20, batch_size=64)
    scale = float(hist.opt_state[1].scale)
    assert scale < 0.5  # the noise floor is a plateau: lowered at least twice
    plain = jax_rmsprop.fit(_mse, params, jax_rmsprop.rmsprop(0.3), data, epochs=20, batch_size=64)
    assert hist.loss[-1] < plain.loss[-1]  # RMSProp at a fixed 0.3 rattles around the floor


def test_reduce_on_plateau_trains_in_a_sweep():
    params, data = _plateau_problem()
    task = jax_rmsprop.Task(_mse, lambda key: params, data, 64)

    def optimizer(learning_rate):
        return optax.chain(
            jax_rmsprop.rmsprop(learning_rate),
            optax.contrib.reduce_on_plateau(patience=2, factor=0.5),
        )

    with optax_rules():  # optax.contrib mixes dtypes inside
        res = jax_rmsprop.tune(
            task, {"learning_rate": np.array([0.03, 0.3])}, 20, optimizer=optimizer
        )
        hist = jax_rmsprop.fit(_mse, params, optimizer(0.3), data, epochs=20, batch_size=64)
    np.testing.assert_allclose(res.loss[1, 0], hist.loss, rtol=1e-5)


def test_early_stopping_restores_the_best_epoch_like_keras():
    params, data = _plateau_problem()
    val = (data[0][:20], data[1][:20])
    kw = dict(batch_size=16, validation=val)
    tx = jax_rmsprop.rmsprop(0.3)
    hist = jax_rmsprop.fit(_mse, params, tx, data, epochs=50, patience=3, restore_best=True, **kw)
    assert hist.stopped_epoch is not None and hist.stopped_epoch == hist.best_epoch + 3
    assert len(hist.loss) == hist.stopped_epoch + 1
    best = int(np.argmin(hist.val_loss))
    assert hist.best_epoch == best
    again = jax_rmsprop.fit(_mse, params, tx, data, epochs=best + 1, **kw)
    np.testing.assert_array_equal(hist.params["w"], again.params["w"])
    # max mode on a metric: stops when "neg" stops rising (here: as val_loss stops falling)
    neg = jax_rmsprop.fit(
        lambda p, b: (_mse(p, b), {"neg_mse": -_mse(p, b)}),
        params,
        tx,
        data,
        epochs=50,
        patience=3,
        monitor="val_neg_mse",
        mode="max",
        **kw,
    )
    assert neg.best_epoch == hist.best_epoch and neg.stopped_epoch == hist.stopped_epoch


@pytest.mark.parametrize(
    "kw, words",
    [
        (
            dict(initial_epoch=3, epochs=3),
            "`fit(initial_epoch=...)` must be an int in [0, epochs=3)",
        ),
        (dict(patience=2, monitor="val_accuracy"), "`fit(monitor='val_accuracy')` is not logged"),
        (dict(patience=2, monitor="loss", mode="up"), "`fit(mode=...)` must be 'auto'"),
        (dict(restore_best=True), "`fit(restore_best=True)` needs `patience`"),
        (dict(patience=-1), "`fit(patience=...)` must be an int >= 0"),
    ],
)
def test_bad_controls_are_refused_naming_the_argument(kw, words):
    params, data = _plateau_problem()
    kw = {"epochs": 3} | kw
    with pytest.raises(ValueError) as err:
        jax_rmsprop.fit(_mse, params, jax_rmsprop.rmsprop(0.1), data, batch_size=16, **kw)
    assert words in str(err.value) and len(str(err.value)) < 400


def test_a_metric_that_is_not_a_scalar_is_refused():
    params, data = _plateau_problem()

    def loss(p, b):
        return _mse(p, b), {"err": b[0] @ p["w"] - b[1]}

    with pytest.raises(ValueError, match="metric 'err' must be a scalar per batch"):
        jax_rmsprop.fit(loss, params, jax_rmsprop.rmsprop(0.1), data, epochs=1, batch_size=16)


@pytest.mark.slow  # compiles an Equinox model twice (~10 s)
def test_an_equinox_model_with_batch_norm_and_dropout_trains_through_the_functional_form():
    eqx = pytest.importorskip("equinox")

    class EqxNet(eqx.Module):
        dense1: eqx.nn.Linear
        bn: eqx.nn.BatchNorm
        drop: eqx.nn.Dropout
        dense2: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            f32 = jnp.float32  # (the test suite runs with x64 enabled)
            self.dense1 = eqx.nn.Linear(64, 32, key=k1, dtype=f32)
            self.bn = eqx.nn.BatchNorm(32, axis_name="batch", mode="batch", dtype=f32)
            self.drop = eqx.nn.Dropout(0.2)
            self.dense2 = eqx.nn.Linear(32, 10, key=k2, dtype=f32)

        def __call__(self, x, state, key):
            h, state = self.bn(self.dense1(x), state)
            return self.dense2(self.drop(jax.nn.relu(h), key=key)), state

    model, state = eqx.nn.make_with_state(EqxNet)(jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(params, state, batch, *, key, training):
        net = eqx.nn.inference_mode(eqx.combine(params, static), value=not training)
        x, y = batch
        keys = jax.random.split(key, x.shape[0]) if training else None
        forward = jax.vmap(
            net, axis_name="batch", in_axes=(0, None, 0 if training else None), out_axes=(0, None)
        )
        logits, state = forward(x, state, keys)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return (
            loss,
            state,
            {
                "accuracy": jnp.mean(
                    (jnp.argmax(logits, -1).astype(y.dtype) == y).astype(jnp.float32)
                )
            },
        )

    train, val = _digits(600)
    fit = lambda **kw: jax_rmsprop.fit(  # noqa: E731
        loss,
        params,
        jax_rmsprop.rmsprop(1e-3),
        train,
        epochs=3,
        batch_size=32,
        validation=val,
        state=state,
        rng=jax.random.key(1),
        **kw,
    )
    hist = fit()
    acc = hist.history["val_accuracy"]
    assert acc[-1] > 0.5 and acc[-1] > acc[0]  # chance is 0.1
    assert hist.loss[-1] < hist.loss[0]
    # the state moved (batch-norm running statistics), and the run is deterministic per rng
    assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), hist.state, state))
    np.testing.assert_array_equal(fit().loss, hist.loss)
    # validation is the inference-mode loss of the returned params and state
    v, _, m = loss(hist.params, hist.state, val, key=None, training=False)
    np.testing.assert_allclose(hist.val_loss[-1], v, rtol=1e-6)
    np.testing.assert_allclose(hist.history["val_accuracy"][-1], m["accuracy"], rtol=1e-6)


def _nnx_task(n=200, rate=0.3):
    train, val = _digits(n)

    def init(key):
        # no bias before batch-norm: its gradient is 0 in exact arithmetic, so RMSProp
        # moves it by lr-sized steps on rounding noise, which a vmap rounds differently
        return Net(nnx.Rngs(key), hidden=16, rate=rate, bias=False)

    return jax_rmsprop.Task(loss_and_accuracy, init, train, 32, val)


@pytest.mark.slow
def test_a_sweep_of_an_nnx_model_trains_each_cell_like_fit_with_its_seed():
    """Dropout + batch-norm NNX model, learning rate x decay x 2 seeds, one program; every
    cell (loss, accuracy, validation) equals fit on init(seed's key) alone."""
    from jax_rmsprop import _plan

    task = _nnx_task()
    grid = {"learning_rate": np.array([1e-3, 1e-2]), "decay": np.array([0.9, 0.99])}
    res = jax_rmsprop.tune(task, grid, 2, seeds=2, seed=5)
    assert set(res.metrics) == {"accuracy", "val_accuracy"}
    assert res.metrics["accuracy"].shape == res.loss.shape == (2, 2, 2, 2)
    for i, j, s in [(1, 0, 0), (0, 1, 1)]:
        init_key, shuffle_key = _plan.seed_keys(5, s)
        tx = jax_rmsprop.rmsprop(grid["learning_rate"][i], decay=grid["decay"][j])
        hist = jax_rmsprop.fit(
            task.loss,
            task.init(init_key),
            tx,
            task.data,
            epochs=2,
            batch_size=32,
            key=shuffle_key,
            validation=task.validation,
        )
        for name, got in [
            ("loss", res.loss),
            ("val_loss", res.val_loss),
            ("accuracy", res.metrics["accuracy"]),
            ("val_accuracy", res.metrics["val_accuracy"]),
        ]:
            np.testing.assert_allclose(
                got[i, j, s], hist.history[name], rtol=2e-5, atol=1e-6, err_msg=name
            )
    # ranked by validation accuracy, highest first (auto mode)
    top = res.best(2, by="val_accuracy")
    mean = res.metrics["val_accuracy"][..., -1].mean(-1)
    assert top[0]["score"] == pytest.approx(mean.max()) and top[0]["score"] >= top[1]["score"]
    with pytest.raises(ValueError, match="`by='f1'` is not recorded"):
        res.best(1, by="f1")


def test_a_sweep_of_the_functional_form_uses_the_seed_model_key():
    from jax_rmsprop import _plan

    params, data = _plateau_problem()

    def loss(p, state, batch, *, key, training):
        noise = jax.random.normal(key, (), jnp.float32) * 0.01 if training else 0.0
        return _mse(p, batch) + noise, state + 1, {"steps": state.astype(jnp.float32)}

    def init(key):
        return {"w": 0.1 * jax.random.normal(key, (3,), jnp.float32)}, jnp.zeros((), jnp.int32)

    task = jax_rmsprop.Task(loss, init, data, 16, model_state=True)
    res = jax_rmsprop.tune(task, {"learning_rate": np.array([0.01, 0.1])}, 3, seeds=2)
    init_key, shuffle_key = _plan.seed_keys(0, 1)
    p0, s0 = init(init_key)
    hist = jax_rmsprop.fit(
        loss,
        p0,
        jax_rmsprop.rmsprop(0.1),
        data,
        epochs=3,
        batch_size=16,
        key=shuffle_key,
        state=s0,
        rng=_plan.model_key(0, 1),
    )
    np.testing.assert_allclose(res.loss[1, 1], hist.loss, rtol=1e-5)
    np.testing.assert_allclose(res.metrics["steps"][1, 1], hist.history["steps"], rtol=1e-6)
    assert int(hist.state) == 12  # the state went through every step: 3 epochs x 4 batches


@pytest.mark.slow
def test_a_resumed_sweep_keeps_its_metrics(tmp_path):
    task = _nnx_task(n=128, rate=0.0)
    grid = {"learning_rate": np.array([1e-3, 1e-2, 3e-2])}
    first = jax_rmsprop.tune(task, grid, 3, halving=3, checkpoint=tmp_path, chunk_size=1)
    again = jax_rmsprop.tune(task, grid, 3, halving=3, checkpoint=tmp_path, chunk_size=1)
    for name in first.metrics:
        np.testing.assert_array_equal(again.metrics[name], first.metrics[name])
    assert np.isnan(first.metrics["val_accuracy"][..., -1]).sum() == 2  # two not continued


@pytest.mark.slow
def test_an_nnx_fit_with_a_checkpoint_continues_bit_identical(tmp_path):
    """The module's RNG streams (typed keys) are saved as their data and wrapped again."""
    train, val = _digits(200)
    tx = jax_rmsprop.rmsprop(1e-3)

    def run(epochs, checkpoint=None):
        model = Net(nnx.Rngs(0, dropout=1), hidden=16, rate=0.5)
        hist = jax_rmsprop.fit(
            loss_and_accuracy,
            model,
            tx,
            train,
            epochs=epochs,
            batch_size=32,
            key=jax.random.key(2),
            validation=val,
            checkpoint=checkpoint,
        )
        return model, hist

    run(2, tmp_path)
    resumed_model, resumed = run(4, tmp_path)  # a fresh module: epochs 2, 3 from the file
    whole_model, whole = run(4)
    for k in whole.history:
        np.testing.assert_array_equal(resumed.history[k], whole.history[k])
    jax.tree.map(
        np.testing.assert_array_equal,
        checkpoint_data(nnx.state(resumed_model)),
        checkpoint_data(nnx.state(whole_model)),
    )


def checkpoint_data(tree):
    return jax_rmsprop.checkpoint.key_data(tree)


@pytest.mark.slow
def test_a_sweep_returns_the_trained_parameters_of_its_best_configurations():
    """keep_params: each run's final parameters and batch-norm state, equal to fit's; the
    best configuration's by validation accuracy loads back into a module."""
    from jax_rmsprop import _plan

    task = _nnx_task(n=128)
    grid = {"learning_rate": np.array([1e-3, 1e-2])}
    res = jax_rmsprop.tune(task, grid, 2, seeds=2, keep_params=True, halving=2)
    assert jax.tree.leaves(res.params)[0].shape[:2] == (2, 2)
    ((row, params, state),) = res.best_params(1, by="val_accuracy")
    mean = res.metrics["val_accuracy"][..., -1].mean(-1)  # NaN: not continued (halving)
    i = int(np.argmax(np.where(np.isfinite(mean), mean, -np.inf)))
    assert row["learning_rate"] == grid["learning_rate"][i]
    init_key, shuffle_key = _plan.seed_keys(0, 1)
    epochs = int(res.epochs_run[i, 1])
    model = task.init(init_key)
    jax_rmsprop.fit(task.loss, model, jax_rmsprop.rmsprop(grid["learning_rate"][i]), task.data,
                    epochs=epochs, batch_size=32, key=shuffle_key)  # fmt: skip
    loaded = task.init(init_key)
    nnx.update(loaded, jax.tree.map(lambda a: a[1], params), jax.tree.map(lambda a: a[1], state))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
        nnx.state(loaded, nnx.Param),
        nnx.state(model, nnx.Param),
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
        nnx.state(loaded, nnx.BatchStat),
        nnx.state(model, nnx.BatchStat),
    )
