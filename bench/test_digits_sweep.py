"""Group digits-sweep: 256 configurations x 3 seeds of the digits classifier.

One program (``sweep(problems.digits(), ...)``) against a Python loop of ``fit`` calls
and a loop of ``keras.Model.fit`` calls (a few configurations of each loop are timed and
compared per configuration-epoch, as the full loops would take minutes), and successive
halving against the full grid: its best configuration's validation loss and its budget.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _plan
from jax_rmsprop._model import split as split_model

from .helpers import big_enabled, keras_digits_classifier, keras_on_jax, round_robin

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

SEEDS, EPOCHS = 3, 9


def _grid(side: int) -> dict:
    return {"learning_rate": np.logspace(-4, -1, side), "decay": np.linspace(0.5, 0.99, side)}


GRID = _grid(16)  # --big; the default run: 8 x 8
RUNS = 16 * 16 * SEEDS


# One optimizer object whose hyperparameters are set in its state: the loop's figures were
# first taken this way, when ``fit`` compiled once per optimizer object. (A fresh
# ``rmsprop(lr, decay)`` per configuration now shares one program too: its numbers are
# traced; ``bench/test_compile.py``.)
TX = optax.inject_hyperparams(jax_rmsprop.rmsprop, hyperparam_dtype=jnp.float32)(
    learning_rate=1e-3, decay=0.9
)


def loop_of_fits(task, configs, tx=TX, epochs=EPOCHS):
    """``fit`` per (configuration, seed), the usual alternative to one program.

    ``task.init`` may return parameters or a Flax NNX module (its ``nnx.Param`` leaves
    are what the optimizer state is made for).
    """
    for lr, decay in configs:
        for s in range(SEEDS):
            init_key, shuffle_key = _plan.seed_keys(0, s)
            model = task.init(init_key)
            state = tx.init(split_model(task.loss, model, None)[1])
            state.hyperparams["learning_rate"] = jnp.float32(lr)
            state.hyperparams["decay"] = jnp.float32(decay)
            jax_rmsprop.fit(
                task.loss,
                model,
                tx,
                task.data,
                epochs=epochs,
                batch_size=task.batch_size,
                key=shuffle_key,
                validation=task.validation,
                opt_state=state,
            )


def _loop_of_keras_fits(task, configs):
    keras = keras_on_jax()
    if keras is None:
        return None

    def run():
        for lr, decay in configs:
            for s in range(SEEDS):
                keras.utils.set_random_seed(s)
                model = keras_digits_classifier(keras, learning_rate=float(lr), rho=float(decay))
                model.fit(
                    *task.data,
                    epochs=EPOCHS,
                    batch_size=task.batch_size,
                    validation_data=task.validation,
                    verbose=0,
                )

    return run


@pytest.mark.benchmark(group="digits-sweep")
def test_digits_sweep(benchmark, device, request):
    task = jax_rmsprop.problems.digits()
    big = big_enabled(request.config)
    GRID = _grid(16 if big else 8)  # noqa: N806
    RUNS = GRID["decay"].size ** 2 * SEEDS  # noqa: N806
    few = list(zip(GRID["learning_rate"][::5], GRID["decay"][::5]))[:4]  # <= 4 configurations
    kernels = {
        "program": lambda: jax_rmsprop.tune(task, GRID, EPOCHS, seeds=SEEDS),
        "fit-loop": lambda: loop_of_fits(task, few),
    }
    keras_loop = _loop_of_keras_fits(task, few[: 2 if big else 1])
    if keras_loop is not None:
        kernels["keras-loop"] = keras_loop
    full = kernels["program"]()  # compile and warm up outside the timer
    for name in list(kernels)[1:]:
        kernels[name]()
    med = round_robin(benchmark, kernels, rounds=2 if big else 1)
    per_run = {"program": med["program"] / RUNS, "fit-loop": med["fit-loop"] / (len(few) * SEEDS)}
    info = {"runs": RUNS, "epochs": EPOCHS}
    info["fit-loop/program (per run)"] = round(per_run["fit-loop"] / per_run["program"], 2)
    if "keras-loop" in med:
        per_keras = med["keras-loop"] / ((2 if big else 1) * SEEDS)
        info["keras-loop/program (per run)"] = round(per_keras / per_run["program"], 2)
    else:
        info["keras-loop/program (per run)"] = "keras not installed"
    # successive halving against the full grid
    sh = jax_rmsprop.tune(task, GRID, EPOCHS, seeds=SEEDS, halving=3)
    best_full, best_sh = full.best(1)[0]["score"], sh.best(1)[0]["score"]
    budget = float(sh.epochs_run.sum() / full.epochs_run.sum())
    info["best val loss (full grid, halving)"] = (round(best_full, 4), round(best_sh, 4))
    info["halving / full best"] = round(best_sh / best_full, 4)
    info["halving budget fraction"] = round(budget, 3)
    benchmark.extra_info.update(info, device=device)
    assert budget <= 0.35  # the goals for successive halving
    assert best_sh <= 1.05 * best_full
