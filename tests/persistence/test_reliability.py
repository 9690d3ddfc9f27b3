"""Edge cases an optimizer must survive (a first part of the reliability issue)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop

from ..helpers import apply_sequence


def test_step_count_saturates_at_int32_max():
    tx = jax_rmsprop.rmsprop(optax.constant_schedule(0.1), bias_correction=True)
    state = tx.init(jnp.ones(3))._replace(count=jnp.asarray(np.iinfo(np.int32).max, jnp.int32))
    u, state = tx.update(jnp.ones(3), state, jnp.ones(3))
    assert int(state.count) == np.iinfo(np.int32).max
    assert np.isfinite(np.asarray(u)).all()


@pytest.mark.parametrize("eps", [0.0, 1e-8])
@pytest.mark.parametrize("kw", [dict(), dict(eps_in_sqrt=True), dict(centered=True, momentum=0.9)])
def test_zero_gradients_forever_give_zero_updates(eps, kw):
    tx = jax_rmsprop.rmsprop(0.1, eps=eps, **kw)
    p = jnp.ones(4, jnp.float32)
    state = tx.init(p)
    step = jax.jit(tx.update)
    for _ in range(5):
        u, state = step(jnp.zeros(4, jnp.float32), state, p)
        np.testing.assert_array_equal(u, 0.0)


@pytest.mark.parametrize("eps", [0.0, 1e-8])
@pytest.mark.parametrize("magnitude", [1e-30, 1e-20, 1e-10, 1.0, 1e10, 1e18])
def test_extreme_float32_gradients_give_bounded_finite_updates(magnitude, eps):
    lr, decay = 0.1, 0.9
    tx = jax_rmsprop.rmsprop(lr, decay=decay, eps=eps)
    p = jnp.zeros(3, jnp.float32)
    g = jnp.asarray([magnitude, -magnitude, magnitude], jnp.float32)
    state = tx.init(p)
    for _ in range(3):
        u, state = jax.jit(tx.update)(g, state, p)
        u = np.asarray(u)
        assert np.isfinite(u).all()
        assert (np.abs(u) <= lr / np.sqrt(1 - decay) * (1 + 1e-6)).all()
        assert (np.sign(u) == -np.sign(np.asarray(g))).all()


def test_jit_and_eager_agree_and_runs_are_deterministic():
    tx = jax_rmsprop.rmsprop(0.01, momentum=0.9, centered=True, eps=1e-6)
    grads = jax.random.normal(jax.random.PRNGKey(1), (10, 6), jnp.float32)

    p0 = jnp.linspace(-1, 1, 6, dtype=jnp.float32)
    run = lambda wrap: apply_sequence(tx, p0, grads, wrap)[-1]  # noqa: E731
    a, b = run(jax.jit), run(jax.jit)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(run(lambda f: f), a, rtol=1e-6)
