"""Batched TPE against a 4096-configuration random search, for several TPE settings.

The table of ``bench/RESULTS.md`` (2026-11-30, session 8): for each setting given, the
best of 256 trials (batches of 32) divided by the best of ``tune(samples=4096)``, same
space, same training keys, each configuration scored on the mean of 2 trainings, search
seeds 0, 1, 2 (``bench/test_tune_optuna.py``'s quality protocol). Minutes on 2 cores::

    python -m bench.tpe_settings "constant_liar=True, multivariate=True" \\
        "constant_liar=True, multivariate=True, n_startup_trials=64"

``qmc_startup=N`` (not a TPESampler argument) enqueues N scrambled Sobol points of the space
(Optuna's ``QMCSampler``, seeded by the search seed) as the study's first trials, which
then count among its 256.
"""

import math
import sys
import warnings

import optuna

import jax_rmsprop

from .test_tune_optuna import BATCH, EPOCHS, QUALITY_SEEDS, SPACE, TRIALS


def main(settings: list[str]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    task = jax_rmsprop.problems.digits()
    random_best = [
        float(jax_rmsprop.tune(task, SPACE, EPOCHS, samples=4096, seed=s, seeds=QUALITY_SEEDS)
              .score().min())
        for s in range(3)
    ]  # fmt: skip
    print("random 4096 best per seed:", [round(v, 4) for v in random_best])
    names = {"math": math}  # for gamma=lambda n: min(math.ceil(0.25 * n), 64)
    for text in settings:
        kw = eval(f"dict({text})", names)  # noqa: S307 (the command line's own settings)
        startup = kw.pop("qmc_startup", 0)
        ratios = []
        for s in range(3):
            study = optuna.create_study(  # (no pruning, as tune's own study)
                sampler=optuna.samplers.TPESampler(seed=s, **kw), pruner=optuna.pruners.NopPruner()
            )
            _enqueue_sobol(study, startup, seed=s)
            res = jax_rmsprop.tune(
                task, SPACE, EPOCHS, study=study, trials=TRIALS, batch=BATCH, seed=s,
                seeds=QUALITY_SEEDS,
            )  # fmt: skip
            ratios.append(res.study.best_value / random_best[s])
        print(f"{text}: TPE/random per seed {[round(r, 3) for r in ratios]}", flush=True)


def _enqueue_sobol(study, n: int, seed: int) -> None:
    """Enqueues ``n`` scrambled Sobol points of ``SPACE`` as ``study``'s next trials."""
    design = optuna.create_study(sampler=optuna.samplers.QMCSampler(seed=seed, scramble=True))
    for _ in range(n):
        trial = design.ask(dict(SPACE))
        study.enqueue_trial(trial.params)
        design.tell(trial, 0.0)


if __name__ == "__main__":
    main(sys.argv[1:] or ["constant_liar=True, multivariate=True"])
