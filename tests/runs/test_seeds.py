"""The four seed articles' examples (shared/seeds), reproduced."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jax_rmsprop
from jax_rmsprop import problems

# Printed in seed 000 (x^2 + y^2 from (5, 4), lr 0.1, rho 0.9, eps 1e-6), verbatim.
SEED_000_TABLE = """\
Epoch 0, current state: [4.68377233 3.68377236]
Epoch 20, current state: [2.3688824  1.47561697]
Epoch 40, current state: [0.95903672 0.35004133]
Epoch 60, current state: [0.13761293 0.00745214]
Epoch 80, current state: [3.91649374e-04 3.12725069e-09]
Epoch 100, current state: [-3.07701828e-17  2.18862195e-20]"""


def test_seed_000_table_to_the_printed_digits():
    tx = jax_rmsprop.rmsprop(0.1, decay=0.9, eps=1e-6)
    x = jnp.array([5.0, 4.0])
    state = tx.init(x)
    step = jax.jit(lambda x, s: tx.update(2 * x, s, x))
    lines = []
    for epoch in range(101):
        u, state = step(x, state)
        x = optax.apply_updates(x, u)
        if epoch % 20 == 0:
            lines.append(f"Epoch {epoch}, current state: {np.asarray(x)}")
    assert "\n".join(lines) == SEED_000_TABLE


def test_seed_000_table_from_the_library_run():
    traj = jax_rmsprop.run(problems.sphere(), jax_rmsprop.rmsprop(0.1, 0.9, 1e-6), 101)
    printed = re.findall(r"(\[.*\])", SEED_000_TABLE)
    assert [str(row) for row in np.asarray(traj.params)[1::20]] == printed


# Near a minimum, constant-step RMSProp oscillates with amplitude ~lr and 1-ulp differences
# (XLA's fused arithmetic vs NumPy's) grow chaotically: compare the approach phase tightly.
APPROACH = 100


def _numpy_rmsprop(grad, x0, lr, rho, eps, steps):
    """The seed articles' loop: Eg2 = rho Eg2 + (1-rho) g^2; x -= lr g / (sqrt(Eg2) + eps)."""
    x = np.array(x0, np.float64)
    acc = np.zeros_like(x)
    path = [x.copy()]
    for _ in range(steps):
        g = grad(x)
        acc = rho * acc + (1 - rho) * g**2
        x = x - lr * g / (np.sqrt(acc) + eps)
        path.append(x.copy())
    return np.stack(path)


def test_seed_001_elongated_bowl_rmsprop_and_gd():
    p = problems.elongated()
    expected = _numpy_rmsprop(
        lambda v: np.array([2 * v[0], 20 * v[1]]), (1.5, 1.5), 0.1, 0.9, 1e-8, 100
    )
    traj = jax_rmsprop.run(p, jax_rmsprop.rmsprop(0.1, 0.9, 1e-8), 100)
    np.testing.assert_allclose(np.asarray(traj.params), expected, rtol=1e-10, atol=1e-11)
    # Plain gradient descent with lr 0.1 oscillates in y (factor 1 - 0.1*20 = -1): no convergence.
    gd = jax_rmsprop.run(p, optax.sgd(0.1), 100)
    np.testing.assert_allclose(np.asarray(gd.params)[-1], [1.5 * 0.8**100, 1.5], rtol=1e-12)
    assert float(traj.losses[-1]) < 1e-2 < float(gd.losses[-1])


def test_seed_003_cubic_reaches_the_local_minimum():
    expected = _numpy_rmsprop(lambda v: 1 - 3 * v**2, [-1.0], 0.01, 0.9, 1e-8, 1000)
    traj = jax_rmsprop.run(problems.cubic(), jax_rmsprop.rmsprop(0.01, 0.9, 1e-8), 1000)
    np.testing.assert_allclose(np.asarray(traj.params)[:APPROACH], expected[:APPROACH], rtol=1e-12)
    # "in less than 200 iterations we have reached the minima" (within the step size, lr 0.01)
    assert abs(float(traj.params[200, 0]) + 1 / np.sqrt(3)) < 0.01
    assert abs(float(traj.params[-1, 0]) + 1 / np.sqrt(3)) < 0.01


def test_seed_003_coupled_quadratic_reaches_2_minus_1():
    grad = lambda v: np.array([4 * v[0] + 2 * v[1] - 6, 2 * v[0] + 4 * v[1]])  # noqa: E731
    expected = _numpy_rmsprop(grad, (1.0, 0.0), 0.01, 0.9, 1e-8, 1000)
    traj = jax_rmsprop.run(problems.coupled(), jax_rmsprop.rmsprop(0.01, 0.9, 1e-8), 1000)
    np.testing.assert_allclose(np.asarray(traj.params)[:APPROACH], expected[:APPROACH], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(traj.params)[-1], expected[-1], atol=0.02)
    np.testing.assert_allclose(np.asarray(traj.params)[-1], [2.0, -1.0], atol=0.02)
