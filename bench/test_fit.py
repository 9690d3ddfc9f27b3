"""Group fit: one epoch of the digits classifier, ``fit`` vs a Python loop vs Keras's fit.

The model and data are the Keras parity test's (Dense(32, relu) - Dense(10) on the 1437
training digits, batch 32, RMSProp with Keras's defaults). Keras runs when installed
(``pip install keras``, JAX backend); otherwise only its kernel is left out.
"""

import functools

import jax
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import compat

from .helpers import keras_digits_classifier, keras_on_jax, round_robin

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

from tests.training.test_fit import _golden_script, classifier_loss  # noqa: E402


def _setup():
    script = _golden_script()
    x, y, _, _ = script.digits()
    return script, (x, y), script.initial_weights()


def _python_loop_epoch(tx, data, w0, batch_size):
    """The usual alternative: a jitted optax step per batch, driven from Python."""

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, batch):
        f, g = jax.value_and_grad(classifier_loss)(params, batch)
        u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state, f

    x, y = (jax.numpy.asarray(a) for a in data)
    n = len(x)

    def epoch():
        params = [jax.numpy.array(w) for w in w0]
        state = tx.init(params)
        for start in range(0, n, batch_size):
            params, state, f = step(
                params, state, (x[start : start + batch_size], y[start : start + batch_size])
            )
        return jax.block_until_ready(params)

    return epoch


def _keras_epoch(data, w0, batch_size):
    keras = keras_on_jax()
    if keras is None:
        return None
    model = keras_digits_classifier(keras)

    def epoch():
        model.set_weights(w0)
        model.fit(*data, epochs=1, batch_size=batch_size, shuffle=False, verbose=0)

    return epoch


@pytest.mark.benchmark(group="fit")
def test_fit_epoch(benchmark, device):
    script, data, w0 = _setup()
    bs = int(script.BATCH)
    tx = compat.keras_rmsprop()

    def fit_epoch():
        h = jax_rmsprop.fit(classifier_loss, w0, tx, data, epochs=1, batch_size=bs)
        return jax.block_until_ready(h.params)

    kernels = {"fit": fit_epoch, "python-loop": _python_loop_epoch(tx, data, w0, bs)}
    keras_epoch = _keras_epoch(data, w0, bs)
    if keras_epoch is not None:
        kernels["keras"] = keras_epoch
    for k in kernels.values():  # compile and warm up outside the timer
        k()
    med = round_robin(benchmark, kernels, rounds=10)
    # correctness: fit's epoch is the Python loop's
    ref = _python_loop_epoch(tx, data, w0, bs)()
    got = fit_epoch()
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    benchmark.extra_info.update(device=device, examples=len(data[0]), batch_size=bs)
    benchmark.extra_info["python-loop/fit"] = round(med["python-loop"] / med["fit"], 2)
    if "keras" in med:
        benchmark.extra_info["keras/fit"] = round(med["keras"] / med["fit"], 2)
    else:
        benchmark.extra_info["keras/fit"] = "keras not installed"
