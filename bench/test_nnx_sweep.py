"""Group nnx-sweep: 16 x 16 configurations x 3 seeds of a dropout + batch-norm NNX model.

One program (``sweep`` of a ``Task`` whose ``init`` returns the module) against a Python
loop of ``fit`` calls, one per (configuration, seed), with one ``inject_hyperparams``
optimizer so the loop does not recompile (a few configurations of the loop are timed and
compared per training, as the full loop would take minutes).
"""

import jax.numpy as jnp
import optax
import pytest

import jax_rmsprop

from .helpers import round_robin

nnx = pytest.importorskip("flax.nnx")
pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

from .helpers import big_enabled  # noqa: E402
from .test_digits_sweep import SEEDS, _grid, loop_of_fits  # noqa: E402
from .test_fit_nnx import Net  # noqa: E402

EPOCHS = 3


def loss(model, batch):
    x, y = batch
    logits = model(x)
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return xent, {"accuracy": jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))}


def _task():
    digits = jax_rmsprop.problems.digits()
    return jax_rmsprop.Task(
        loss, lambda key: Net(nnx.Rngs(key)), digits.data, 32, digits.validation
    )


@pytest.mark.benchmark(group="nnx-sweep")
def test_nnx_sweep(benchmark, device, request):
    big = big_enabled(request.config)
    GRID = _grid(16 if big else 8)  # noqa: N806  (the default run: 8 x 8, one round)
    RUNS = GRID["decay"].size ** 2 * SEEDS  # noqa: N806
    task = _task()
    few = list(zip(GRID["learning_rate"][::5], GRID["decay"][::5]))[:4]  # <= 4 configurations
    kernels = {
        "program": lambda: jax_rmsprop.tune(task, GRID, EPOCHS, seeds=SEEDS),
        "fit-loop": lambda: loop_of_fits(task, few, epochs=EPOCHS),
    }
    result = kernels["program"]()  # compile and warm up outside the timer
    kernels["fit-loop"]()
    med = round_robin(benchmark, kernels, rounds=2 if big else 1)
    per_run = {"program": med["program"] / RUNS, "fit-loop": med["fit-loop"] / (len(few) * SEEDS)}
    best = result.best(1, by="val_accuracy")[0]
    benchmark.extra_info.update(
        device=device,
        runs=RUNS,
        epochs=EPOCHS,
        **{"fit-loop/program (per run)": round(per_run["fit-loop"] / per_run["program"], 2)},
        best_val_accuracy=round(best["score"], 4),
    )
    assert 0.5 < best["score"] <= 1.0  # the best configuration learned the digits
