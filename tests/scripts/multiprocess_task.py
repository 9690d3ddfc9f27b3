"""The small regression task of the multi-process scripts (imported by them, not a test).

``multiprocess_sweep.py`` and ``multiprocess_fault.py`` run as their own processes, with
this folder first on ``sys.path``.
"""

import jax
import numpy as np


def loss(params, batch):
    x, y = batch
    return jax.numpy.mean((x @ params["w"] + params["b"] - y) ** 2)


def init(key):
    return {"w": 0.1 * jax.random.normal(key, (5,)), "b": jax.numpy.zeros(())}


def data():
    """64 examples ``(x, y)`` of a noiseless linear model in 5 features, float32."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    return x, (x @ rng.normal(size=5)).astype(np.float32)
