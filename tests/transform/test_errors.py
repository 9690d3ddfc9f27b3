"""Bad input raises ValueError naming the argument, at construction time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_rmsprop


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(learning_rate=-0.1), r"`rmsprop\(learning_rate=...\)` must be in \[0.0, inf\]"),
        (dict(learning_rate=float("nan")), r"learning_rate=.*not NaN"),
        (dict(learning_rate=0.1, decay=1.5), r"`rmsprop\(decay=...\)` must be in \[0.0, 1.0\]"),
        (dict(learning_rate=0.1, decay=-0.1), r"decay="),
        (dict(learning_rate=0.1, eps=-1e-8), r"`rmsprop\(eps=...\)`"),
        (
            dict(learning_rate=0.1, momentum=1.0),
            r"`rmsprop\(momentum=...\)` must be in \[0.0, 1.0\)",
        ),
        (dict(learning_rate=0.1, momentum=-0.5), r"momentum="),
        (dict(learning_rate=0.1, nesterov=True), r"`rmsprop\(nesterov=True\)` needs a `momentum`"),
        (dict(learning_rate=0.1, initial_scale=-1.0), r"initial_scale="),
        (dict(learning_rate=0.1, weight_decay=float("nan")), r"weight_decay="),
        (dict(learning_rate=jnp.array([0.1, -0.2])), r"learning_rate="),
    ],
)
def test_rmsprop_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jax_rmsprop.rmsprop(**kwargs)


def test_traced_values_are_not_checked():
    # Documented: under jit/vmap a bad value cannot be seen, so it is not checked.
    out = jax.jit(lambda lr: jax_rmsprop.rmsprop(lr).init(jnp.ones(2)).nu)(-1.0)
    np.testing.assert_array_equal(out, 0.0)


def test_mismatched_gradient_tree_shows_both_structures():
    tx = jax_rmsprop.rmsprop(0.1)
    state = tx.init({"w": jnp.ones(2), "b": jnp.ones(1)})
    with pytest.raises(ValueError, match=r"(?s)does not match.*gradients: .*'w'.*state.nu: .*'b'"):
        tx.update({"w": jnp.ones(2)}, state)


def test_weight_decay_needs_params():
    tx = jax_rmsprop.rmsprop(0.1, weight_decay=0.01)
    state = tx.init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"weight_decay=.*needs the parameters"):
        tx.update(jnp.ones(2), state)
