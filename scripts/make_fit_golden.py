"""Regenerates tests/golden/keras_fit_digits.npz: ``keras.Model.fit`` on scikit-learn's digits.

Usage: pip install keras scikit-learn && python scripts/make_fit_golden.py

A Dense(32, relu) - Dense(10) classifier, sparse categorical cross-entropy from logits,
``keras.optimizers.RMSprop()`` with its defaults, ``fit(epochs=5, batch_size=32,
shuffle=False)`` on the first 1437 digits (the last batch has 29 examples), validated on
the other 360. The initial weights are drawn here with NumPy and stored, so the test
starts ``jax_rmsprop.fit`` from the same point. Keras runs on its JAX backend in float32.
"""

import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden" / "keras_fit_digits.npz"
HIDDEN, EPOCHS, BATCH, N_TRAIN = 32, 5, 32, 1437


def digits():
    """(x_train, y_train, x_val, y_val): pixels scaled to [0, 1], labels int32."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def initial_weights(seed=0):
    """He-normal hidden layer, Glorot-scaled output layer, zero biases (float32)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(64, HIDDEN)) * np.sqrt(2.0 / 64)
    w2 = rng.normal(size=(HIDDEN, 10)) * np.sqrt(1.0 / HIDDEN)
    ws = [w1, np.zeros(HIDDEN), w2, np.zeros(10)]
    return [w.astype(np.float32) for w in ws]


def main():
    import keras

    x, y, xv, yv = digits()
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(10)]
    )
    w0 = initial_weights()
    model.set_weights(w0)
    model.compile(
        optimizer=keras.optimizers.RMSprop(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    hist = model.fit(
        x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, validation_data=(xv, yv), verbose=0
    )
    arrays = {f"w0/{i}": w for i, w in enumerate(w0)}
    arrays |= {f"final/{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    arrays["loss"] = np.asarray(hist.history["loss"])
    arrays["val_loss"] = np.asarray(hist.history["val_loss"])
    arrays["version"] = np.array(f"keras {keras.__version__} ({keras.backend.backend()} backend)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT}: loss {arrays['loss']}, val_loss {arrays['val_loss']}")


if __name__ == "__main__":
    main()
