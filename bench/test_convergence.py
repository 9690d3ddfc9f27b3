"""Group convergence: steps and time to tolerance on the documented problems (seeds' settings)."""

import optax
import pytest

import jax_rmsprop
from jax_rmsprop import problems

# (problem, learning rate, RMSProp eps) as in the seed articles
SEEDS = {
    "sphere": (problems.sphere, 0.1, 1e-6),
    "elongated": (problems.elongated, 0.1, 1e-8),
    "coupled": (problems.coupled, 0.01, 1e-8),
    "cubic": (problems.cubic, 0.01, 1e-8),
}
OPTIMIZERS = {
    "jax_rmsprop": lambda lr, eps: jax_rmsprop.rmsprop(lr, decay=0.9, eps=eps),
    "optax.rmsprop": lambda lr, eps: optax.rmsprop(lr, decay=0.9, eps=eps, eps_in_sqrt=False),
    "sgd": lambda lr, eps: optax.sgd(lr),
    "adam": lambda lr, eps: optax.adam(lr),
    "adagrad": lambda lr, eps: optax.adagrad(lr),
}
TOL, MAX_STEPS = 1e-3, 5000


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("name", list(SEEDS))
@pytest.mark.benchmark(group="convergence")
def test_time_to_tolerance(benchmark, name, opt):
    make, lr, eps = SEEDS[name]
    p, tx = make(), OPTIMIZERS[opt](lr, eps)
    traj = jax_rmsprop.run(p, tx, MAX_STEPS, tol=TOL, path=False)  # compile outside the timer
    benchmark.pedantic(
        lambda: jax_rmsprop.run(p, tx, MAX_STEPS, tol=TOL, path=False).losses.block_until_ready(),
        rounds=5,
        iterations=1,
    )
    benchmark.extra_info.update(
        problem=name,
        optimizer=opt,
        lr=lr,
        tol=TOL,
        steps=int(traj.steps),
        converged=bool(traj.converged),
        final_gap=float(traj.losses[-1] - p.min_loss),
    )
