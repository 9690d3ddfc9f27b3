"""fit: Keras's Model.fit semantics, against a recorded Keras run and a plain Python loop."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _fit, compat

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "keras_fit_digits.npz"


def _golden_script():
    """scripts/make_fit_golden.py: the data split and model the golden file was made with."""
    spec = importlib.util.spec_from_file_location(
        "make_fit_golden", ROOT / "scripts/make_fit_golden.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classifier_loss(params, batch):
    """Dense-ReLU-Dense, sparse categorical cross-entropy from logits (Keras's model)."""
    x, y = batch
    w1, b1, w2, b2 = params
    logits = jax.nn.relu(x @ w1 + b1[None, :]) @ w2 + b2[None, :]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def test_fit_reproduces_keras_model_fit_on_digits():
    pytest.importorskip("sklearn", reason="scikit-learn ships the digits data set")
    gold = np.load(GOLDEN)
    script = _golden_script()
    x, y, xv, yv = script.digits()
    assert len(x) % script.BATCH != 0  # the partial last batch is part of the check
    w0 = [gold[f"w0/{i}"] for i in range(4)]
    hist = jax_rmsprop.fit(
        classifier_loss,
        w0,
        compat.keras_rmsprop(),
        (x, y),
        epochs=int(script.EPOCHS),
        batch_size=int(script.BATCH),
        validation=(xv, yv),
    )
    msg = str(gold["version"])
    np.testing.assert_allclose(hist.loss, gold["loss"], rtol=1e-5, err_msg=msg)
    np.testing.assert_allclose(hist.val_loss, gold["val_loss"], rtol=1e-5, err_msg=msg)
    for i, w in enumerate(hist.params):
        want = gold[f"final/{i}"]
        assert w.dtype == np.float32
        np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=msg)


def _problem(n=103, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(dtype)
    y = (x @ rng.normal(size=5) + 0.1 * rng.normal(size=n)).astype(dtype)
    params = {"w": np.zeros(5, dtype), "b": np.zeros((), dtype)}
    return params, (x, y)


def regression_loss(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def _python_loop(tx, params, data, epochs, batch_size, orders, drop_last=False):
    """The reference: a Python loop over NumPy-sliced batches, one tx.update each."""
    x, y = data
    p = jax.tree.map(jnp.asarray, params)
    s = tx.init(p)
    losses = []
    for order in orders[:epochs]:
        total, count = 0.0, 0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            f, g = jax.value_and_grad(regression_loss)(p, (x[idx], y[idx]))
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
            total, count = total + float(f) * len(idx), count + len(idx)
        losses.append(total / count)
    return p, np.array(losses)


@pytest.mark.parametrize("batch_size", [1, 10, 103])
@pytest.mark.parametrize("drop_last", [False, True])
def test_fit_equals_a_python_loop_over_batches(batch_size, drop_last):
    params, data = _problem()
    tx = jax_rmsprop.rmsprop(0.01, momentum=0.9)
    hist = jax_rmsprop.fit(
        regression_loss, params, tx, data, epochs=3, batch_size=batch_size, drop_last=drop_last
    )
    orders = [np.arange(103)] * 3
    p, losses = _python_loop(tx, params, data, 3, batch_size, orders, drop_last)
    np.testing.assert_allclose(hist.loss, losses, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), hist.params, p)
    assert int(hist.opt_state.count) == 3 * (
        103 // batch_size + (0 if drop_last else 103 % batch_size > 0)
    )


def test_shuffling_is_a_fresh_permutation_per_epoch_deterministic_per_key():
    params, data = _problem()
    tx = jax_rmsprop.rmsprop(0.01)
    key = jax.random.key(42)
    a = jax_rmsprop.fit(regression_loss, params, tx, data, epochs=3, batch_size=16, key=key)
    b = jax_rmsprop.fit(regression_loss, params, tx, data, epochs=3, batch_size=16, key=key)
    np.testing.assert_array_equal(a.loss, b.loss)
    other = jax_rmsprop.fit(
        regression_loss, params, tx, data, epochs=3, batch_size=16, key=jax.random.key(7)
    )
    assert not np.array_equal(a.loss, other.loss)
    # the documented order: jax.random.permutation(jax.random.fold_in(key, epoch), n)
    orders = [np.asarray(jax.random.permutation(jax.random.fold_in(key, e), 103)) for e in range(3)]
    assert all(sorted(o) == list(range(103)) for o in orders)
    assert not np.array_equal(orders[0], orders[1])
    p, losses = _python_loop(tx, params, data, 3, 16, orders)
    np.testing.assert_allclose(a.loss, losses, rtol=1e-12)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-12), a.params, p)


def test_validation_loss_is_the_loss_on_the_validation_set_after_each_epoch():
    params, data = _problem()
    _, val = _problem(n=45, seed=1)
    tx = jax_rmsprop.rmsprop(0.05)
    seen = []
    hist = jax_rmsprop.fit(
        regression_loss,
        params,
        tx,
        data,
        epochs=3,
        batch_size=20,
        validation=val,
        callback=lambda e, f, v: seen.append((e, f, v)),
    )
    one = jax_rmsprop.fit(regression_loss, params, tx, data, epochs=1, batch_size=20)
    np.testing.assert_allclose(hist.val_loss[0], regression_loss(one.params, val), rtol=1e-12)
    assert [s[0] for s in seen] == [0, 1, 2]
    np.testing.assert_allclose([s[1] for s in seen], hist.loss, rtol=1e-15)
    np.testing.assert_allclose([s[2] for s in seen], hist.val_loss, rtol=1e-15)
    final = regression_loss(hist.params, val)
    np.testing.assert_allclose(hist.val_loss[-1], final, rtol=1e-12)


def test_continuing_from_a_history_equals_one_longer_fit():
    params, data = _problem()
    tx = jax_rmsprop.rmsprop(0.01, centered=True)
    whole = jax_rmsprop.fit(regression_loss, params, tx, data, epochs=4, batch_size=16)
    first = jax_rmsprop.fit(regression_loss, params, tx, data, epochs=2, batch_size=16)
    rest = jax_rmsprop.fit(
        regression_loss, first.params, tx, data, epochs=2, batch_size=16, opt_state=first.opt_state
    )
    np.testing.assert_array_equal(np.concatenate([first.loss, rest.loss]), whole.loss)
    jax.tree.map(np.testing.assert_array_equal, rest.params, whole.params)


def test_flat_params_train_like_the_tree():
    params, data = _problem(dtype=np.float32)
    tx = jax_rmsprop.rmsprop(0.01)
    tree = jax_rmsprop.fit(regression_loss, params, tx, data, epochs=2, batch_size=10)
    flat = jax_rmsprop.fit(
        lambda f, b: regression_loss(f.tree, b),
        jax_rmsprop.flatten(jax.tree.map(jnp.asarray, params)),
        tx,
        data,
        epochs=2,
        batch_size=10,
    )
    np.testing.assert_allclose(flat.loss, tree.loss, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), flat.params.tree, tree.params
    )


def test_a_second_call_reuses_the_compiled_epoch():
    """One program for one-epoch calls (on the caller's arrays), one for longer calls."""
    params, data = _problem()
    tx = jax_rmsprop.rmsprop(0.01)
    jax_rmsprop.fit(regression_loss, params, tx, data, epochs=1, batch_size=16)
    jax_rmsprop.fit(regression_loss, params, tx, data, epochs=2, batch_size=16)
    before = _fit._epoch._cache_size(), _fit._one_epoch._cache_size()
    other = jax.tree.map(lambda a: a + 1.0, params)
    jax_rmsprop.fit(regression_loss, other, tx, data, epochs=3, batch_size=16)
    jax_rmsprop.fit(regression_loss, other, tx, data, epochs=2, initial_epoch=1, batch_size=16)
    assert (_fit._epoch._cache_size(), _fit._one_epoch._cache_size()) == before


def test_equal_optimizers_share_the_compiled_epoch():
    """A fresh but equal ``rmsprop(...)`` per call (what a loop writes) compiles once;
    so does one with other numbers (they are traced); another variant compiles anew.
    (``batch_size=13``, used by no other test, keeps earlier tests' programs out.)"""
    params, data = _problem()
    jax_rmsprop.fit(regression_loss, params, jax_rmsprop.rmsprop(0.02), data, epochs=1,
                    batch_size=13)  # fmt: skip
    before = _fit._one_epoch._cache_size()
    for _ in range(3):
        jax_rmsprop.fit(regression_loss, params, jax_rmsprop.rmsprop(0.02), data, epochs=1,
                        batch_size=13)  # fmt: skip
    assert _fit._one_epoch._cache_size() == before
    assert jax_rmsprop.rmsprop(0.02) == jax_rmsprop.rmsprop(0.02)
    tx = jax_rmsprop.rmsprop(0.02)  # its functions still jit on their own
    jax.jit(tx.update)(*[jnp.ones(2)] * 1, jax.jit(tx.init)(jnp.ones(2)), jnp.ones(2))
    assert jax_rmsprop.compat.torch_rmsprop(lr=0.1) == jax_rmsprop.compat.torch_rmsprop(lr=0.1)
    assert jax_rmsprop.rmsprop(0.02) != jax_rmsprop.rmsprop(0.03)
    assert jax_rmsprop.rmsprop(0.02) != jax_rmsprop.rmsprop(0.02, centered=True)
    assert jax_rmsprop.rmsprop(0.02) != jax_rmsprop.rmsprop(np.float32(0.02))  # another dtype
    jax_rmsprop.fit(regression_loss, params, jax_rmsprop.rmsprop(0.03, 0.8, momentum=0.5),
                    data, epochs=1, batch_size=13)  # fmt: skip
    jax_rmsprop.fit(regression_loss, params, jax_rmsprop.rmsprop(0.03, 0.8, momentum=0.2),
                    data, epochs=1, batch_size=13)  # fmt: skip
    assert _fit._one_epoch._cache_size() == before + 1  # momentum adds a trace: one new program
    jax_rmsprop.fit(regression_loss, params, jax_rmsprop.rmsprop(0.03, centered=True), data,
                    epochs=1, batch_size=13)  # fmt: skip
    assert _fit._one_epoch._cache_size() == before + 2


def _not_scalar(params, batch):
    return batch[0] @ params["w"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(data=(np.zeros((10, 5)), np.zeros(9))), r"`fit\(data=...\)`: every array needs"),
        (dict(batch_size=0), r"`fit\(batch_size=...\)` must be an int in \[1, 103\]"),
        (dict(batch_size=104), r"`fit\(batch_size=...\)`"),
        (dict(batch_size=2.5), r"`fit\(batch_size=...\)`"),
        (dict(epochs=0), r"`fit\(epochs=...\)` must be a positive int"),
        (dict(loss=_not_scalar), r"`fit\(loss=...\)` must return a scalar"),
        (
            dict(validation=(np.zeros((4, 5)), np.zeros(3))),
            r"`fit\(validation=...\)`: every array needs",
        ),
        (dict(validation=np.zeros((4, 5))), r"`fit\(validation=...\)` must have the structure"),
    ],
)
def test_bad_input_is_refused_before_compiling(kwargs, match):
    params, data = _problem()
    args = dict(loss=regression_loss, data=data, epochs=1, batch_size=10) | kwargs
    programs = lambda: (_fit._epoch._cache_size(), _fit._one_epoch._cache_size())  # noqa: E731
    before = programs()
    with pytest.raises(ValueError, match=match):
        jax_rmsprop.fit(
            args.pop("loss"), params, jax_rmsprop.rmsprop(0.1), args.pop("data"), **args
        )
    assert programs() == before


def test_verbose_follows_keras_a_bar_or_a_line_per_epoch(capsys):
    """verbose=2: one line per epoch on stdout; verbose=1: a bar over the epochs (tqdm,
    or a carriage-return line on stderr) ending at the last epoch with its logs."""
    params, data = _problem()
    tx = jax_rmsprop.rmsprop(0.01)
    kw = dict(epochs=3, batch_size=16)
    hist = jax_rmsprop.fit(regression_loss, params, tx, data, verbose=2, **kw)
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in out] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert out[-1] == f"Epoch 3/3 - loss: {hist.loss[-1]:.4g}"
    jax_rmsprop.fit(regression_loss, params, tx, data, verbose=1, **kw)
    got = capsys.readouterr()
    assert got.out == ""
    assert "3/3" in got.err and f"loss: {hist.loss[-1]:.4g}" in got.err.splitlines()[-1]
