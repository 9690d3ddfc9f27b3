"""Sweeps of whole trainings (a Task): each cell equals fit run alone with its seed's keys."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _train_sweep

from .test_fit import _problem, regression_loss


def _task(validation=True):
    params, data = _problem(n=64)
    _, val = _problem(n=30, seed=1)

    def init(key):
        return {
            "w": 0.1 * jax.random.normal(key, (5,), jnp.float64),
            "b": jnp.zeros((), jnp.float64),
        }

    return jax_rmsprop.Task(regression_loss, init, data, 10, val if validation else None, "reg")


GRID = {"learning_rate": np.array([1e-3, 1e-2, 1e-1]), "decay": np.array([0.5, 0.9])}


def test_each_cell_equals_fit_with_its_seeds_keys():
    task = _task()
    res = jax_rmsprop.sweep(task, GRID, 3, seeds=2, seed=7)
    assert res.loss.shape == res.val_loss.shape == (3, 2, 2, 3)
    for i, lr in enumerate(GRID["learning_rate"]):
        for j, d in enumerate(GRID["decay"]):
            for s in range(2):
                init_key, shuffle_key = _train_sweep.seed_keys(7, s)
                hist = jax_rmsprop.fit(
                    task.loss,
                    task.init(init_key),
                    jax_rmsprop.rmsprop(float(lr), decay=float(d)),
                    task.data,
                    epochs=3,
                    batch_size=10,
                    key=shuffle_key,
                    validation=task.validation,
                )
                np.testing.assert_allclose(res.loss[i, j, s], hist.loss, rtol=1e-10)
                np.testing.assert_allclose(res.val_loss[i, j, s], hist.val_loss, rtol=1e-10)
    # two seeds are two different trainings
    assert not np.allclose(res.loss[..., 0, :], res.loss[..., 1, :])


def test_best_ranks_by_the_mean_final_validation_loss_over_seeds():
    res = jax_rmsprop.sweep(_task(), GRID, 3, seeds=3)
    mean = res.val_loss[..., -1].mean(-1)
    best = res.best(2)
    i, j = np.unravel_index(np.argmin(mean), mean.shape)
    assert best[0]["learning_rate"] == GRID["learning_rate"][i]
    assert best[0]["decay"] == GRID["decay"][j]
    assert best[0]["score"] == pytest.approx(mean[i, j])
    assert best[0]["seed_std"] == pytest.approx(res.val_loss[i, j, :, -1].std())
    assert best[0]["score"] <= best[1]["score"]


def test_chunks_give_the_same_numbers_and_report_progress():
    task = _task(validation=False)
    whole = jax_rmsprop.sweep(task, GRID, 2, seeds=2)
    calls = []
    chunked = jax_rmsprop.sweep(
        task, GRID, 2, seeds=2, chunk_size=5, progress=lambda d, t: calls.append((d, t))
    )
    assert whole.val_loss is None
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-12)
    assert calls == [(5, 12), (10, 12), (12, 12)]


def test_other_optimizers_and_options():
    task = _task(validation=False)
    res = jax_rmsprop.sweep(
        task,
        {"learning_rate": np.array([0.01, 0.05])},
        2,
        optimizer=optax.sgd,
        options={"momentum": 0.9},
    )
    init_key, shuffle_key = _train_sweep.seed_keys(0, 0)
    hist = jax_rmsprop.fit(
        task.loss,
        task.init(init_key),
        optax.sgd(0.05, momentum=0.9),
        task.data,
        epochs=2,
        batch_size=10,
        key=shuffle_key,
    )
    np.testing.assert_allclose(res.loss[1, 0], hist.loss, rtol=1e-10)


def test_training_sweep_errors():
    with pytest.raises(ValueError, match=r"`sweep\(seeds=...\)`"):
        jax_rmsprop.sweep(_task(), GRID, 2, seeds=0)
    with pytest.raises(ValueError, match=r"epochs for a Task"):
        jax_rmsprop.sweep(_task(), GRID, 0)
    with pytest.raises(ValueError, match=r"must be a non-empty 1-D array"):
        jax_rmsprop.sweep(_task(), {"decay": np.ones((2, 2))}, 2)


def test_the_digits_task_trains_like_fit():
    pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")
    task = jax_rmsprop.problems.get("digits")
    assert isinstance(task, jax_rmsprop.Task) and "digits" in jax_rmsprop.problems.names()
    x, y = task.data
    assert x.shape == (1437, 64) and y.shape == (1437,) and task.validation[0].shape == (360, 64)
    res = jax_rmsprop.sweep(task, {"learning_rate": np.array([1e-3, 1e-2])}, 1, seeds=1)
    init_key, shuffle_key = _train_sweep.seed_keys(0, 0)
    hist = jax_rmsprop.fit(
        task.loss,
        task.init(init_key),
        jax_rmsprop.rmsprop(1e-2),
        task.data,
        epochs=1,
        batch_size=task.batch_size,
        key=shuffle_key,
        validation=task.validation,
    )
    np.testing.assert_allclose(res.val_loss[1, 0], hist.val_loss, rtol=1e-5)
    assert res.val_loss[1, 0, -1] < res.val_loss[0, 0, -1] < np.log(10)  # it learns
