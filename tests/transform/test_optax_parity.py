"""rmsprop equals optax.rmsprop over its whole option grid (and scale_by_rms its parts)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop

from ..helpers import apply_sequence, assert_close_path, complex_grads, complex_x0, optax_rules

GRID = [
    dict(eps_in_sqrt=e, centered=c, momentum=m, nesterov=n, bias_correction=b, initial_scale=i)
    for e, c, m, n, b, i in itertools.product(
        [False, True], [False, True], [None, 0.9], [False, True], [False, True], [0.0, 0.5]
    )
    if not (n and m is None)
]


def _grads(dtype, steps=30, shape=(3, 4)):
    g = jax.random.normal(jax.random.PRNGKey(7), (steps, *shape), dtype)
    return g.at[::4, 0, 0].set(0.0)  # exact zeros in the sequence


def _assert_degenerate_case(ours, ref, eps_in_sqrt, rtol):
    """centered + bias_correction: the variance is exactly 0 on step 1 and rounds to ±1e-17.

    With eps inside the root, optax keeps the rounding-negative value next to eps (a ~1e-8
    relative shift) where we clamp at 0. With eps outside, step 1 is g / (sqrt(±1e-17) + eps):
    rounding noise in both libraries (optax: NaN for the negative ones), nothing to compare;
    ours stays finite.
    """
    assert np.isfinite(ours).all()
    if eps_in_sqrt:
        assert_close_path(ours, ref, rtol=rtol)


def _ids(kw):
    return "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("kw", GRID, ids=_ids)
def test_float64_equal_to_optax(kw, maybe_jit):
    grads = _grads(jnp.float64)
    x0 = jnp.linspace(-1, 1, 12, dtype=jnp.float64).reshape(3, 4)
    ours = apply_sequence(jax_rmsprop.rmsprop(0.01, 0.9, 1e-8, **kw), x0, grads, maybe_jit)
    with optax_rules():
        ref = apply_sequence(optax.rmsprop(0.01, 0.9, 1e-8, **kw), x0, grads, maybe_jit)
    if kw["centered"] and kw["bias_correction"]:
        _assert_degenerate_case(ours, ref, kw["eps_in_sqrt"], rtol=1e-7)
    elif maybe_jit is jax.jit:
        # Each program is fused by XLA on its own: at most an ulp or two apart.
        assert_close_path(ours, ref, rtol=1e-14)
    else:
        np.testing.assert_array_equal(ours, ref)  # op by op: bit for bit


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64], ids=["float32", "complex64"])
@pytest.mark.parametrize(
    "every", [5, pytest.param(1, marks=pytest.mark.slow)], ids=["every-5th", "whole-grid"]
)
def test_single_precision_bit_identical_to_optax(dtype, every):
    """Each step's parameters equal optax's bit for bit, complex64 included.

    complex64 holds because the second moment is computed as optax computes its complex
    one (see ``_transform._moments``); it drifted by ~1e-6 a step before. The one
    exception is centered + bias_correction, where the step-1 variance is rounding noise
    that we clamp at 0 (see ``_assert_degenerate_case``).
    """
    if dtype == jnp.float32:
        grads = _grads(jnp.float32)
        x0 = jnp.linspace(-1, 1, 12, dtype=jnp.float32).reshape(3, 4)
    else:
        grads, x0 = complex_grads(dtype), complex_x0(dtype)
    for kw in GRID[::every]:
        ours = apply_sequence(jax_rmsprop.rmsprop(0.01, 0.9, 1e-6, **kw), x0, grads)
        with optax_rules():
            ref = apply_sequence(optax.rmsprop(0.01, 0.9, 1e-6, **kw), x0, grads)
        assert ours.dtype == np.dtype(dtype)
        if kw["centered"] and kw["bias_correction"]:
            if dtype == jnp.float32:  # float32's zero variance (~1e-7 g^2) is as large as eps
                _assert_degenerate_case(ours, ref, eps_in_sqrt=False, rtol=None)
            continue
        np.testing.assert_array_equal(ours, ref, err_msg=_ids(kw))


def test_schedule_matches_optax():
    sched = optax.exponential_decay(0.05, transition_steps=3, decay_rate=0.5)
    grads = _grads(jnp.float64)
    x0 = jnp.ones((3, 4))
    ours = apply_sequence(jax_rmsprop.rmsprop(sched, momentum=0.5), x0, grads)
    ref = apply_sequence(optax.rmsprop(sched, momentum=0.5, eps_in_sqrt=False), x0, grads)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_scale_by_rms_matches_optax_building_block(centered, eps_in_sqrt):
    # (centered + bias correction is the degenerate case tested above)
    ref_tx = (optax.scale_by_stddev if centered else optax.scale_by_rms)(
        0.8, 1e-7, eps_in_sqrt=eps_in_sqrt, bias_correction=not centered
    )
    ours_tx = jax_rmsprop.scale_by_rms(
        0.8, 1e-7, eps_in_sqrt=eps_in_sqrt, centered=centered, bias_correction=not centered
    )
    grads = _grads(jnp.float64, steps=10)
    s_ours, s_ref = ours_tx.init(grads[0]), ref_tx.init(grads[0])
    for g in grads:
        u_ours, s_ours = ours_tx.update(g, s_ours)
        with optax_rules():
            u_ref, s_ref = ref_tx.update(g, s_ref)
        np.testing.assert_allclose(u_ours, u_ref, rtol=1e-13)
    np.testing.assert_array_equal(s_ours.nu, s_ref.nu)


def test_chains_with_other_optax_transforms():
    tx = optax.chain(optax.clip_by_global_norm(1.0), jax_rmsprop.rmsprop(0.01))
    ref = optax.chain(optax.clip_by_global_norm(1.0), optax.rmsprop(0.01, eps_in_sqrt=False))
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    grads = jax.tree.map(lambda p: 10 * jnp.ones_like(p), params)
    u1, _ = tx.update(grads, tx.init(params), params)
    u2, _ = ref.update(grads, ref.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, u1, u2)


def test_centered_bias_correction_stays_finite_where_optax_returns_nan():
    # Constant gradients: nu_hat - mu_hat^2 is 0 in exact arithmetic and rounds negative.
    kw = dict(centered=True, bias_correction=True, eps_in_sqrt=False)
    g = jnp.full((64,), 0.3)
    grads = jnp.stack([g] * 5)
    ours = apply_sequence(jax_rmsprop.rmsprop(0.01, 0.9, 1e-8, **kw), g, grads)
    with optax_rules():
        ref = apply_sequence(optax.rmsprop(0.01, 0.9, 1e-8, **kw), g, grads)
    assert np.isnan(ref).any(), "optax no longer returns NaN here; keep the test honest"
    assert np.isfinite(ours).all()
