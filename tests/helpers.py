import jax
import jax.numpy as jnp
import numpy as np
import optax


def apply_sequence(tx, x0, grads, wrap=jax.jit):
    """Feeds a fixed gradient sequence to ``tx``; returns the parameter path (T+1, ...)."""

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = wrap(step)
    p = jnp.asarray(x0)
    s = tx.init(p)
    path = [p]
    for g in grads:
        p, s = step(p, s, jnp.asarray(g, p.dtype))
        path.append(p)
    return np.stack([np.asarray(q) for q in path])


def assert_close_path(actual, expected, rtol, err_msg=""):
    """Elementwise, relative to the path's scale (parameters cross zero)."""
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=err_msg)
