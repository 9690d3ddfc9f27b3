"""Groups hyperband and pbt: what the searches find, against a grid or a random search.

- hyperband: Optuna's ``HyperbandPruner`` (several successive-halving brackets) with TPE,
  96 trials in batches of 32 on the digits-sweep grid's values, against the full 16 x 16
  grid trained to the end: the best validation loss and the fraction of the grid's epochs,
  for 3 sampler seeds (the default run: seed 0; ``--big``: all 3).
- pbt: population-based training of 32 members (4 hyperparameters, exploit/explore every
  epoch) against the best of a 32-configuration random search, the same epochs, so the
  same compute (timed side by side), for 3 seeds (the default run: seed 0).
"""

import numpy as np
import pytest

import jax_rmsprop

from .helpers import big_enabled, round_robin
from .test_digits_sweep import GRID
from .test_tune_optuna import SPACE

optuna = pytest.importorskip("optuna")
pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")
EPOCHS = 9


@pytest.mark.benchmark(group="hyperband")
def test_hyperband_finds_the_grids_best_with_a_fraction_of_its_epochs(benchmark, device, request):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = jax_rmsprop.problems.digits()
    full = jax_rmsprop.tune(task, GRID, EPOCHS)
    space = {
        k: optuna.distributions.CategoricalDistribution([float(x) for x in v])
        for k, v in GRID.items()
    }
    found = {}
    seeds = range(3 if big_enabled(request.config) else 1)

    def searches():
        for seed in seeds:
            pruner = optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=EPOCHS, reduction_factor=3
            )
            # named: Hyperband puts a trial in a bracket by hashing the study's name with
            # the trial's number (an unnamed study gets a random name: another run)
            study = optuna.create_study(
                study_name=f"hyperband-{seed}", sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=pruner,
            )  # fmt: skip
            res = jax_rmsprop.tune(task, space, EPOCHS, study=study, trials=96, batch=32)
            found[seed] = (res.study.best_value, res.epochs_run.sum() / full.epochs_run.sum())

    benchmark.pedantic(searches, rounds=1, iterations=1)
    best = float(full.score().min())
    ratios = [v / best for v, _ in found.values()]
    budgets = [float(b) for _, b in found.values()]
    benchmark.extra_info.update(
        {
            "grid best": round(best, 4),
            "hyperband/grid best (per seed)": [round(r, 4) for r in ratios],
            "epochs fraction (per seed)": [round(b, 3) for b in budgets],
        },
        device=device,
    )
    # the goal: within 5% of the grid's best with <= 25% of its epochs
    assert max(ratios) <= 1.05 and max(budgets) <= 0.25


@pytest.mark.benchmark(group="pbt")
def test_pbt_beats_random_search_at_the_same_compute(benchmark, device, request):
    task = jax_rmsprop.problems.digits()
    found = {}
    kernels = {}
    seeds = range(3 if big_enabled(request.config) else 1)
    for seed in seeds:
        kernels[f"pbt-{seed}"] = lambda s=seed: found.__setitem__(
            ("pbt", s), jax_rmsprop.pbt(task, SPACE, EPOCHS, population=32, interval=1, seed=s)
        )
        kernels[f"random-{seed}"] = lambda s=seed: found.__setitem__(
            ("random", s), jax_rmsprop.tune(task, SPACE, EPOCHS, samples=32, seed=s)
        )
    for kernel in kernels.values():  # compile outside the timer
        kernel()
    med = round_robin(benchmark, kernels, rounds=2)
    pbt = [float(found["pbt", s].score.min()) for s in seeds]
    rnd = [float(found["random", s].score().min()) for s in seeds]
    time_ratio = sum(med[f"pbt-{s}"] for s in seeds) / sum(med[f"random-{s}"] for s in seeds)
    benchmark.extra_info.update(
        {
            "pbt best (per seed)": [round(v, 4) for v in pbt],
            "random best (per seed)": [round(v, 4) for v in rnd],
            "pbt/random time": round(time_ratio, 2),
        },
        device=device,
    )
    # the goal: at least as good as the best of the random search, every seed
    assert all(p <= r for p, r in zip(pbt, rnd))
    assert np.isfinite(pbt).all()
