"""Group train-step: grad + update + apply on a many-leaf model, per-leaf tree vs Flat.

The model is a layer of many small experts (each its own (16, 16) matrix and bias, as a
user writes them without stacking), reading its own slice of the input. Its forward and
backward are a few fused ops; what the tree pays for is one gradient, state and parameter
buffer per leaf. (A deep chain of small layers is no good here: XLA's CPU compile time and
per-op cost grow faster than linearly with the chain's length, and the model, not the
optimizer, dominates.)
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop

from .helpers import TREE_VARIANTS, assert_same_params, big_enabled, donated_loop, round_robin

EXPERTS, WIDTH, BATCH = 300, 16, 8  # 600 leaves; compiles in 8-17 s per variant on 2 cores
SMALL = 50  # the default run (100 leaves, 10 rounds); --big: 300 experts, 40 rounds


def experts_params(k=EXPERTS, d=WIDTH):
    rng = np.random.default_rng(0)
    return {
        f"e{i:04d}": {
            "w": jnp.asarray(rng.normal(size=(d, d)) * 0.1, jnp.float32),
            "b": jnp.zeros(d, jnp.float32),
        }
        for i in range(k)
    }


def experts_loss(params, x, y):
    names = sorted(params)
    w = jnp.stack([params[n]["w"] for n in names])
    b = jnp.stack([params[n]["b"] for n in names])
    h = jnp.tanh(jnp.einsum("nkd,kde->nke", x, w) + b)
    return jnp.mean((h - y) ** 2)


def make_train_step(tx, flat):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, state, x, y):
        loss = (lambda f, x, y: experts_loss(f.tree, x, y)) if flat else experts_loss
        grads = jax.grad(loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return train_step


@pytest.mark.benchmark(group="train-step")
def test_train_step(benchmark, device, request):
    """The three variants in round-robin (``conftest.round_robin``), donated."""
    big = big_enabled(request.config)
    experts = EXPERTS if big else SMALL
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(BATCH, experts, WIDTH)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(BATCH, experts, WIDTH)), jnp.float32)
    kernels, compile_s = {}, {}
    for variant, (make, flat) in TREE_VARIANTS.items():
        tx = make()
        params = experts_params(experts)
        params = jax_rmsprop.flatten(params) if flat else params
        state = tx.init(params)
        t0 = time.perf_counter()
        compiled = make_train_step(tx, flat).lower(params, state, x, y).compile()
        compile_s[variant] = round(time.perf_counter() - t0, 2)
        kernels[variant] = donated_loop(compiled, (params, state), x, y)
    med = round_robin(benchmark, kernels, rounds=40 if big else 10)
    # the same steps from the same start
    assert_same_params(
        kernels, "optax-tree", ("ours-tree", "ours-flat", "optax-flat"), rtol=1e-4, atol=1e-6
    )
    benchmark.extra_info.update(
        model=f"{experts} experts", leaves=2 * experts, compile_s=compile_s, device=device
    )
    benchmark.extra_info["optax-tree/ours-flat"] = round(med["optax-tree"] / med["ours-flat"], 2)
    benchmark.extra_info["optax-tree/ours-tree"] = round(med["optax-tree"] / med["ours-tree"], 3)
    benchmark.extra_info["optax-tree/optax-flat"] = round(med["optax-tree"] / med["optax-flat"], 2)
