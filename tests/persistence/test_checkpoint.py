"""Checkpoint and resume: bit-identical continuation, clear errors on a mismatched tree."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import checkpoint

from ..helpers import optax_rules


def _tx(**kw):
    opts = dict(momentum=0.9, centered=True, state_dtype=jnp.float32) | kw
    make = optax.inject_hyperparams(
        jax_rmsprop.rmsprop, static_args="state_dtype", hyperparam_dtype=jnp.float32
    )
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.apply_if_finite(
            make(learning_rate=optax.cosine_decay_schedule(0.1, 12), **opts),
            max_consecutive_errors=3,
        ),
    )


@pytest.fixture(autouse=True)
def _optax_rules():
    """These tests wrap our transform in optax's chain, apply_if_finite and
    inject_hyperparams with an optax schedule, whose internals mix dtypes."""
    with optax_rules():
        yield


PARAMS = {
    "w": jnp.linspace(-1, 1, 12, dtype=jnp.float32).reshape(3, 4),
    "b": jnp.linspace(0, 1, 4, dtype=jnp.bfloat16),
    "s": jnp.asarray(0.5, jnp.float64),
}


def _loss(p):
    # Each term cast to float64 explicitly (strict dtype promotion in the tests).
    f64 = lambda x: x.astype(jnp.float64)  # noqa: E731
    return (
        f64(jnp.sum(jnp.sin(3 * p["w"]) ** 2))
        + f64(jnp.sum(p["b"].astype(jnp.float32) ** 2))
        + p["s"] ** 4
    )


def _steps(tx, params, state, n):
    @jax.jit
    def step(params, state):
        g = jax.grad(_loss)(params)
        u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state

    for _ in range(n):
        params, state = step(params, state)
    return params, state


def test_resume_is_bit_identical(tmp_path):
    tx = _tx()
    straight = _steps(tx, PARAMS, tx.init(PARAMS), 12)

    params, state = _steps(tx, PARAMS, tx.init(PARAMS), 5)
    checkpoint.save(tmp_path / "ckpt.npz", {"params": params, "opt_state": state})
    del params, state
    # a fresh process would only have the initial params and the optimizer
    back = checkpoint.restore(
        tmp_path / "ckpt.npz", {"params": PARAMS, "opt_state": tx.init(PARAMS)}
    )
    resumed = _steps(tx, back["params"], back["opt_state"], 7)

    assert jax.tree.structure(resumed) == jax.tree.structure(straight)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the schedule's counter and the optimizer's own count came back
    inner = resumed[1][1].inner_state
    assert int(inner.count) == 12 and int(inner.inner_state.count) == 12


def test_bfloat16_round_trips_bit_for_bit(tmp_path):
    x = jax.random.normal(jax.random.PRNGKey(0), (64,)).astype(jnp.bfloat16)
    checkpoint.save(tmp_path / "x.npz", {"x": x})
    y = checkpoint.restore(tmp_path / "x.npz", {"x": jnp.zeros(64, jnp.bfloat16)})["x"]
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(x).view(np.uint16), np.asarray(y).view(np.uint16))


def test_a_different_optimizer_is_refused_with_the_paths(tmp_path):
    tx = _tx()
    checkpoint.save(tmp_path / "c.npz", tx.init(PARAMS))
    other = _tx(centered=False)  # no mu
    with pytest.raises(ValueError, match=r"in the checkpoint but not in `like`: .*\.mu\['b'\]"):
        checkpoint.restore(tmp_path / "c.npz", other.init(PARAMS))
    more = _tx(centered=True, momentum=None)  # no trace
    with pytest.raises(ValueError, match=r"\.trace\['w'\]"):
        checkpoint.restore(tmp_path / "c.npz", more.init(PARAMS))


def test_shape_and_dtype_mismatches_are_named(tmp_path):
    tx = jax_rmsprop.rmsprop(0.1)
    checkpoint.save(tmp_path / "c.npz", tx.init(PARAMS))
    wrong_shape = dict(PARAMS, w=jnp.zeros((4, 3), jnp.float32))
    with pytest.raises(
        ValueError, match=r"\.nu\['w'\]: shape \(3, 4\) in the checkpoint, \(4, 3\)"
    ):
        checkpoint.restore(tmp_path / "c.npz", tx.init(wrong_shape))
    wrong_dtype = dict(PARAMS, b=jnp.zeros(4, jnp.float32))
    with pytest.raises(ValueError, match=r"\.nu\['b'\]: dtype bfloat16 in the checkpoint, float32"):
        checkpoint.restore(tmp_path / "c.npz", tx.init(wrong_dtype))
    missing = {k: v for k, v in PARAMS.items() if k != "s"}
    with pytest.raises(ValueError, match=r"not in `like`: \.nu\['s'\]"):
        checkpoint.restore(tmp_path / "c.npz", tx.init(missing))


def test_flat_layouts_are_told_apart(tmp_path):
    """Same buffer sizes, other layout: refused, not silently reinterpreted."""
    tx = jax_rmsprop.rmsprop(0.1, momentum=0.9)
    a = jax_rmsprop.flatten({"a": jnp.arange(3.0), "b": jnp.arange(2.0)})
    b = jax_rmsprop.flatten({"a": jnp.arange(2.0), "b": jnp.arange(3.0)})
    assert a.buffers[0].shape == b.buffers[0].shape
    checkpoint.save(tmp_path / "f.npz", {"params": a, "opt_state": tx.init(a)})
    back = checkpoint.restore(tmp_path / "f.npz", {"params": a, "opt_state": tx.init(a)})
    np.testing.assert_array_equal(back["params"].tree["a"], a.tree["a"])
    with pytest.raises(ValueError, match=r"missing from the checkpoint: .*float64@"):
        checkpoint.restore(tmp_path / "f.npz", {"params": b, "opt_state": tx.init(b)})


def test_an_abstract_template_is_enough(tmp_path):
    tx = jax_rmsprop.rmsprop(0.1, centered=True)
    params, state = _steps(jax_rmsprop.rmsprop(0.1, centered=True), PARAMS, tx.init(PARAMS), 3)
    checkpoint.save(tmp_path / "a.npz", {"params": params, "opt_state": state})
    like = jax.eval_shape(lambda p: {"params": p, "opt_state": tx.init(p)}, PARAMS)
    back = checkpoint.restore(tmp_path / "a.npz", like)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves({"params": params, "opt_state": state})):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", ["ckpt", "ckpt.npz", "run.v2"])
def test_save_and_restore_agree_on_the_path(tmp_path, name):
    tx = jax_rmsprop.rmsprop(0.1)
    state = tx.init(PARAMS)
    written = checkpoint.save(tmp_path / name, state)
    assert written.name.endswith(".npz") and written.exists()
    assert [p.name for p in tmp_path.iterdir()] == [written.name]  # no temporary left
    back = checkpoint.restore(tmp_path / name, tx.init(PARAMS))
    jax.tree.map(np.testing.assert_array_equal, back, state)


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    tx = jax_rmsprop.rmsprop(0.1, momentum=0.9)
    good, _ = _steps(tx, PARAMS, tx.init(PARAMS), 2)
    checkpoint.save(tmp_path / "c", good)
    before = (tmp_path / "c.npz").read_bytes()
    newer, _ = _steps(tx, PARAMS, tx.init(PARAMS), 4)

    def dies_half_way(f, **arrays):  # writes some bytes, then the process is interrupted
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "c", newer)
    monkeypatch.undo()
    assert (tmp_path / "c.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
    back = checkpoint.restore(tmp_path / "c", good)
    jax.tree.map(np.testing.assert_array_equal, back, good)


def test_rmsprop_state_round_trips_through_orbax(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint", reason="orbax-checkpoint not installed")
    tx = jax_rmsprop.rmsprop(0.1, centered=True, momentum=0.9)
    params, state = _steps(tx, PARAMS, tx.init(PARAMS), 3)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "orbax", {"params": params, "opt_state": state})
        ckptr.wait_until_finished()
        back = ckptr.restore(tmp_path / "orbax", {"params": params, "opt_state": state})
    assert isinstance(back["opt_state"], jax_rmsprop.RMSPropState)
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        back,
        {"params": params, "opt_state": state},
    )
    assert back["opt_state"].count.dtype == jnp.int32


def test_packed_checkpoints_round_trip_every_dtype_bit_for_bit(tmp_path):
    tree = {
        "bf16": jnp.array([1.5, -2.25, 3.0e-3], jnp.bfloat16),
        "f32": jnp.arange(6, dtype=jnp.float32).reshape(2, 3) / 7,
        "scalar": jnp.array(3, jnp.int32),
        "flag": jnp.array([True, False]),
        "empty": jnp.zeros((0, 4), jnp.float32),
        "c64": jnp.array([1 + 2j], jnp.complex64),
    }
    path = checkpoint.save(tmp_path / "packed", tree, {"note": "x"}, packed=True)
    with np.load(path) as f:  # one buffer and its layout, not one member per leaf
        assert sorted(f.files) == ["__layout__", "__metadata__", "__packed__"]
    back = checkpoint.restore(path, tree)
    for key in tree:
        assert back[key].dtype == tree[key].dtype and back[key].shape == tree[key].shape
        np.testing.assert_array_equal(np.asarray(back[key]), np.asarray(tree[key]))
    assert checkpoint.metadata(path) == {"note": "x"}
    with pytest.raises(ValueError, match=r"\['f32'\]: shape \(2, 3\) in the checkpoint, \(3, 2\)"):
        checkpoint.restore(path, tree | {"f32": jnp.zeros((3, 2), jnp.float32)})
