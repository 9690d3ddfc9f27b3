"""Group sweep: 64 x 64 configurations x 1000 steps as one program vs a Python loop of runs."""

import functools

import jax
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import problems

from .helpers import per_second

GRID = {"learning_rate": np.logspace(-4, 0, 64), "decay": np.linspace(0.5, 0.999, 64)}
STEPS = 1000


@pytest.mark.benchmark(group="sweep")
def test_sweep_one_program(benchmark):
    p = problems.elongated()
    jax_rmsprop.sweep(p, GRID, STEPS)  # compile outside the timer
    benchmark.pedantic(lambda: jax_rmsprop.sweep(p, GRID, STEPS), rounds=5, iterations=1)
    benchmark.extra_info.update(
        configs=64 * 64, steps=STEPS, config_steps_per_s=per_second(benchmark, 64 * 64 * STEPS)
    )


@pytest.mark.benchmark(group="sweep")
def test_python_loop_of_optax_runs(benchmark):
    """The usual alternative: a Python loop over configs, each a Python loop of jitted steps.

    Two configs are timed (the full grid would take hours); compare config_steps_per_s.
    """
    p = problems.elongated()
    grad = jax.grad(p.loss)

    def one(lr, decay):
        tx = optax.rmsprop(lr, decay=decay, eps_in_sqrt=False)

        @functools.partial(jax.jit)
        def step(x, s):
            u, s = tx.update(grad(x), s, x)
            return optax.apply_updates(x, u), s

        x, s = p.x0, tx.init(p.x0)
        for _ in range(STEPS):
            x, s = step(x, s)
        return jax.block_until_ready(x)

    configs = [(1e-2, 0.9), (1e-1, 0.99)]
    benchmark.pedantic(lambda: [one(*c) for c in configs], rounds=1, iterations=1)
    benchmark.extra_info.update(
        configs=len(configs),
        steps=STEPS,
        config_steps_per_s=per_second(benchmark, len(configs) * STEPS),
    )
