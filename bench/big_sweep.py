"""The memory goal's sweep, run in its own process so that its peak memory is its own.

4096 configurations (64 learning rates x 64 decays) of a 105,010-parameter digits
classifier (Dense(1400, relu) - Dense(10)), with chunks sized by ``sweep`` from the free
memory (``--fraction`` overrides ``MEMORY_FRACTION``). Prints one JSON line: the
parameters, the chunks, XLA's accounting of the whole grid as one program, seconds and
the process's peak resident memory.

``--side N`` sweeps N x N configurations instead (the default bench run: 16 x 16).

Usage: python -m bench.big_sweep [--fraction F] [--epochs E] [--side N]
"""

import argparse
import json
import resource
import time

import jax
import numpy as np

import jax_rmsprop
from jax_rmsprop import _plan
from jax_rmsprop._space import grid as grid_cells


def grid(side: int) -> dict:
    return {"learning_rate": np.logspace(-4, -1, side), "decay": np.linspace(0.5, 0.99, side)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fraction", type=float, default=_plan.MEMORY_FRACTION)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--side", type=int, default=64)
    args = parser.parse_args()
    GRID, RUNS = grid(args.side), args.side**2  # noqa: N806
    _plan.MEMORY_FRACTION = args.fraction
    task = jax_rmsprop.problems.digits(hidden=1400, batch_size=64, n_train=256)
    params = sum(a.size for a in jax.tree.leaves(task.init(jax.random.key(0))))
    names, cells, _ = grid_cells(GRID, "tune")
    plan = _plan.make_plan(
        task, cells, names, 1, 0, None, jax_rmsprop.rmsprop, None, None, None, None
    )
    one_program, _ = plan._bytes(RUNS, None, 0, args.epochs)
    budgets = []  # the budget when the sweep sized its chunks
    measure = _plan._memory_budget
    _plan._memory_budget = lambda mesh: budgets.append(measure(mesh)) or budgets[-1]
    chunks = []
    start = time.perf_counter()
    res = jax_rmsprop.tune(task, GRID, args.epochs, progress=lambda d, n: chunks.append(d))
    seconds = time.perf_counter() - start
    out = {
        "params": int(params),
        "runs": RUNS,
        "budget_gib": budgets[0] / 2**30,
        "one_program_gib": one_program / 2**30,
        "chunk": chunks[0] // args.epochs,  # (progress counts epochs: runs x epochs)
        "chunks": len(chunks),
        "seconds": seconds,
        "finite": bool(np.isfinite(res.val_loss).all()),
        "best_val_loss": res.best(1)[0]["score"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
