"""Group fit-nnx: one epoch of a dropout + batch-norm Flax NNX digits model.

``fit`` on the module against what an NNX user writes instead, round-robin:

- ``hand-scan``: one hand-written jitted epoch, a ``lax.scan`` over pre-batched data with
  ``nnx.merge`` + ``nnx.value_and_grad`` per step: the limit for this design;
- ``python-loop``: the fast idiomatic NNX loop, a ``jax.jit`` train step over
  ``nnx.split`` state driven from Python;
- ``nnx-optimizer``: the NNX tutorials' loop, ``nnx.jit`` + ``nnx.Optimizer``;
- ``keras``: ``keras.Model.fit`` of the same model (when Keras is installed, JAX backend).

``fit`` is timed for one epoch per call (its fixed cost per call included: the NNX split
and in-place update, checks, copies) and for 10 epochs per call against 10 hand-scan
epochs, which shows the compiled epoch itself.

Model: Dense(32) - BatchNorm - ReLU - Dropout(0.2) - Dense(10), RMSProp(1e-3), batch 32,
on the first 1408 training digits (44 full batches, so every kernel does the same steps).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop

from .helpers import keras_on_jax, round_robin

nnx = pytest.importorskip("flax.nnx")
pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

from tests.training.test_fit import _golden_script  # noqa: E402

BATCH, N = 32, 1408


class Net(nnx.Module):
    def __init__(self, rngs):
        self.dense1 = nnx.Linear(64, 32, rngs=rngs)
        self.bn = nnx.BatchNorm(32, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.dense2 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.dense2(self.drop(nnx.relu(self.bn(self.dense1(x)))))


def loss_fn(model, batch):
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def _model():
    return Net(nnx.Rngs(0, dropout=1))


def _data():
    x, y, _, _ = _golden_script().digits()
    return jnp.asarray(x[:N]), jnp.asarray(y[:N])


def _hand_scan(tx, data, model=None):
    """One jitted epoch: scan over (44, 32, ...) batches, merge + nnx.value_and_grad.

    ``model``: the module to train (default ``_model()``; bench/threefry_lowerings.py
    passes others)."""
    model = _model() if model is None else model
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    batched = jax.tree.map(lambda a: a.reshape(N // BATCH, BATCH, *a.shape[1:]), data)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def epoch(params, rest, opt_state):
        def step(carry, batch):
            params, rest, opt_state = carry
            m = nnx.merge(graph, params, rest)
            f, g = nnx.value_and_grad(loss_fn)(m, batch)
            _, _, rest = nnx.split(m, nnx.Param, ...)
            u, opt_state = tx.update(g, opt_state, params)
            return (optax.apply_updates(params, u), rest, opt_state), f

        return jax.lax.scan(step, (params, rest, opt_state), batched)[0]

    def run():
        run.state = epoch(*run.state)
        jax.block_until_ready(run.state)

    run.state = (params, rest, tx.init(params))
    run.epoch = epoch  # (bench/threefry_lowerings.py compiles it under other lowerings)
    return run


def _python_loop(tx, data):
    """A jitted train step over ``nnx.split`` state, one Python call per batch."""
    model = _model()
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(params, rest, opt_state, batch):
        m = nnx.merge(graph, params, rest)
        f, g = nnx.value_and_grad(loss_fn)(m, batch)
        _, _, rest = nnx.split(m, nnx.Param, ...)
        u, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), rest, opt_state

    x, y = data

    def run():
        s = run.state
        for i in range(0, N, BATCH):
            s = step(*s, (x[i : i + BATCH], y[i : i + BATCH]))
        run.state = jax.block_until_ready(s)

    run.state = (params, rest, tx.init(params))
    return run


def _nnx_optimizer(tx, data):
    """The NNX tutorials' loop: ``nnx.jit`` train step updating an ``nnx.Optimizer``."""
    model = _model()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        f, g = nnx.value_and_grad(loss_fn)(model, batch)
        optimizer.update(model, g)
        return f

    x, y = data

    def run():
        for i in range(0, N, BATCH):
            f = step(model, optimizer, (x[i : i + BATCH], y[i : i + BATCH]))
        jax.block_until_ready(f)

    return run


def _keras(data):
    keras = keras_on_jax()
    if keras is None:
        return None
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = (np.asarray(a) for a in data)
    return lambda epochs=1: model.fit(
        x, y, epochs=epochs, batch_size=BATCH, shuffle=False, verbose=0
    )


@pytest.mark.benchmark(group="fit-nnx")
def test_fit_nnx_epoch(benchmark, device):
    data = _data()
    tx = jax_rmsprop.rmsprop(1e-3)
    model = _model()

    def fit_epoch():
        h = jax_rmsprop.fit(loss_fn, model, tx, data, epochs=1, batch_size=BATCH)
        jax.block_until_ready(h.opt_state)  # (the losses are on the host already)

    def fit_10_epochs():
        h = jax_rmsprop.fit(loss_fn, model, tx, data, epochs=10, batch_size=BATCH)
        jax.block_until_ready(h.opt_state)

    hand = _hand_scan(tx, data)

    def hand_10_epochs():
        for _ in range(10):
            hand()

    kernels = {
        "fit": fit_epoch,
        "hand-scan": hand,
        "fit-10-epochs": fit_10_epochs,
        "hand-scan-10-epochs": hand_10_epochs,
        "python-loop": _python_loop(tx, data),
        "nnx-optimizer": _nnx_optimizer(tx, data),
    }
    keras_epoch = _keras(data)
    if keras_epoch is not None:
        kernels["keras"] = keras_epoch
        kernels["keras-10-epochs"] = lambda: keras_epoch(10)
    for k in kernels.values():  # compile and warm up outside the timer
        k()
    # correctness: from the same module, fit's epoch is the hand-written scan's
    fresh, scan = _model(), _hand_scan(tx, data)
    jax_rmsprop.fit(loss_fn, fresh, tx, data, epochs=1, batch_size=BATCH)
    scan()
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        nnx.state(fresh, nnx.Param),
        scan.state[0],
    )
    med = round_robin(benchmark, kernels, rounds=30, paired=[("fit", "hand-scan")])
    benchmark.extra_info.update(device=device, examples=N, batch_size=BATCH)
    for name in ("hand-scan", "python-loop", "nnx-optimizer", "keras"):
        if name in med:
            benchmark.extra_info[f"{name}/fit"] = round(med[name] / med["fit"], 2)
    # per epoch of a 10-epoch fit: fit's fixed cost per call (NNX split and update,
    # checks, copies) spread over its epochs
    ratio = med["hand-scan-10-epochs"] / med["fit-10-epochs"]
    benchmark.extra_info["hand-scan/fit (10 epochs)"] = round(ratio, 2)
    if "keras-10-epochs" in med:
        ratio = med["keras-10-epochs"] / med["fit-10-epochs"]
        benchmark.extra_info["keras/fit (10 epochs)"] = round(ratio, 2)
