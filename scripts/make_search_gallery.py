"""Draws the sweep and tuning pictures of docs/gallery.md: a grid sweep of the elongated
bowl, a batched TPE search (its trials by number and parameters) against random search,
its parallel coordinates, the best configurations' learning curves, and a PBT run.

Usage: python scripts/make_search_gallery.py [OUT_DIR]   (default: docs/gallery)
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import FloatDistribution

import jax_rmsprop
from jax_rmsprop import plots

SPACE = {
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "decay": FloatDistribution(0.5, 0.999),
    "eps": FloatDistribution(1e-8, 1e-3, log=True),
    "momentum": FloatDistribution(0.0, 0.95),
}


def main(out: Path) -> None:
    grid = {"learning_rate": np.logspace(-4, -1, 4), "decay": np.linspace(0.5, 0.99, 8)}
    plots.sweep_heatmap(
        jax_rmsprop.sweep(jax_rmsprop.problems.elongated(), grid, 300),
        out / "elongated_sweep.png",
        title="x² + 10y² from (1.5, 1.5): final loss after 300 steps, 4 x 8 configurations",
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = jax_rmsprop.problems.digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=0, constant_liar=True, multivariate=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=16, n_warmup_steps=1)
    tpe = jax_rmsprop.tune(task, SPACE, 5, sampler=sampler, pruner=pruner, trials=128, batch=32)
    plots.tune_trials(
        tpe.study, out / "search_trials.png",
        title="Digits: 128 TPE trials in batches of 32, median pruner",
    )  # fmt: skip
    rnd = jax_rmsprop.tune(task, SPACE, 5, samples=128, seed=0)
    plots.search_progress(
        {"TPE, batches of 32, median pruner": tpe, "random search": rnd},
        out / "search_progress.png",
        title="Digits, 4 hyperparameters: best validation loss so far against compute",
    )
    plots.parallel_coordinates(
        tpe, out / "search_parallel.png",
        title="Digits: 128 TPE trials (grey: pruned), final validation loss after 5 epochs",
    )  # fmt: skip
    grid = {"learning_rate": np.logspace(-4, -1, 6), "decay": np.array([0.5, 0.9, 0.99])}
    plots.top_curves(
        jax_rmsprop.tune(task, grid, 8, seeds=3), out / "search_top.png",
        title="Digits: the 5 best of 18 configurations, 3 seeds each",
    )  # fmt: skip
    pbt = jax_rmsprop.pbt(task, SPACE, 9, population=32, interval=1, seed=0)
    plots.pbt_schedule(
        pbt, out / "search_pbt.png",
        title="Digits: PBT, 32 members, exploit and explore every epoch",
    )  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/gallery"))
