import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import problems


def _python_loop(loss, tx, x0, steps):
    """A Python loop over a jitted step, as users write it.

    (jitted: optax schedules round differently op by op, ~1e-8, for optax.rmsprop as well)
    """

    @jax.jit
    def step(x, s):
        u, s = tx.update(jax.grad(loss)(x), s, x)
        return optax.apply_updates(x, u), s

    x, s = x0, tx.init(x0)
    xs, fs = [x], [loss(x)]
    for _ in range(steps):
        x, s = step(x, s)
        xs.append(x)
        fs.append(loss(x))
    return xs, np.array(fs)


@pytest.mark.parametrize(
    "tx",
    [
        jax_rmsprop.rmsprop(0.05, momentum=0.9, centered=True),
        optax.chain(optax.clip(1.0), jax_rmsprop.rmsprop(optax.linear_schedule(0.1, 0.01, 30))),
    ],
)
def test_scan_equals_python_loop(tx):
    p = problems.rosenbrock(4)
    traj = jax_rmsprop.run(p, tx, 30)
    xs, fs = _python_loop(p.loss, tx, p.x0, 30)
    np.testing.assert_allclose(np.asarray(traj.params), np.stack(xs), rtol=1e-12)
    np.testing.assert_allclose(traj.losses, fs, rtol=1e-12)
    assert int(traj.steps) == 30 and not bool(traj.converged)


def test_pytree_params_and_plain_loss():
    def loss(p):
        return jnp.sum((p["w"] - 3.0) ** 2) + (p["b"] + 1.0) ** 2

    x0 = {"w": jnp.zeros(3), "b": jnp.asarray(0.0)}
    tx = jax_rmsprop.rmsprop(0.1)
    traj = jax_rmsprop.run(loss, tx, 50, x0=x0, path=False)
    xs, fs = _python_loop(loss, tx, x0, 50)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), traj.params, xs[-1])
    np.testing.assert_allclose(traj.losses, fs, rtol=1e-12)


def test_tolerance_stops_at_the_first_step_within_tol():
    p = problems.sphere()
    tx = jax_rmsprop.rmsprop(0.1, 0.9, 1e-6)
    traj = jax_rmsprop.run(p, tx, 500, tol=1e-4)
    _, fs = _python_loop(p.loss, tx, p.x0, 200)
    first = int(np.argmax(fs <= 1e-4))
    assert int(traj.steps) == first and bool(traj.converged)
    np.testing.assert_allclose(traj.losses[: first + 1], fs[: first + 1], rtol=1e-12)
    # steps not taken repeat the final point
    np.testing.assert_array_equal(
        traj.params[first:], np.broadcast_to(traj.params[first], (501 - first, 2))
    )
    assert traj.losses.shape == (501,)


def test_tolerance_not_reached():
    traj = jax_rmsprop.run(problems.elongated(), optax.sgd(0.1), 100, tol=1e-3)
    assert int(traj.steps) == 100 and not bool(traj.converged)


def test_run_errors():
    with pytest.raises(ValueError, match=r"`run\(x0=...\)` is required"):
        jax_rmsprop.run(lambda x: x**2, jax_rmsprop.rmsprop(0.1), 10)
    with pytest.raises(ValueError, match=r"`run\(steps=...\)`"):
        jax_rmsprop.run(problems.sphere(), jax_rmsprop.rmsprop(0.1), 0)
    with pytest.raises(ValueError, match=r"`run\(tol=...\)`"):
        jax_rmsprop.run(problems.sphere(), jax_rmsprop.rmsprop(0.1), 5, tol=-1.0)


def test_a_loop_over_learning_rates_compiles_once():
    """``rmsprop``'s numbers are traced (``_traced.Traced``): 8 learning rates, decays and
    momenta, one program; each path equals the same optimizer compiled with its numbers as
    constants (an ``optax.chain``, static as a whole) bit for bit."""
    from jax_rmsprop import _run, compat

    problem = problems.rosenbrock()
    # steps=37, used by no other test: the programs counted are this test's own
    jax_rmsprop.run(problem, jax_rmsprop.rmsprop(0.5, momentum=0.1), 37)
    before = _run._run_compiled._cache_size()
    for k, lr in enumerate(np.geomspace(1e-4, 1e-1, 8)):
        tx = jax_rmsprop.rmsprop(float(lr), decay=0.8 + 0.02 * k, momentum=0.1 * k)
        ours = jax_rmsprop.run(problem, tx, 37)
        ref = jax_rmsprop.run(problem, optax.chain(tx), 37)
        np.testing.assert_array_equal(ours.params, ref.params)
    assert _run._run_compiled._cache_size() == before + 8  # the 8 chains only
    # the same for the frameworks' conventions and scale_by_rms
    for make in (
        lambda v: compat.torch_rmsprop(lr=v, alpha=0.9, momentum=0.5),
        lambda v: compat.keras_rmsprop(learning_rate=v),
        lambda v: optax.GradientTransformationExtraArgs(*jax_rmsprop.scale_by_rms(decay=v)),
    ):
        make(0.1)  # (argument checks run outside jit)
        jax_rmsprop.run(problem, make(0.3), 37)
        before = _run._run_compiled._cache_size()
        for v in (0.2, 0.5, 0.7):
            jax_rmsprop.run(problem, make(v), 37)
        assert _run._run_compiled._cache_size() == before


def test_numbers_made_device_scalars_once_keep_every_bit():
    """A traced number goes to ``jit`` as a device scalar made once per value (``jit``
    would convert a Python float at every call): -0.0 keeps its sign, the same optimizer
    under ``jax.enable_x64`` gets float64 numbers (bit for bit the chain's constants), and
    a flatten while tracing leaves no tracer behind."""
    from jax_rmsprop import _traced
    from jax_rmsprop._jax_compat import enable_x64

    assert np.signbit(_traced.device_scalar(-0.0)) and not np.signbit(_traced.device_scalar(0.0))
    assert _traced.device_scalar(True) is True  # (not a number here)
    problem = problems.rosenbrock()
    tx = jax_rmsprop.rmsprop(0.1 / 3, decay=0.9, momentum=0.3)
    with enable_x64(False):  # (the tests run with float64 on)
        jax_rmsprop.run(problem, tx, 41, x0=np.array([-1.2, 1.0], np.float32))  # kept
    ours = jax_rmsprop.run(problem, tx, 41, x0=np.array([-1.2, 1.0]))
    ref = jax_rmsprop.run(problem, optax.chain(tx), 41, x0=np.array([-1.2, 1.0]))
    assert ours.params.dtype == np.float64
    np.testing.assert_array_equal(ours.params, ref.params)
    fresh = jax_rmsprop.rmsprop(0.1 / 7, decay=0.7)
    step = _traced.jit_traced(lambda tx, x: tx.update(x, tx.init(x), x)[0])
    inside = jax.jit(lambda x: step(fresh, x))(jnp.ones(3))
    assert not any(isinstance(v, jax.core.Tracer) for v in _traced._SCALARS.values())
    assert not hasattr(fresh.update, "flat")  # (kept only from a flatten outside tracing)
    np.testing.assert_array_equal(step(fresh, jnp.ones(3)), inside)
    assert all(isinstance(v, jax.Array) for v in fresh.update.flat[2])


def test_eps_and_schedules_stay_static():
    """eps decides the guards at trace time; a schedule is a function: each compiles anew,
    with the numbers of a constant."""
    from jax_rmsprop import _run

    problem = problems.sphere()
    jax_rmsprop.run(problem, jax_rmsprop.rmsprop(0.1, eps=1e-7), 39)
    before = _run._run_compiled._cache_size()
    jax_rmsprop.run(problem, jax_rmsprop.rmsprop(0.1, eps=1e-6), 39)
    sched = optax.exponential_decay(0.1, 5, 0.5)
    ours = jax_rmsprop.run(problem, jax_rmsprop.rmsprop(sched), 39)
    assert _run._run_compiled._cache_size() == before + 2
    ref = jax_rmsprop.run(problem, optax.chain(jax_rmsprop.rmsprop(sched)), 39)
    np.testing.assert_array_equal(ours.params, ref.params)
