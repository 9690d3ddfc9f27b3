"""Group pytrees: many-leaf trees, per-leaf (plain) vs one buffer per dtype (Flat).

A per-leaf optimizer compiles one loop per leaf (on a GPU, kernels that each compile
through the GPU toolchain): its compile time grows faster than its leaves
(``bench/leaf_scaling.py`` measures it). Every group here runs under its ``--budget``
(``conftest.py``): a variant whose compile does not end in the time left is skipped,
named in ``extra_info["skipped"]`` with the reason, and the group goes on.
"""

import functools
import time

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


def _compiled(budget, name, tx, params, grads, share=1.0):
    """``optimizer_step(tx)`` compiled for ``params`` within ``budget``, and its state."""
    state = tx.init(params)
    return budget.compile(name, optimizer_step(tx).lower(params, state, grads), share), state


@pytest.mark.parametrize("variant", list(TREE_VARIANTS))
@pytest.mark.benchmark(group="pytrees")
def test_optimizer_step(benchmark, tree, variant, device, budget):
    name, params = tree
    make, flat = TREE_VARIANTS[variant]
    tx = make()
    params = jax_rmsprop.flatten(params) if flat else jax.tree.map(jnp.copy, params)
    grads = jax.tree.map(lambda x: x * 1e-2, params)
    step, state = _compiled(budget, variant, tx, params, grads)
    if step is None:
        pytest.skip(f"{variant} on {name}: {budget.skipped[variant]}")
    run = donated_loop(step, (params, state), grads)
    benchmark.pedantic(run, rounds=10, iterations=1)
    benchmark.extra_info.update(
        tree=name,
        leaves=len(jax.tree.leaves(params)),
        device=device,
        elements=int(sum(x.size for x in jax.tree.leaves(params))),
    )


@pytest.mark.parametrize("variant", list(TREE_VARIANTS))
@pytest.mark.benchmark(group="compile-time")
def test_compile_time(benchmark, variant, device, budget):
    """transformer tree only: the 4000-leaf tree takes ~30 s per compile on this CPU."""
    make, flat = TREE_VARIANTS[variant]
    tx = make()
    params = transformer()
    params = jax_rmsprop.flatten(params) if flat else params
    # the first compile, within the budget, tells whether the two timed ones fit
    first, state = _compiled(budget, variant, tx, params, params, share=1 / 3)
    if first is None:
        pytest.skip(f"{variant}: {budget.skipped[variant]}")
    benchmark.pedantic(
        lambda: optimizer_step(tx).lower(params, state, params).compile(), rounds=2, iterations=1
    )
    benchmark.extra_info.update(tree="transformer", device=device)


@pytest.mark.benchmark(group="pytrees-interleaved")
def test_optimizer_step_interleaved(benchmark, device, request, budget):
    """The 4000-leaf tree, the three variants in round-robin: the ratios to quote.

    A second copy of optax's step, set up last, is the control: on this CPU a step set up
    later runs slower than the same step set up first (allocation of 8000 small buffers),
    and the two optax copies show how large that effect is. The flat variants compile
    first (in milliseconds, whatever the leaves); a per-leaf one whose compile overruns
    the budget is skipped, and so are the ratios it is part of.
    """
    big = big_enabled(request.config)
    n = 4000 if big else 500  # the default run: 500 leaves, 10 rounds
    params = many_leaves(n)
    kernels, compile_s = {}, {}
    variants = dict(TREE_VARIANTS, **{"optax-tree-again": TREE_VARIANTS["optax-tree"]})
    for variant in sorted(variants, key=lambda v: not variants[v][1]):  # (stable: flat first)
        make, flat = variants[variant]
        tx = make()
        p = jax_rmsprop.flatten(params) if flat else jax.tree.map(jnp.copy, params)
        grads = jax.tree.map(lambda x: x * 1e-2, p)
        t = time.perf_counter()
        step, state = _compiled(budget, variant, tx, p, grads)
        if step is not None:
            compile_s[variant] = round(time.perf_counter() - t, 3)
            kernels[variant] = donated_loop(step, (p, state), grads)
    kernels = {v: kernels[v] for v in variants if v in kernels}  # (the recorded order)
    rounds = _rounds(kernels, 30 if big else 10, budget)
    med = round_robin(benchmark, kernels, rounds=rounds)
    benchmark.extra_info.update(
        tree=f"{n}-leaves", device=device, skipped=budget.skipped, **{"compile s": compile_s}
    )
    if "optax-tree" not in med:
        return
    # all took the same steps from the same start
    others = ("ours-tree", "ours-flat", "optax-flat", "optax-tree-again")
    assert_same_params(kernels, "optax-tree", [v for v in others if v in med], rtol=1e-5)
    for other, digits in zip(others, (3, 2, 2, 3)):
        if other in med:
            benchmark.extra_info[f"optax-tree/{other}"] = round(
                med["optax-tree"] / med[other], digits
            )


def _rounds(kernels, rounds, budget) -> int:
    """``rounds``, or fewer (at least 3) if that many would overrun the budget's time left."""
    t = time.perf_counter()
    for run in kernels.values():
        run()
    per_round = time.perf_counter() - t
    return max(3, min(rounds, int(0.8 * budget.left() / max(per_round, 1e-9))))


@pytest.mark.benchmark(group="compile-time-interleaved")
def test_compile_time_interleaved(benchmark, device, budget):
    """Trace + compile of the transformer tree's optimizer step, ours and optax alternating.

    A first compile of each, within the budget, sizes the rounds (6, or fewer to fit).
    """
    params = transformer()
    kernels, first = {}, 0.0
    for variant in ("optax-tree", "ours-tree"):
        tx = TREE_VARIANTS[variant][0]()
        t = time.perf_counter()
        if _compiled(budget, variant, tx, params, params, share=1 / 4)[0] is None:
            pytest.skip(f"{variant}: {budget.skipped[variant]}")
        first += time.perf_counter() - t
        state = tx.init(params)
        # a new jit each call: nothing is cached between rounds
        kernels[variant] = functools.partial(
            lambda tx, state: optimizer_step(tx).lower(params, state, params).compile(), tx, state
        )
    rounds = max(2, min(6, int(0.8 * budget.left() / first)))
    med = round_robin(benchmark, kernels, rounds=rounds)
    benchmark.extra_info.update(tree="transformer", device=device)
    benchmark.extra_info["ours-tree/optax-tree"] = round(med["ours-tree"] / med["optax-tree"], 3)
