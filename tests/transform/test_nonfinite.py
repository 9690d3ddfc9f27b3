"""Non-finite gradients: with optax.apply_if_finite, and what happens without it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jax_rmsprop

from ..helpers import run_steps

RNG = np.random.default_rng(7)
GOOD = [jnp.asarray(RNG.standard_normal(5), jnp.float32) for _ in range(4)]
NAN = GOOD[0].at[2].set(jnp.nan)
INF = GOOD[0].at[0].set(jnp.inf)


def _inner():
    return jax_rmsprop.rmsprop(
        optax.linear_schedule(0.1, 0.01, 10), momentum=0.9, centered=True, bias_correction=False
    )


def _run(tx, grads):
    """The final params, the states (initial one first) and the updates."""
    params, states, updates = run_steps(tx, jnp.linspace(-1, 1, 5, dtype=jnp.float32), grads)
    return params[-1], states, updates


def _assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_apply_if_finite_skips_bad_steps_and_leaves_the_state_untouched():
    tx = optax.apply_if_finite(_inner(), max_consecutive_errors=5)
    seq = [GOOD[0], NAN, GOOD[1], INF, INF, GOOD[2], GOOD[3]]
    p, states, updates = _run(tx, seq)
    for i in (1, 3, 4):  # skipped: zero update, inner state (count included) unchanged
        np.testing.assert_array_equal(updates[i], 0.0)
        _assert_trees_equal(states[i + 1].inner_state, states[i].inner_state)
    assert int(states[5].notfinite_count) == 2
    assert int(states[-1].total_notfinite) == 3
    # the run equals one that never saw the bad gradients, bit for bit
    p_clean, states_clean, _ = _run(_inner(), [GOOD[0], GOOD[1], GOOD[2], GOOD[3]])
    np.testing.assert_array_equal(p, p_clean)
    _assert_trees_equal(states[-1].inner_state, states_clean[-1])


def test_without_apply_if_finite_a_nan_poisons_only_its_element():
    """Documented behaviour: the NaN enters nu (and mu, trace) of that element for good;
    the other elements are computed exactly as without it."""
    p, _, updates = _run(_inner(), [GOOD[0], NAN, GOOD[1], GOOD[2]])
    # NAN is GOOD[0] with element 2 set to NaN
    p_clean, _, updates_clean = _run(_inner(), [GOOD[0], GOOD[0], GOOD[1], GOOD[2]])
    others = np.array([0, 1, 3, 4])
    for u, u_clean in zip(updates[1:], updates_clean[1:]):
        assert np.isnan(u[2])
        np.testing.assert_array_equal(np.asarray(u)[others], np.asarray(u_clean)[others])
    assert np.isnan(p[2])
    np.testing.assert_array_equal(np.asarray(p)[others], np.asarray(p_clean)[others])


def test_an_infinite_gradient_gives_nan_in_its_element():
    _, _, updates = _run(_inner(), [INF, GOOD[1]])
    assert np.isnan(updates[0][0]) and np.isnan(updates[1][0])
    assert np.isfinite(np.asarray(updates[1])[1:]).all()
