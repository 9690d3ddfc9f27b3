"""Bad input raises ValueError naming the argument, at construction time."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
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


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: jax_rmsprop.rmsprop("0.01"), TypeError,
         r"^`rmsprop\(learning_rate=...\)` must be a number, an array or a schedule; got the "
         r"text '0.01' \(write learning_rate=0.01\)\.$"),
        (lambda: jax_rmsprop.rmsprop(0.1, decay="x"), TypeError, r"`rmsprop\(decay=...\)`.*'x'"),
        (lambda: jax_rmsprop.rmsprop(None), ValueError,
         r"^`rmsprop\(learning_rate=None\)`: learning_rate must be a number, an array or a "
         r"schedule \(None would step up the gradient\); e.g. rmsprop\(1e-3\)\.$"),
        (lambda: jax_rmsprop.rmsprop(0.1, decay=1.0), ValueError,
         r"^`rmsprop\(decay=1.0\)` with initial_scale=0 keeps the mean square at 0 forever"),
        (lambda: jax_rmsprop.rmsprop(0.1, decay=jnp.array([0.9, 1.0])), ValueError,
         r"`rmsprop\(decay=1.0\)`"),
        (lambda: jax_rmsprop.scale_by_rms(decay=1.0), ValueError, r"`scale_by_rms\(decay=1.0\)`"),
    ],
)  # fmt: skip
def test_text_none_and_a_frozen_zero_average_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_decay_one_with_an_initial_scale_is_sgd_with_a_fixed_step():
    """Documented: nu stays at initial_scale, so each update is -lr g / (sqrt(s) + eps)."""
    tx = jax_rmsprop.rmsprop(0.1, decay=1.0, eps=1e-8, initial_scale=4.0)
    params = jnp.array([1.0, -2.0])
    state = tx.init(params)
    for g in ([0.5, 3.0], [-1.0, 0.25]):
        u, state = tx.update(jnp.array(g), state, params)
        np.testing.assert_allclose(u, -0.1 * np.array(g) / (2.0 + 1e-8), rtol=1e-6)
    np.testing.assert_array_equal(state.nu, 4.0)


def test_params_as_a_list_of_python_floats_work_as_optax_takes_them():
    """optax.rmsprop takes a list of floats as params; so does ours, with its numbers."""
    params, grads = [1.0, -2.0], [0.5, 3.0]
    ours = jax_rmsprop.rmsprop(0.1, eps_in_sqrt=True, momentum=0.9)  # optax's convention
    theirs = optax.rmsprop(0.1, momentum=0.9)
    u_ours, s_ours = ours.update(grads, ours.init(params), params)
    u_theirs, _ = theirs.update(grads, theirs.init(params), params)
    assert isinstance(u_ours, list) and len(u_ours) == 2
    np.testing.assert_array_equal(np.array(u_ours), np.array(u_theirs))
    on_arrays, _ = ours.update(jnp.array(grads), ours.init(jnp.array(params)))
    np.testing.assert_array_equal(np.array(u_ours), on_arrays)
    with_wd = jax_rmsprop.rmsprop(0.1, weight_decay=0.5)  # reads the params themselves
    u, _ = with_wd.update(grads, with_wd.init(params), params)
    want = -0.1 * np.array(grads) / (np.sqrt(0.1 * np.array(grads) ** 2) + 1e-8)
    np.testing.assert_allclose(np.array(u), want - 0.1 * 0.5 * np.array(params), rtol=1e-6)


@pytest.mark.parametrize(
    "ctor, name",
    [(jax_rmsprop.compat.torch_rmsprop, "lr"), (jax_rmsprop.compat.keras_rmsprop, "learning_rate"),
     (jax_rmsprop.compat.tf1_rmsprop, "learning_rate")],
)  # fmt: skip
def test_compat_constructors_refuse_no_learning_rate_and_text(ctor, name):
    with pytest.raises(ValueError, match=rf"^`{ctor.__name__}\({name}=None\)`: {name} must be"):
        ctor(**{name: None})
    with pytest.raises(TypeError, match=rf"^`{ctor.__name__}\({name}=...\)` must be a number"):
        ctor(**{name: "1e-3"})
