"""Group pytrees: many-leaf trees, per-leaf (plain) vs one buffer per dtype (Flat)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_rmsprop

from .helpers import (
    TREE_VARIANTS,
    assert_same_params,
    big_enabled,
    donated_loop,
    optimizer_step,
    round_robin,
)


def many_leaves(n=4000):
    rng = np.random.default_rng(0)
    sizes = rng.choice([16, 64, 256, 512], size=n)  # few distinct shapes, as in real models
    return {
        f"p{i:04d}": jnp.asarray(rng.normal(size=int(s)), jnp.float32) for i, s in enumerate(sizes)
    }


def transformer(layers=12, d=384, vocab=8000):
    """~150 leaves, ~25M elements: embeddings, attention, MLP, norms, biases."""
    k = iter(jax.random.split(jax.random.PRNGKey(0), 8 * layers + 2))
    normal = lambda shape: jax.random.normal(next(k), shape, jnp.float32) * 0.02  # noqa: E731
    tree = {"embed": normal((vocab, d)), "final_norm": jnp.ones(d)}
    for i in range(layers):
        tree[f"layer{i:02d}"] = {
            "ln1": {"scale": jnp.ones(d), "bias": jnp.zeros(d)},
            "ln2": {"scale": jnp.ones(d), "bias": jnp.zeros(d)},
            "attn": {
                "qkv": normal((d, 3 * d)),
                "qkv_b": jnp.zeros(3 * d),
                "out": normal((d, d)),
                "out_b": jnp.zeros(d),
            },
            "mlp": {
                "up": normal((d, 4 * d)),
                "up_b": jnp.zeros(4 * d),
                "down": normal((4 * d, d)),
                "down_b": jnp.zeros(d),
            },
        }
    return tree


TREES = {"4000-leaves": many_leaves, "transformer": transformer}


@pytest.fixture(scope="module", params=list(TREES))
def tree(request):
    if request.param == "4000-leaves" and not big_enabled(request.config):
        pytest.skip("--big: 4000 leaves compile for ~30 s per variant (interleaved: 500)")
    return request.param, TREES[request.param]()


@pytest.mark.parametrize("variant", list(TREE_VARIANTS))
@pytest.mark.benchmark(group="pytrees")
def test_optimizer_step(benchmark, tree, variant, device):
    name, params = tree
    make, flat = TREE_VARIANTS[variant]
    tx = make()
    params = jax_rmsprop.flatten(params) if flat else jax.tree.map(jnp.copy, params)
    grads = jax.tree.map(lambda x: x * 1e-2, params)
    run = donated_loop(optimizer_step(tx), (params, tx.init(params)), grads)
    benchmark.pedantic(run, rounds=10, iterations=1)
    benchmark.extra_info.update(
        tree=name,
        leaves=len(jax.tree.leaves(params)),
        device=device,
        elements=int(sum(x.size for x in jax.tree.leaves(params))),
    )


@pytest.mark.parametrize("variant", list(TREE_VARIANTS))
@pytest.mark.benchmark(group="compile-time")
def test_compile_time(benchmark, variant, device):
    """transformer tree only: the 4000-leaf tree takes ~20 s per compile on this CPU."""
    make, flat = TREE_VARIANTS[variant]
    tx = make()
    params = transformer()
    params = jax_rmsprop.flatten(params) if flat else params
    state = tx.init(params)
    benchmark.pedantic(
        lambda: optimizer_step(tx).lower(params, state, params).compile(), rounds=2, iterations=1
    )
    benchmark.extra_info.update(tree="transformer", device=device)


@pytest.mark.benchmark(group="pytrees-interleaved")
def test_optimizer_step_interleaved(benchmark, device, request):
    """The 4000-leaf tree, the three variants in round-robin: the ratios to quote.

    A second copy of optax's step, set up last, is the control: on this CPU a step set up
    later runs slower than the same step set up first (allocation of 8000 small buffers),
    and the two optax copies show how large that effect is.
    """
    big = big_enabled(request.config)
    n = 4000 if big else 500  # the default run: 500 leaves, 10 rounds
    params = many_leaves(n)
    kernels = {}
    variants = dict(TREE_VARIANTS, **{"optax-tree-again": TREE_VARIANTS["optax-tree"]})
    for variant, (make, flat) in variants.items():
        tx = make()
        p = jax_rmsprop.flatten(params) if flat else jax.tree.map(jnp.copy, params)
        grads = jax.tree.map(lambda x: x * 1e-2, p)
        kernels[variant] = donated_loop(optimizer_step(tx), (p, tx.init(p)), grads)
    med = round_robin(benchmark, kernels, rounds=30 if big else 10)
    # all took the same steps from the same start
    assert_same_params(
        kernels,
        "optax-tree",
        ("ours-tree", "ours-flat", "optax-flat", "optax-tree-again"),
        rtol=1e-5,
    )
    benchmark.extra_info.update(tree=f"{n}-leaves", device=device)
    benchmark.extra_info["optax-tree/ours-flat"] = round(med["optax-tree"] / med["ours-flat"], 2)
    benchmark.extra_info["optax-tree/ours-tree"] = round(med["optax-tree"] / med["ours-tree"], 3)
    benchmark.extra_info["optax-tree/optax-flat"] = round(med["optax-tree"] / med["optax-flat"], 2)
    benchmark.extra_info["optax-tree/optax-tree-again"] = round(
        med["optax-tree"] / med["optax-tree-again"], 3
    )


@pytest.mark.benchmark(group="compile-time-interleaved")
def test_compile_time_interleaved(benchmark, device):
    """Trace + compile of the transformer tree's optimizer step, ours and optax alternating."""
    params = transformer()
    kernels = {}
    for variant in ("optax-tree", "ours-tree"):
        tx = TREE_VARIANTS[variant][0]()
        state = tx.init(params)
        # a new jit each call: nothing is cached between rounds
        kernels[variant] = functools.partial(
            lambda tx, state: optimizer_step(tx).lower(params, state, params).compile(), tx, state
        )
    med = round_robin(benchmark, kernels, rounds=6)
    benchmark.extra_info.update(tree="transformer", device=device)
    benchmark.extra_info["ours-tree/optax-tree"] = round(med["ours-tree"] / med["optax-tree"], 3)
