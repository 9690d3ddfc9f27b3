"""Memory: one state array per param per moment, and no hidden copies in a donated step.

XLA's own accounting of the compiled step (``compile().memory_analysis()``) on abstract
1e8-element float32 inputs: nothing is allocated, so this runs anywhere in milliseconds.
"""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

import jax_rmsprop

N = 10**8
F32 = 4
VARIANTS = {
    # name: (options, state arrays per param)
    "plain": (dict(), 1),
    "centered": (dict(centered=True), 2),
    "centered_momentum": (dict(centered=True, momentum=0.9), 3),
}


def _stats(tx, donate, dtype=jnp.float32):
    """The abstract state and XLA's memory accounting of the compiled step on N elements."""
    params = jax.ShapeDtypeStruct((N,), dtype)
    state = jax.eval_shape(tx.init, params)

    @functools.partial(jax.jit, donate_argnums=(0, 1) if donate else ())
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return state, step.lower(params, state, params).compile().memory_analysis()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_is_one_array_per_param_per_moment(variant):
    kw, arrays = VARIANTS[variant]
    state, _ = _stats(jax_rmsprop.rmsprop(1e-3, **kw), donate=True)
    big = [x for x in jax.tree.leaves(state) if x.size == N]
    assert len(big) == arrays
    assert all(x.dtype == jnp.float32 for x in big)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_donated_step_has_no_hidden_copies(variant):
    kw, arrays = VARIANTS[variant]
    _, m = _stats(jax_rmsprop.rmsprop(1e-3, **kw), donate=True)
    # inputs: params, grads and the state; outputs: params and state, written in place
    assert m.argument_size_in_bytes == pytest.approx((2 + arrays) * N * F32, abs=1024)
    assert m.output_size_in_bytes == pytest.approx((1 + arrays) * N * F32, abs=1024)
    assert m.alias_size_in_bytes == pytest.approx((1 + arrays) * N * F32, abs=1024)
    assert m.temp_size_in_bytes < 1024 * 1024  # no N-sized temporary
    peak = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
    assert peak + m.temp_size_in_bytes < (2 + arrays + 0.01) * N * F32


def test_without_donation_the_outputs_are_new_buffers():
    """The positive control: the same accounting sees the copies donation avoids."""
    _, m = _stats(jax_rmsprop.rmsprop(1e-3), donate=False)
    assert m.alias_size_in_bytes == 0
    assert m.output_size_in_bytes == pytest.approx(2 * N * F32, abs=1024)


def test_bf16_params_with_float32_state_store_no_more_than_that():
    tx = jax_rmsprop.rmsprop(1e-3, state_dtype=jnp.float32)
    state, m = _stats(tx, donate=True, dtype=jnp.bfloat16)
    assert [x.dtype for x in jax.tree.leaves(state) if x.size == N] == [jnp.float32]
    assert m.temp_size_in_bytes < 1024 * 1024
    assert m.alias_size_in_bytes == pytest.approx(N * (2 + 4), abs=1024)
