"""Group tune-optuna: batched TPE against what an Optuna user writes today.

Four hyperparameters of RMSProp (learning rate, decay, eps, momentum) on the digits
classifier. Side by side, per trial (compiles included, as a user pays them):

- ``batched``: ``tune(task, space, EPOCHS, sampler=TPE, trials=TRIALS, batch=32)``, every
  batch of 32 trials one vmapped program;
- ``optimize``: ``study.optimize(objective)`` where each trial builds ``rmsprop(**params)``
  and calls ``fit`` (a new optimizer per trial: one compile per trial);
- ``optimize-injected``: the same loop with one ``inject_hyperparams`` optimizer whose
  hyperparameters are set in its state (compiled once, reused by every trial);
- ``keras-optimize``: the same loop training the same classifier with ``keras.Model.fit``
  and Keras's RMSprop (when Keras is installed).

The injected loop runs all ``TRIALS`` trials (TPE's own cost grows with the trials told,
and both pay it); the compile-per-trial and Keras loops, ~1 s a trial here, are timed
over ``LOOP_TRIALS`` and compared per trial. The batched tuning is timed warm (its two programs
compiled by an earlier call) and once cold (``jax.clear_caches()`` first), compiles
included as the loops include theirs.
"""

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _plan

from .helpers import big_enabled, keras_digits_classifier, keras_on_jax, round_robin

optuna = pytest.importorskip("optuna")
pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")
FloatDistribution = optuna.distributions.FloatDistribution

SPACE = {
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "decay": FloatDistribution(0.5, 0.999),
    "eps": FloatDistribution(1e-8, 1e-3, log=True),
    "momentum": FloatDistribution(0.0, 0.95),
}
EPOCHS, TRIALS, BATCH, LOOP_TRIALS = 3, 256, 32, 4
SMALL_TRIALS = 64  # the default run (one round); --big: 256 trials, 2 rounds
QUALITY_SEEDS = 2


def _sampler(seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)


def _objective(task, make_tx):
    init_key, shuffle_key = _plan.seed_keys(0, 0)

    def objective(trial):
        params = {n: trial.suggest_float(n, d.low, d.high, log=d.log) for n, d in SPACE.items()}
        tx, opt_state = make_tx(params, task.init(init_key))
        hist = jax_rmsprop.fit(
            task.loss, task.init(init_key), tx, task.data, epochs=EPOCHS,
            batch_size=task.batch_size, key=shuffle_key, validation=task.validation,
            opt_state=opt_state,
        )  # fmt: skip
        return float(hist.val_loss[-1])

    return objective


def _fresh(params, p0):
    return jax_rmsprop.rmsprop(**params), None


INJECTED = optax.inject_hyperparams(jax_rmsprop.rmsprop, hyperparam_dtype=jnp.float32)(
    learning_rate=1e-3, decay=0.9, eps=1e-8, momentum=0.5
)


def _injected(params, p0):
    state = INJECTED.init(p0)
    for name, v in params.items():
        state.hyperparams[name] = jnp.float32(v)
    return INJECTED, state


def _keras_objective(task, keras):
    def objective(trial):
        p = {n: trial.suggest_float(n, d.low, d.high, log=d.log) for n, d in SPACE.items()}
        keras.utils.set_random_seed(0)
        model = keras_digits_classifier(
            keras, learning_rate=p["learning_rate"], rho=p["decay"], epsilon=p["eps"],
            momentum=p["momentum"],
        )  # fmt: skip
        hist = model.fit(
            *task.data, epochs=EPOCHS, batch_size=task.batch_size,
            validation_data=task.validation, verbose=0,
        )  # fmt: skip
        return float(hist.history["val_loss"][-1])

    return objective


@pytest.mark.benchmark(group="tune-optuna")
def test_batched_tpe_against_study_optimize(benchmark, device, request):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    big = big_enabled(request.config)
    TRIALS = globals()["TRIALS"] if big else SMALL_TRIALS  # noqa: N806
    task = jax_rmsprop.problems.digits()

    def batched():
        return jax_rmsprop.tune(task, SPACE, EPOCHS, sampler=_sampler(), trials=TRIALS, batch=BATCH)

    def loop(make_tx, trials):
        def run():
            study = optuna.create_study(sampler=_sampler())
            study.optimize(_objective(task, make_tx), n_trials=trials)

        return run

    kernels = {
        "batched": batched,
        "optimize": loop(_fresh, LOOP_TRIALS),
        "optimize-injected": loop(_injected, TRIALS),
    }
    keras = keras_on_jax()
    if keras is not None:

        def keras_loop():
            study = optuna.create_study(sampler=_sampler())
            study.optimize(_keras_objective(task, keras), n_trials=LOOP_TRIALS)

        kernels["keras-optimize"] = keras_loop
    jax.clear_caches()
    t = time.perf_counter()
    res = batched()  # cold: its programs compiled in the call
    cold = time.perf_counter() - t
    loop(_injected, 1)()  # the injected program's compile outside the timer
    med = round_robin(benchmark, kernels, rounds=2 if big else 1)
    per_trial = {
        "batched": med["batched"] / TRIALS,
        "optimize": med["optimize"] / LOOP_TRIALS,
        "optimize-injected": med["optimize-injected"] / TRIALS,
    }
    if keras is not None:
        per_trial["keras-optimize"] = med["keras-optimize"] / LOOP_TRIALS
    info = {"trials": TRIALS, "batch": BATCH, "epochs": EPOCHS, "loop trials": LOOP_TRIALS}
    info["batched cold ms"] = round(cold * 1e3, 1)
    for name in ("optimize", "optimize-injected", "keras-optimize")[: len(per_trial) - 1]:
        info[f"{name}/batched (per trial)"] = round(per_trial[name] / per_trial["batched"], 2)
    info["optimize/batched cold (per trial)"] = round(
        per_trial["optimize"] / (cold * 1e3 / TRIALS), 2
    )
    info["best val loss (batched)"] = round(res.study.best_value, 4)
    benchmark.extra_info.update(info, device=device)
    assert len(res.study.trials) == TRIALS
    # the goals, >= 10x a compile-per-trial loop and >= 50x Keras, hold with a wide
    # margin (25x, 200x here), so a noisy CI machine checks them too; >= 2x the injected
    # loop (2.3-2.5x here, TPE's own asks are 2/3 of the batched time) is recorded only
    if big:  # (256 trials amortise the one compile; 64 do not, by design of the goal)
        assert info["optimize/batched cold (per trial)"] >= 10
    if keras is not None:
        assert info["keras-optimize/batched (per trial)"] >= 50
    jax.clear_caches()


@pytest.mark.benchmark(group="tune-optuna-quality")
def test_batched_tpe_finds_what_a_4096_random_search_finds(benchmark, device, request):
    """Batched TPE (256 trials, batches of 32) against 4096 random configurations.

    The best final validation loss, each configuration scored on the mean of
    ``QUALITY_SEEDS`` trainings (one seed's 3-epoch loss is noisy enough that the best of
    4096 draws is mostly luck), for 3 search seeds (seed s: the sampler's seed and the
    training keys' root, the same for both searches); one round, minutes on 2 CPU cores,
    so it runs whole under ``--big`` (the default run: 64 trials against 512
    configurations, seed 0). Recorded, not asserted (bench/RESULTS.md says whether the
    goal, within 2% on every seed, holds).
    """
    big = big_enabled(request.config)
    trials, samples, seeds = (TRIALS, 4096, range(3)) if big else (SMALL_TRIALS, 512, range(1))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = jax_rmsprop.problems.digits()
    found = {}

    def searches():
        for seed in seeds:
            rnd = jax_rmsprop.tune(
                task, SPACE, EPOCHS, samples=samples, seed=seed, seeds=QUALITY_SEEDS
            )
            tpe = jax_rmsprop.tune(
                task, SPACE, EPOCHS, sampler=_sampler(seed), trials=trials, batch=BATCH,
                seed=seed, seeds=QUALITY_SEEDS,
            )  # fmt: skip
            found[seed] = (float(rnd.score().min()), tpe.study.best_value)

    benchmark.pedantic(searches, rounds=1, iterations=1)
    ratios = [tpe / rnd for rnd, tpe in found.values()]
    benchmark.extra_info.update(
        {
            "random best": [round(r, 4) for r, _ in found.values()],
            "tpe best": [round(t, 4) for _, t in found.values()],
            "tpe/random (worst seed)": round(max(ratios), 4),
            "configurations trained (tpe, random)": (trials, samples),
            "seeds per configuration": QUALITY_SEEDS,
        },
        device=device,
    )
    assert all(np.isfinite(r) for r in ratios)
