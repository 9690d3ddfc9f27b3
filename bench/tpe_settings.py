"""Batched TPE against a 4096-configuration random search, for several TPE settings.

The table of ``bench/RESULTS.md`` (2026-11-30, session 8): for each setting given, the
best of 256 trials (batches of 32) divided by the best of ``tune(samples=4096)``, same
space, same training keys, each configuration scored on the mean of 2 trainings, search
seeds 0, 1, 2 (``bench/test_tune_optuna.py``'s quality protocol). Minutes on 2 cores::

    python -m bench.tpe_settings "constant_liar=True, multivariate=True" \\
        "constant_liar=True, multivariate=True, n_startup_trials=64"

``qmc_startup=N`` (not a TPESampler argument) enqueues N scrambled Sobol points of the space
(Optuna's ``QMCSampler``, seeded by the search seed) as the study's first trials, which
then count among its 256. ``log_one_minus_decay=True`` (not a TPESampler argument
either) searches ``1 - decay`` on a log scale, ``FloatDistribution(1e-3, 0.5, log=True)``,
instead of ``decay`` uniform on [0.5, 0.999]; the random search is then drawn from that
space too.

``--seeds N`` runs search seeds 0 .. N-1 instead of 0, 1, 2, and prints beside each
setting the same ratio for a 256-configuration random search (``tune(samples=256)``: the
same budget as TPE's, no model) and how many seeds are within 2%: the spread of the
ratio over seeds, which three seeds only sample (session 12, bench/RESULTS.md)::

    python -m bench.tpe_settings --seeds 10 "constant_liar=True, multivariate=True"
"""

import math
import statistics
import sys
import warnings

import optuna

import jax_rmsprop

from .test_tune_optuna import BATCH, EPOCHS, QUALITY_SEEDS, SPACE, TRIALS


def main(settings: list[str], seeds: int = 3) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    task = jax_rmsprop.problems.digits()
    random_best: dict[bool, list[float]] = {}
    names = {"math": math}  # for gamma=lambda n: min(math.ceil(0.25 * n), 64)
    for text in settings:
        kw = eval(f"dict({text})", names)  # noqa: S307 (the command line's own settings)
        startup = kw.pop("qmc_startup", 0)
        log_decay = kw.pop("log_one_minus_decay", False)
        space, optimizer = _space(log_decay)
        if log_decay not in random_best:
            random_best[log_decay] = _random_best(task, space, optimizer, 4096, seeds)
            print("random 4096 best per seed:", [round(v, 4) for v in random_best[log_decay]])
            if seeds > 3:
                small = _random_best(task, space, optimizer, TRIALS, seeds)
                ratios = [a / b for a, b in zip(small, random_best[log_decay], strict=True)]
                _report(f"random {TRIALS} (no model)", ratios)
        ratios = []
        for s in range(seeds):
            study = optuna.create_study(  # (no pruning, as tune's own study)
                sampler=optuna.samplers.TPESampler(seed=s, **kw), pruner=optuna.pruners.NopPruner()
            )
            _enqueue_sobol(study, space, startup, seed=s)
            res = jax_rmsprop.tune(
                task, space, EPOCHS, optimizer=optimizer, study=study, trials=TRIALS,
                batch=BATCH, seed=s, seeds=QUALITY_SEEDS,
            )  # fmt: skip
            ratios.append(res.study.best_value / random_best[log_decay][s])
        _report(text, ratios)


def _random_best(task, space, optimizer, samples: int, seeds: int) -> list[float]:
    """The best score of ``tune(samples=samples, seed=s)`` for each search seed ``s``."""
    return [
        float(jax_rmsprop.tune(task, space, EPOCHS, optimizer=optimizer, samples=samples,
                               seed=s, seeds=QUALITY_SEEDS).score().min())
        for s in range(seeds)
    ]  # fmt: skip


def _report(name: str, ratios: list[float]) -> None:
    """One line: the ratios to random 4096's best per seed, their median, how many <= 1.02."""
    within = sum(r <= 1.02 for r in ratios)
    print(
        f"{name}: /random 4096 per seed {[round(r, 3) for r in ratios]}, median"
        f" {statistics.median(ratios):.3f}, within 2% on {within} of {len(ratios)}",
        flush=True,
    )


def _space(log_one_minus_decay: bool):
    """The bench's space and optimizer, or with ``1 - decay`` searched on a log scale."""
    if not log_one_minus_decay:
        return dict(SPACE), jax_rmsprop.rmsprop
    space = {k: v for k, v in SPACE.items() if k != "decay"}
    space["one_minus_decay"] = optuna.distributions.FloatDistribution(1e-3, 0.5, log=True)

    def optimizer(one_minus_decay, **kw):
        return jax_rmsprop.rmsprop(decay=1 - one_minus_decay, **kw)

    return space, optimizer


def _enqueue_sobol(study, space, n: int, seed: int) -> None:
    """Enqueues ``n`` scrambled Sobol points of ``space`` as ``study``'s next trials."""
    design = optuna.create_study(sampler=optuna.samplers.QMCSampler(seed=seed, scramble=True))
    for _ in range(n):
        trial = design.ask(dict(space))
        study.enqueue_trial(trial.params)
        design.tell(trial, 0.0)


if __name__ == "__main__":
    args = sys.argv[1:]
    n = 3
    if args[:1] == ["--seeds"]:
        n, args = int(args[1]), args[2:]
    main(args or ["constant_liar=True, multivariate=True"], seeds=n)
