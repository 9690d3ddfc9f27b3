"""The documented test problems (the seed articles' functions and a few classics).

Each loss is a ``jax.tree_util.Partial`` of a module-level function, so problem
data (a rotation, a spectrum) travels as traced arguments rather than constants
baked into the program, and two problems of the same kind and shape share one
compiled run or sweep.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

__all__ = [
    "digits_nnx",
    "Problem",
    "Task",
    "digits",
    "coupled",
    "cubic",
    "elongated",
    "get",
    "mlp",
    "names",
    "quadratic",
    "rosenbrock",
    "sphere",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A loss with its documented starting point.

    Attributes:
      name: short name (``jax-rmsprop sweep NAME``).
      loss: ``loss(x) -> scalar``.
      x0: the starting point (an array, or a pytree of arrays for ``mlp``).
      minimizer: the (local) minimizer the optimizer should reach, where known.
      min_loss: ``loss(minimizer)``, where known; tolerances are on ``loss - min_loss``.
    """

    name: str
    loss: Callable[[jax.Array], jax.Array]
    x0: Any
    minimizer: jax.Array | None = None
    min_loss: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A training problem to sweep: what [`fit`][jax_rmsprop.fit] takes but the optimizer.

    The same models as [`fit`][jax_rmsprop.fit]: parameters with a pure loss, a Flax NNX module, or
    the
    functional form with model state (``model_state=True``).

    Attributes:
      loss: ``loss(params, batch)`` (or ``loss(model, batch)`` for an NNX module, or
        ``loss(params, state, batch, *, key, training)`` with ``model_state``), returning a
        scalar or ``(scalar, metrics)`` (the functional form: ``(scalar, state[, metrics])``).
      init: ``init(key)``, the initialisation of one seed: parameters, an NNX module, or
        ``(params, state)`` with ``model_state``.
      data: the training data, arrays sharing their leading axis.
      batch_size: examples per step.
      validation: data to evaluate after each epoch, or ``None``.
      name: a short name for tables and files.
      model_state: ``init`` returns ``(params, state)`` and ``loss`` is the functional
        form (``fit(state=...)``); its key for seed ``s`` is
        ``fold_in(fold_in(key(seed), s), 2)``.
      check_finite: refuse data holding NaN or infinity (``False``: the loss handles
        them, as [`fit`][jax_rmsprop.fit]'s ``check_finite``).
    """

    loss: Callable[..., Any]
    init: Callable[[jax.Array], Any]
    data: Any
    batch_size: int
    validation: Any = None
    name: str = "task"
    model_state: bool = False
    check_finite: bool = True


def _make(name, loss, x0, minimizer=None):
    x0 = jnp.asarray(x0, dtype=jnp.result_type(float))
    min_loss = None
    if minimizer is not None:
        minimizer = jnp.asarray(minimizer, dtype=x0.dtype)
        min_loss = float(loss(minimizer))
    return Problem(name, loss, x0, minimizer, min_loss)


def _sphere(x):
    return jnp.sum(x**2)


def _elongated(x):
    return x[0] ** 2 + 10 * x[1] ** 2


def _coupled(x):
    return 2 * x[0] ** 2 + 2 * x[0] * x[1] + 2 * x[1] ** 2 - 6 * x[0]


def _cubic(x):
    return jnp.sum(x - x**3)


def _rosenbrock(x):
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _rotated_quadratic(eigs, v1, v2, x):
    # y = H1 H2 x with Householder reflections H = I - 2 v v^T: an O(dim) random rotation.
    y = x - 2 * v2 * jnp.dot(v2, x)
    y = y - 2 * v1 * jnp.dot(v1, y)
    return 0.5 * jnp.sum(eigs * y**2)


def sphere() -> Problem:
    """x^2 + y^2 from (5, 4) (seed 000), minimum (0, 0)."""
    return _make("sphere", Partial(_sphere), [5.0, 4.0], [0.0, 0.0])


def elongated() -> Problem:
    """x^2 + 10 y^2 from (1.5, 1.5) (seed 001), minimum (0, 0)."""
    return _make("elongated", Partial(_elongated), [1.5, 1.5], [0.0, 0.0])


def coupled() -> Problem:
    """2x^2 + 2xy + 2y^2 - 6x from (1, 0) (seed 003), minimum (2, -1)."""
    return _make("coupled", Partial(_coupled), [1.0, 0.0], [2.0, -1.0])


def cubic() -> Problem:
    """The cubic x - x^3 from -1 (seed 003), local minimum -1/sqrt(3), unbounded below for x > 1."""
    return _make("cubic", Partial(_cubic), [-1.0], [-1.0 / np.sqrt(3.0)])


def rosenbrock(dim: int = 2) -> Problem:
    """Rosenbrock's valley from (-1.2, 1, -1.2, 1, ...), minimum (1, ..., 1)."""
    if dim < 2:
        raise ValueError(f"`rosenbrock(dim=...)` must be >= 2; got {dim}.")
    x0 = np.tile([-1.2, 1.0], dim // 2 + 1)[:dim]
    return _make(
        f"rosenbrock{dim}" if dim != 2 else "rosenbrock", Partial(_rosenbrock), x0, np.ones(dim)
    )


def quadratic(dim: int = 100, condition: float = 100.0, seed: int = 0) -> Problem:
    """0.5 x^T A x with A = Q diag(λ) Q^T, λ log-spaced in [1, condition], Q a random rotation.

    Any size: Q is two Householder reflections, so the loss costs O(dim). Starts at a
    seeded normal point; minimum 0 at the origin.
    """
    if dim < 1:
        raise ValueError(f"`quadratic(dim=...)` must be >= 1; got {dim}.")
    if not condition >= 1:
        raise ValueError(f"`quadratic(condition=...)` must be >= 1; got {condition}.")
    rng = np.random.default_rng(seed)
    dtype = jnp.result_type(float)
    eigs = np.logspace(0.0, np.log10(condition), dim)
    v1, v2 = (v / np.linalg.norm(v) for v in rng.normal(size=(2, dim)))
    loss = Partial(_rotated_quadratic, *(jnp.asarray(a, dtype) for a in (eigs, v1, v2)))
    return _make(f"quadratic{dim}", loss, rng.normal(size=dim), np.zeros(dim))


def _mlp_loss(x, y, params):
    h = x
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"][None, :])
    pred = (h @ params[-1]["w"])[:, 0] + params[-1]["b"][0]
    return jnp.mean((pred - y) ** 2)


def mlp(seed: int = 0) -> Problem:
    """Seed 002's Keras regression in JAX: an 8-32-32-1 tanh MLP, mean squared error.

    512 synthetic samples ``y = sin(x.w / 2) + 0.1 noise``, full batch; ``x0`` is the
    list of layers ``[{"w", "b"}, ...]`` with scaled normal weights. Minimum unknown.
    """
    rng = np.random.default_rng(seed)
    dtype = jnp.result_type(float)
    x = rng.normal(size=(512, 8))
    y = np.sin(x @ rng.normal(size=8) / 2) + 0.1 * rng.normal(size=512)
    sizes = [8, 32, 32, 1]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    params = [
        {"w": jax.random.normal(k, (m, n), dtype) / np.sqrt(m), "b": jnp.zeros(n, dtype)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]
    loss = Partial(_mlp_loss, jnp.asarray(x, dtype), jnp.asarray(y, dtype))
    return Problem("mlp", loss, params)


_BY_NAME = {
    "sphere": sphere,
    "elongated": elongated,
    "coupled": coupled,
    "cubic": cubic,
    "rosenbrock": rosenbrock,
    "quadratic": quadratic,
    "mlp": mlp,
}


def _classifier_loss(params, batch):
    x, y = batch
    h = jax.nn.relu(x @ params["w1"] + params["b1"][None, :])
    logits = h @ params["w2"] + params["b2"][None, :]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _classifier_init(hidden, key):
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (64, hidden), jnp.float32) * float(np.sqrt(2.0 / 64)),
        "b1": jnp.zeros(hidden, jnp.float32),
        "w2": jax.random.normal(k2, (hidden, 10), jnp.float32) * float(np.sqrt(1.0 / hidden)),
        "b2": jnp.zeros(10, jnp.float32),
    }


def _deep_classifier_loss(params, batch):
    x, y = batch
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"][None, :])
    logits = h @ params[-1]["w"] + params[-1]["b"][None, :]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _deep_classifier_init(sizes, key):
    keys = jax.random.split(key, len(sizes) - 1)
    gains = [2.0] * (len(sizes) - 2) + [1.0]  # He before a ReLU, LeCun before the logits
    return [
        {
            "w": jax.random.normal(k, (m, n), jnp.float32) * float(np.sqrt(gain / m)),
            "b": jnp.zeros(n, jnp.float32),
        }
        for k, m, n, gain in zip(keys, sizes[:-1], sizes[1:], gains)
    ]


def digits(hidden: int | tuple[int, ...] = 32, batch_size: int = 32, n_train: int = 1437) -> Task:
    """Seed 002 on real data: scikit-learn's 8x8 digits, a Dense-ReLU-Dense classifier.

    Sparse categorical cross-entropy from logits, float32; pixels scaled to [0, 1]; the
    first ``n_train`` of the 1797 images train, the rest validate. Needs scikit-learn
    (its data ship with it: nothing is downloaded).

    ``hidden`` a tuple of widths makes a deeper ReLU MLP, ``(512, 512)`` the 64-512-512-10
    classifier: its parameters are a list of layers ``[{"w", "b"}, ...]``, the weights
    ``N(0, 2 / fan_in)`` (``N(0, 1 / fan_in)`` for the logits), the biases 0.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("problems.digits needs scikit-learn: pip install scikit-learn") from err
    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    if isinstance(hidden, tuple):
        loss = Partial(_deep_classifier_loss)
        init = functools.partial(_deep_classifier_init, (64, *hidden, 10))
    else:  # hidden: static (a shape)
        loss, init = Partial(_classifier_loss), functools.partial(_classifier_init, hidden)
    return Task(
        loss,
        init,
        (x[:n_train], y[:n_train]),
        batch_size,
        (x[n_train:], y[n_train:]),
        "digits",
    )


@functools.cache
def _nnx_digits_class():
    """The NNX module class of ``digits_nnx``.

    Made once: flax is imported lazily, and one class keeps one compiled epoch.
    """
    from flax import nnx

    class DigitsNet(nnx.Module):
        """Dense(hidden) - BatchNorm - ReLU - Dropout(rate) - Dense(10)."""

        def __init__(self, hidden: int, rate: float, rngs: nnx.Rngs):
            # no bias before batch-norm, which subtracts the batch mean anyway
            self.dense1 = nnx.Linear(64, hidden, use_bias=False, rngs=rngs)
            self.bn = nnx.BatchNorm(hidden, rngs=rngs)
            self.drop = nnx.Dropout(rate, rngs=rngs)
            self.dense2 = nnx.Linear(hidden, 10, rngs=rngs)

        def __call__(self, x):
            return self.dense2(self.drop(nnx.relu(self.bn(self.dense1(x)))))

    return DigitsNet


def _nnx_digits_net(hidden: int, rate: float, key: jax.Array):
    from flax import nnx

    return _nnx_digits_class()(hidden, rate, nnx.Rngs(key))


def _nnx_digits_loss(model, batch):
    x, y = batch
    logits = model(x)
    logp = jax.nn.log_softmax(logits, axis=-1)
    xent = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    hits = (jnp.argmax(logits, axis=-1).astype(y.dtype) == y).astype(jnp.float32)
    return xent, {"accuracy": jnp.mean(hits)}


def digits_nnx(hidden: int = 32, rate: float = 0.2, batch_size: int = 32) -> Task:
    """The digits task with a Flax NNX model: dropout, batch-norm, and accuracy.

    ``init(key)`` returns a ``Dense(hidden) - BatchNorm - ReLU - Dropout(rate) -
    Dense(10)`` module (its dropout stream drawn from ``key``); the loss returns the
    cross-entropy and ``{"accuracy": ...}``. Needs flax and scikit-learn.
    """
    if importlib.util.find_spec("flax") is None:  # (imported when a module is made)
        raise ImportError("problems.digits_nnx needs flax: pip install 'jax-rmsprop[plot]'")
    base = digits(hidden, batch_size)
    init = functools.partial(_nnx_digits_net, hidden, rate)
    return Task(_nnx_digits_loss, init, base.data, batch_size, base.validation, "digits-nnx")


_TASKS = {"digits": digits}


def names(kind: str | None = None) -> list[str]:
    """The names ``get`` knows (``jax-rmsprop sweep NAME``): problems and tasks.

    ``kind``: ``"task"`` or ``"problem"`` for those only.
    """
    if kind == "task":
        return sorted(_TASKS)
    if kind == "problem":
        return sorted(_BY_NAME)
    return sorted([*_BY_NAME, *_TASKS])


def get(name: str) -> Problem | Task:
    """The problem or task called ``name``, with its documented defaults."""
    make: Callable[[], Problem | Task] | None = _BY_NAME.get(name) or _TASKS.get(name)
    if make is None:
        known = ", ".join(names())
        raise ValueError(f"unknown problem {name!r}; known problems: {known}.")
    return make()
