"""Dtypes: float32/float64/bfloat16/float16 params, state_dtype, injected hyperparameters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop

from ..helpers import run_steps
from ..reference import rmsprop_reference

PARAM_DTYPES = [jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16]
VARIANTS = {
    "plain": dict(),
    "centered_momentum": dict(centered=True, momentum=0.9, eps=1e-6),
    "bias_wd": dict(bias_correction=True, weight_decay=0.01, eps_in_sqrt=True),
}
STEPS = 8


def _eps(dtype):
    return float(jnp.finfo(dtype).eps)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("state_dtype", [None, jnp.float32], ids=["state=param", "state=f32"])
@pytest.mark.parametrize("dtype", PARAM_DTYPES, ids=lambda d: jnp.dtype(d).name)
def test_dtype_matrix(dtype, state_dtype, variant):
    kw = dict(decay=0.99, **VARIANTS[variant])
    tx = jax_rmsprop.rmsprop(0.01, state_dtype=state_dtype, **kw)
    rng = np.random.default_rng(0)
    p0 = jnp.asarray(rng.standard_normal(16), dtype)
    grads = jnp.asarray(rng.standard_normal((STEPS, 16)), dtype)

    params, states, raw_updates = run_steps(tx, p0, grads)
    p, s = params[-1], states[-1]
    for u in raw_updates:
        assert u.dtype == dtype, "updates come back in the gradients' dtype"
    updates = [np.asarray(u, np.float64) for u in raw_updates]
    assert p.dtype == dtype, "the params are not promoted"
    store = jnp.dtype(state_dtype or dtype)
    for name in ("nu", "mu", "trace"):
        for leaf in jax.tree.leaves(getattr(s, name)):
            assert leaf.dtype == store, name
    assert s.count.dtype == jnp.int32

    # Values against the float64 reference fed the same (rounded) gradients: float32
    # arithmetic, the state rounded to its storage each step, the update to the gradients'
    # dtype once.
    g64 = np.asarray(grads, np.float64)
    x0 = np.asarray(p0, np.float64)
    ref_path, ref = rmsprop_reference(x0, g64, lr=0.01, return_updates=True, **kw)
    # (The state is an average: its rounding errors do not add up over the steps.
    # Measured: at most 1.4 eps of the coarser of the two dtypes.)
    wide = store if jnp.finfo(store).bits >= 32 else jnp.float32  # the arithmetic's dtype
    tol = 2 * (_eps(store) + _eps(dtype)) + 4 * _eps(wide)
    scale = np.max(np.abs(ref), axis=1, keepdims=True)
    np.testing.assert_allclose(np.stack(updates) / scale, ref / scale, rtol=0, atol=tol)
    # and the params, rounded to their dtype at every step
    atol = STEPS * (_eps(dtype) * np.max(np.abs(ref_path)) + tol * np.max(scale))
    np.testing.assert_allclose(np.asarray(p, np.float64), ref_path[-1], rtol=0, atol=atol)


@pytest.mark.parametrize("state_dtype", [None, jnp.float32], ids=["state=f16", "state=f32"])
def test_float16_squares_do_not_overflow(state_dtype):
    """g = 300 squares to 9e4 > float16 max (65504); the arithmetic is float32, and the
    stored nu = 0.1 * 9e4 = 9000 fits. (In float16 arithmetic nu is inf, the update 0.)"""
    tx = jax_rmsprop.rmsprop(0.01, decay=0.9, state_dtype=state_dtype)
    p = jnp.zeros(3, jnp.float16)
    u, s = jax.jit(tx.update)(jnp.full(3, 300.0, jnp.float16), tx.init(p), p)
    assert s.nu.dtype == (state_dtype or jnp.float16)
    np.testing.assert_allclose(np.asarray(u, np.float64), -0.01 / np.sqrt(0.1), rtol=1e-3)


def test_injected_hyperparameters_stay_float32_with_bf16_params():
    p = jnp.ones(8, jnp.bfloat16)
    g = jnp.linspace(-1, 1, 8, dtype=jnp.bfloat16)
    make = optax.inject_hyperparams(
        jax_rmsprop.rmsprop, static_args="state_dtype", hyperparam_dtype=jnp.float32
    )
    tx = make(learning_rate=1e-3, decay=0.999, state_dtype=jnp.float32)
    s = tx.init(p)
    for name, value in s.hyperparams.items():
        assert value.dtype == jnp.float32, name
    u, s = jax.jit(tx.update)(g, s, p)
    plain = jax_rmsprop.rmsprop(1e-3, decay=0.999, state_dtype=jnp.float32)
    u_plain, _ = plain.update(g, plain.init(p), p)
    assert u.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(u, np.float32), np.asarray(u_plain, np.float32))


def test_bf16_hyperparameters_are_refused_with_the_fix_in_the_message():
    """optax's default hyperparam_dtype follows the params: decay 0.999 -> 1.0 in bf16."""
    tx = optax.inject_hyperparams(jax_rmsprop.rmsprop)(learning_rate=1e-3, decay=0.999)
    with pytest.raises(ValueError, match=r"hyperparam_dtype=jnp.float32"):
        tx.init(jnp.ones(3, jnp.bfloat16))
    with pytest.raises(ValueError, match=r"rmsprop\(decay=...\)"):
        jax_rmsprop.rmsprop(0.1, decay=jnp.asarray(0.999, jnp.bfloat16))
