"""Regenerates tests/golden/keras_fit_bn_digits.npz: Keras fit of a batch-norm model, with accuracy.

Usage: pip install keras scikit-learn && KERAS_BACKEND=jax python scripts/make_fit_bn_golden.py

``Dense(32) - BatchNormalization - ReLU - Dense(10)``, compiled with
``RMSprop()`` (its defaults), ``SparseCategoricalCrossentropy(from_logits=True)`` and
``metrics=["accuracy"]``, ``fit(epochs=5, batch_size=32, shuffle=False, validation_data=...)``
on the digits split of ``make_fit_golden.py``. The initial weights are drawn with NumPy and
stored (batch-norm: gamma 1, beta 0, moving mean 0, moving variance 1), so the test starts
the NNX twin from the same point. Keras runs on its JAX backend in float32.
"""

import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_fit_golden import BATCH, EPOCHS, HIDDEN, digits  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/golden/keras_fit_bn_digits.npz"
# Keras's BatchNormalization defaults, which the NNX twin must use
MOMENTUM, EPSILON = 0.99, 1e-3
NAMES = (
    "dense1/kernel",
    "dense1/bias",
    "bn/gamma",
    "bn/beta",
    "bn/moving_mean",
    "bn/moving_var",
    "dense2/kernel",
    "dense2/bias",
)


def initial_weights(seed=1):
    """Keras's ``get_weights()`` order (see NAMES), float32."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(64, HIDDEN)) * np.sqrt(2.0 / 64)
    w2 = rng.normal(size=(HIDDEN, 10)) * np.sqrt(1.0 / HIDDEN)
    one, zero = np.ones(HIDDEN), np.zeros(HIDDEN)
    ws = [w1, rng.normal(size=HIDDEN) * 0.1, one, zero, zero, one, w2, np.zeros(10)]
    return [w.astype(np.float32) for w in ws]


def main():
    import keras

    x, y, xv, yv = digits()
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(HIDDEN),
            keras.layers.BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON),
            keras.layers.ReLU(),
            keras.layers.Dense(10),
        ]
    )
    w0 = initial_weights()
    model.set_weights(w0)
    model.compile(
        optimizer=keras.optimizers.RMSprop(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    hist = model.fit(
        x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, validation_data=(xv, yv), verbose=0
    )
    arrays = {f"w0/{n}": w for n, w in zip(NAMES, w0)}
    arrays |= {f"final/{n}": np.asarray(w) for n, w in zip(NAMES, model.get_weights())}
    for k, v in hist.history.items():
        arrays[f"history/{k}"] = np.asarray(v)
    arrays["version"] = np.array(f"keras {keras.__version__} ({keras.backend.backend()} backend)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT}: " + ", ".join(f"{k} {np.round(v, 4)}" for k, v in hist.history.items()))


if __name__ == "__main__":
    main()
