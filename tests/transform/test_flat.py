"""The flat fast path: same numbers as the plain tree, any optax transform, cheap gradients."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop

from ..helpers import optax_rules


def _params():
    k = jax.random.PRNGKey(0)
    return {
        "emb": jax.random.normal(k, (5, 3)),
        "layers": [{"w": jnp.full((3, 3), 0.5), "b": jnp.arange(3.0)} for _ in range(4)],
        "half": jnp.ones(4, jnp.bfloat16),
        "scale": jnp.asarray(2.0),
    }


def _loss(p):
    h = p["emb"]
    for layer in p["layers"]:
        h = jnp.tanh(h @ layer["w"] + layer["b"][None, :])
    return jnp.sum(h**2) * p["scale"] + jnp.sum(p["half"].astype(jnp.float32) ** 2).astype(h.dtype)


def test_roundtrip_keeps_values_shapes_and_dtypes():
    params = _params()
    flat = jax_rmsprop.flatten(params)
    assert [b.dtype for b in flat.buffers] == [jnp.float64, jnp.bfloat16]
    assert flat.buffers[0].shape == (15 + 4 * 12 + 1,)
    jax.tree.map(np.testing.assert_array_equal, flat.tree, params)
    assert jax.tree.structure(flat.tree) == jax.tree.structure(params)
    assert "Flat(" in repr(flat)


ADAM = optax.adam(1e-2)


@pytest.mark.parametrize(
    "tx",
    [jax_rmsprop.rmsprop(0.01, momentum=0.9, centered=True), ADAM],
    ids=["rmsprop", "adam"],
)
def test_training_on_flat_equals_training_on_the_tree(tx):
    params = _params()
    flat = jax_rmsprop.flatten(params)

    @jax.jit
    def tree_step(p, s):
        u, s = tx.update(jax.grad(_loss)(p), s, p)
        return optax.apply_updates(p, u), s

    @jax.jit
    def flat_step(f, s):
        grads = jax.grad(lambda f: _loss(f.tree))(f)
        assert isinstance(grads, jax_rmsprop.Flat)
        u, s = tx.update(grads, s, f)
        return optax.apply_updates(f, u), s

    # optax's adam is not clean under strict dtype promotion; ours runs strict.
    with optax_rules() if tx is ADAM else contextlib.nullcontext():
        ps, fs = tx.init(params), tx.init(flat)
        for _ in range(5):
            params, ps = tree_step(params, ps)
            flat, fs = flat_step(flat, fs)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(
            np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-12
        ),
        flat.tree,
        params,
    )


def test_flat_state_is_one_buffer_per_dtype():
    flat = jax_rmsprop.flatten(_params())
    state = jax_rmsprop.rmsprop(0.1, momentum=0.5).init(flat)
    assert len(jax.tree.leaves(state.nu)) == 2 and len(jax.tree.leaves(state.trace)) == 2


def test_backward_writes_one_buffer_per_dtype():
    """The view's gradient is a concatenation, not one padded full-size add per leaf."""
    flat = jax_rmsprop.flatten({f"p{i}": jnp.ones(7) for i in range(200)})
    hlo = (
        jax.jit(jax.grad(lambda f: sum(jnp.sum(v**2) for v in f.tree.values())))
        .lower(flat)
        .as_text()
    )
    assert hlo.count("stablehlo.pad") == 0
    assert 1 <= hlo.count("stablehlo.concatenate") < 20  # JAX emits it in chunks of operands


def test_empty_tree_is_rejected():
    with pytest.raises(ValueError, match=r"`flatten\(tree=...\)` needs at least one array"):
        jax_rmsprop.flatten({})
