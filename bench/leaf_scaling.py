"""How trace, compile and step time grow with a tree's leaves, per optimizer variant.

``python bench/leaf_scaling.py [--leaves 50 150 500 4000] [--rounds 10]`` prints a
markdown table (the one in ``bench/RESULTS.md``): for each leaf count and each variant
of ``TREE_VARIANTS`` (optax on the tree, ours on the tree, ``flatten`` + ours, optax on
the ``Flat``), the seconds to trace (``jit(step).trace``), to compile the lowered step,
and the median ms of a donated step. The tree is ``bench/test_pytrees.py``'s
``many_leaves``: a per-leaf optimizer compiles one loop (on a GPU one kernel) per leaf,
``flatten`` one per dtype, whatever the leaf count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

if __package__ in (None, ""):  # run as a script: bench/ is a package of the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax_rmsprop
from bench.helpers import TREE_VARIANTS, optimizer_step


def many_leaves(n: int) -> dict:
    """``n`` float32 leaves of 16-512 elements (``bench/test_pytrees.py``'s tree)."""
    from bench.test_pytrees import many_leaves as tree

    return tree(n)


def measure(n: int, variant: str, rounds: int = 10) -> dict[str, float]:
    """``{"trace s", "compile s", "step ms"}`` of one variant's step on ``n`` leaves."""
    make, flat = TREE_VARIANTS[variant]
    tx = make()
    params = many_leaves(n)
    params = jax_rmsprop.flatten(params) if flat else params
    grads = jax.tree.map(lambda x: x * 1e-2, params)
    state = tx.init(params)
    step = optimizer_step(tx)
    t0 = time.perf_counter()
    traced = _trace(step, params, state, grads)
    t1 = time.perf_counter()
    compiled = traced.lower().compile()
    t2 = time.perf_counter()
    params, state = jax.tree.map(jnp.copy, (params, state))
    params, state = compiled(params, state, grads)  # (warm-up)
    jax.block_until_ready(params)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        params, state = compiled(params, state, grads)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t)
    return {
        "trace s": t1 - t0,
        "compile s": t2 - t1,
        "step ms": 1e3 * statistics.median(times),
    }


def _trace(step, *args):
    """``step.trace(*args)`` where JAX has it (0.4.30+), else a lowering-ready stand-in."""
    if hasattr(step, "trace"):
        return step.trace(*args)
    lowered = step.lower(*args)
    return type("Traced", (), {"lower": lambda self: lowered})()


def table(leaves: list[int], rounds: int) -> str:
    """The markdown table of ``measure`` over ``leaves`` x ``TREE_VARIANTS``."""
    lines = [
        f"Device: {jax.devices()[0].device_kind}; JAX {jax.__version__}; step: median of "
        f"{rounds} donated calls.",
        "",
        "| leaves | variant | trace s | compile s | step ms | compile s per 1000 leaves |",
        "|---|---|---|---|---|---|",
    ]
    for variant in TREE_VARIANTS:  # (JAX's and XLA's first compiles, outside the table)
        measure(10, variant, 1)
    for n in leaves:
        for variant in TREE_VARIANTS:
            m = measure(n, variant, rounds)
            lines.append(
                f"| {n} | {variant} | {m['trace s']:.3f} | {m['compile s']:.3f} | "
                f"{m['step ms']:.3f} | {1e3 * m['compile s'] / n:.2f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, nargs="+", default=[50, 150, 500, 4000])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    print(table(args.leaves, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
