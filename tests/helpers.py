import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax


def run_steps(tx, x0, grads, wrap=jax.jit):
    """Feeds a fixed gradient sequence to ``tx``.

    Returns the params and states (each starting with the initial one) and the updates,
    as lists, one entry per step.
    """

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, u

    step = wrap(step)
    p = jnp.asarray(x0)
    s = tx.init(p)
    params, states, updates = [p], [s], []
    for g in grads:
        p, s, u = step(p, s, jnp.asarray(g, p.dtype))
        params.append(p)
        states.append(s)
        updates.append(u)
    return params, states, updates


def apply_sequence(tx, x0, grads, wrap=jax.jit):
    """The parameter path (T+1, ...) of :func:`run_steps`."""
    return np.stack([np.asarray(q) for q in run_steps(tx, x0, grads, wrap)[0]])


def assert_close_path(actual, expected, rtol, err_msg=""):
    """Elementwise, relative to the path's scale (parameters cross zero)."""
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


@contextlib.contextmanager
def optax_rules():
    """Runs optax, the reference, under JAX's standard dtype promotion.

    The test suite runs with ``jax_numpy_dtype_promotion="strict"`` to keep our own code
    explicit about dtypes; optax's internals (``abs_sq(g) ** 1``, ``1 - decay ** count``
    with an int32 count, its schedules) mix dtypes and fail there.
    """
    with jax.numpy_dtype_promotion("standard"):
        yield


def reordered_sum_drift(terms: int, dtype=np.float32) -> float:
    """How far a computation may drift, relative, when ``terms`` roundings change order.

    A sum of n terms in any order is within ``(n - 1) u`` of the exact sum, relative to
    the sum of magnitudes (Higham, *Accuracy and Stability of Numerical Algorithms*, 4.2;
    ``u = eps / 2`` is the unit roundoff). A training run sums every example's gradient
    term once per epoch, so ``terms = epochs * examples`` enter its trajectory; taken to
    add up linearly (no amplification by the dynamics) the drift is at most ``terms * u``.
    Data-parallel training differs from one device only in that order, so this bounds it,
    whatever order the machine's reduction picks; a lost or doubled share is off by O(1).
    """
    return terms * float(np.finfo(dtype).eps) / 2


def complex_grads(dtype, steps=30, shape=(3, 4)):
    """Complex gradients with exact zeros and zero imaginary parts in the sequence."""
    re, im = jax.random.normal(jax.random.PRNGKey(11), (2, steps, *shape))
    g = jax.lax.complex(re, im).astype(dtype)
    g = g.at[::4, 0, 0].set(0.0)  # exact zeros
    return g.at[1::4, 1, 1].set(g[1::4, 1, 1].real.astype(dtype))  # zero imaginary parts


def complex_x0(dtype):
    """A complex starting point for ``complex_grads``."""
    x = jnp.linspace(-1, 1, 12).reshape(3, 4)
    return jax.lax.complex(x, x[::-1]).astype(dtype)
