"""Group tune-optuna: batched TPE against what an Optuna user writes today.

Four hyperparameters of RMSProp (learning rate, decay, eps, momentum) on the digits
classifier. Side by side, per trial (compiles included, as a user pays them):

- ``batched``: ``tune(task, space, EPOCHS, sampler=TPE, trials=TRIALS, batch=32)``, every
  batch of 32 trials one vmapped program;
- ``optimize``: ``study.optimize(objective)`` where each trial builds ``rmsprop(**params)``
  and calls ``fit`` (a new optimizer per trial: one compile per trial);
- ``optimize-injected``: the same loop with one ``inject_hyperparams`` optimizer whose
  hyperparameters are set in its state (compiled once, reused by every trial).

The loops are timed over a few trials each (they are linear in the trials) and compared
per trial with the batched tuning of ``TRIALS`` trials.
"""

import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _tune

from .helpers import round_robin

optuna = pytest.importorskip("optuna")
pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")
FloatDistribution = optuna.distributions.FloatDistribution

SPACE = {
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "decay": FloatDistribution(0.5, 0.999),
    "eps": FloatDistribution(1e-8, 1e-3, log=True),
    "momentum": FloatDistribution(0.0, 0.95),
}
EPOCHS, TRIALS, BATCH, LOOP_TRIALS = 3, 64, 32, 4


def _sampler(seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)


def _objective(task, make_tx):
    init_key, shuffle_key = _tune.seed_keys(0, 0)

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


@pytest.mark.benchmark(group="tune-optuna")
def test_batched_tpe_against_study_optimize(benchmark, device):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = jax_rmsprop.problems.digits()

    def batched():
        return jax_rmsprop.tune(task, SPACE, EPOCHS, sampler=_sampler(), trials=TRIALS, batch=BATCH)

    def loop(make_tx):
        def run():
            study = optuna.create_study(sampler=_sampler())
            study.optimize(_objective(task, make_tx), n_trials=LOOP_TRIALS)

        return run

    kernels = {
        "batched": batched,
        "optimize": loop(_fresh),
        "optimize-injected": loop(_injected),
    }
    res = batched()  # the programs' first compile outside the timer, as for the loops'
    loop(_injected)()
    med = round_robin(benchmark, kernels, rounds=2)
    per_trial = {
        "batched": med["batched"] / TRIALS,
        "optimize": med["optimize"] / LOOP_TRIALS,
        "optimize-injected": med["optimize-injected"] / LOOP_TRIALS,
    }
    info = {"trials": TRIALS, "batch": BATCH, "epochs": EPOCHS, "loop trials": LOOP_TRIALS}
    for name in ("optimize", "optimize-injected"):
        info[f"{name}/batched (per trial)"] = round(per_trial[name] / per_trial["batched"], 2)
    info["best val loss (batched)"] = round(res.study.best_value, 4)
    benchmark.extra_info.update(info, device=device)
    assert len(res.study.trials) == TRIALS
    # the goals: >= 10x a compile-per-trial loop, >= 2x one compiled program
    assert info["optimize/batched (per trial)"] >= 10
    assert info["optimize-injected/batched (per trial)"] >= 2
    jax.clear_caches()
