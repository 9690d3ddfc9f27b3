"""Sweeps of whole trainings (a Task): each cell equals fit run alone with its seed's keys."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optuna.distributions import FloatDistribution as F

import jax_rmsprop
from jax_rmsprop import _plan, _tune

from ..training.test_fit import _problem, regression_loss


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


@pytest.mark.slow
def test_each_cell_equals_fit_with_its_seeds_keys():
    task = _task()
    res = jax_rmsprop.tune(task, GRID, 3, seeds=2, seed=7)
    assert res.loss.shape == res.val_loss.shape == (3, 2, 2, 3)
    for i, lr in enumerate(GRID["learning_rate"]):
        for j, d in enumerate(GRID["decay"]):
            for s in range(2):
                init_key, shuffle_key = _plan.seed_keys(7, s)
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
    res = jax_rmsprop.tune(_task(), GRID, 3, seeds=3)
    mean = res.val_loss[..., -1].mean(-1)
    best = res.best(2)
    i, j = np.unravel_index(np.argmin(mean), mean.shape)
    assert best[0]["learning_rate"] == GRID["learning_rate"][i]
    assert best[0]["decay"] == GRID["decay"][j]
    assert best[0]["score"] == pytest.approx(mean[i, j])
    assert best[0]["seed_std"] == pytest.approx(res.val_loss[i, j, :, -1].std())
    np.testing.assert_allclose(res.spread(), res.val_loss[..., -1].std(-1), rtol=1e-15)
    assert best[0]["score"] <= best[1]["score"]


def test_chunks_give_the_same_numbers_and_report_progress():
    task = _task(validation=False)
    whole = jax_rmsprop.tune(task, GRID, 2, seeds=2)
    calls = []
    chunked = jax_rmsprop.tune(
        task, GRID, 2, seeds=2, chunk_size=5, progress=lambda d, t: calls.append((d, t))
    )
    assert whole.val_loss is None
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-12)
    assert calls == [(10, 24), (20, 24), (24, 24)]  # epochs trained (2 a run) of 12 runs'


@pytest.mark.slow
def test_chunks_are_sized_by_memory_when_not_given(monkeypatch):
    """Without ``chunk_size``, XLA's accounting of the whole program decides: all runs in
    one program when it fits the budget, else chunks that do, with the same numbers."""
    task = _task()
    plan = _plan.make_plan(
        task,
        [GRID["learning_rate"]],
        ("learning_rate",),
        4,
        0,
        None,
        jax_rmsprop.rmsprop,
        None,
        None,
        None,
        None,
    )
    total, shared = plan._bytes(12, None, 0, 2)
    per_run = (total - shared) / 12
    assert 0 < shared < total and per_run > 0
    # a budget for about a third of the runs: smaller chunks whose program fits it
    budget = int(shared + 4 * per_run)
    monkeypatch.setattr(_plan, "_memory_budget", lambda mesh: budget)
    c = plan.chunk(12, None, 0, 2)
    assert 1 <= c < 12 and plan._bytes(c, None, 0, 2)[0] <= budget
    calls = []
    small = jax_rmsprop.tune(task, GRID, 2, seeds=2, progress=lambda d, t: calls.append(d))
    assert calls == [2 * d for d in [*range(c, 12, c), 12]]  # epochs: 2 a run
    monkeypatch.setattr(_plan, "_memory_budget", lambda mesh: 1 << 40)
    calls.clear()
    whole = jax_rmsprop.tune(task, GRID, 2, seeds=2, progress=lambda d, t: calls.append(d))
    assert calls == [24]
    np.testing.assert_allclose(small.loss, whole.loss, rtol=1e-12)
    np.testing.assert_allclose(small.val_loss, whole.val_loss, rtol=1e-12)


def test_the_memory_budget_is_a_share_of_the_free_memory():
    import os

    budget = _plan._memory_budget(None)
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < budget <= _plan.MEMORY_FRACTION * ram


def test_other_optimizers_and_options():
    task = _task(validation=False)
    res = jax_rmsprop.tune(
        task,
        {"learning_rate": np.array([0.01, 0.05])},
        2,
        optimizer=optax.sgd,
        options={"momentum": 0.9},
    )
    init_key, shuffle_key = _plan.seed_keys(0, 0)
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
    with pytest.raises(ValueError, match=r"`tune\(seeds=...\)`"):
        jax_rmsprop.tune(_task(), GRID, 2, seeds=0)
    with pytest.raises(ValueError, match=r"`tune\(epochs=...\)` must be a positive int"):
        jax_rmsprop.tune(_task(), GRID, 0)
    with pytest.raises(ValueError, match=r"must be a non-empty 1-D array"):
        jax_rmsprop.tune(_task(), {"decay": np.ones((2, 2))}, 2)
    with pytest.raises(ValueError, match=r"`tune\(chunk_size=...\)` must be a positive int"):
        jax_rmsprop.tune(_task(), GRID, 2, chunk_size=0)
    # the task's own fields are named, not fit's arguments
    task = _task()
    with pytest.raises(ValueError, match=r"`Task\(batch_size=...\)` must be an int in \[1, 64\]"):
        jax_rmsprop.tune(dataclasses.replace(task, batch_size=65), GRID, 2)
    x, y = task.data
    with pytest.raises(ValueError, match=r"`Task\(data=...\)`: every array needs the same"):
        jax_rmsprop.tune(dataclasses.replace(task, data=(x, y[:-1])), GRID, 2)


@pytest.mark.slow
def test_the_digits_task_trains_like_fit():
    pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")
    task = jax_rmsprop.problems.get("digits")
    assert isinstance(task, jax_rmsprop.Task) and "digits" in jax_rmsprop.problems.names()
    x, y = task.data
    assert x.shape == (1437, 64) and y.shape == (1437,) and task.validation[0].shape == (360, 64)
    res = jax_rmsprop.tune(task, {"learning_rate": np.array([1e-3, 1e-2])}, 1, seeds=1)
    init_key, shuffle_key = _plan.seed_keys(0, 0)
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


def _fit_cell(task, tx, s, seed, epochs):
    init_key, shuffle_key = _plan.seed_keys(seed, s)
    return jax_rmsprop.fit(
        task.loss,
        task.init(init_key),
        tx,
        task.data,
        epochs=epochs,
        batch_size=task.batch_size,
        key=shuffle_key,
        validation=task.validation,
    )


def test_random_search_draws_from_the_distributions_log_scale_where_they_say():
    task = _task()
    ranges = {"learning_rate": F(1e-4, 1e-1, log=True), "decay": F(0.5, 0.99)}
    res = jax_rmsprop.tune(task, ranges, 2, samples=40, seed=3)
    lr, decay = res.configs["learning_rate"], res.configs["decay"]
    assert lr.shape == decay.shape == (40,) and res.loss.shape == (40, 1, 2)
    assert ((1e-4 <= lr) & (lr <= 1e-1)).all() and ((0.5 <= decay) & (decay <= 0.99)).all()
    # log-uniform: about as many draws per decade (the uniform median would be ~0.05)
    assert 1e-3 < np.median(lr) < 1e-2
    assert 0.65 < np.median(decay) < 0.85  # uniform: no name decides the scale
    spaced = jax_rmsprop.tune(task, {"learning_rate": F(1e-4, 1e-1)}, 1, samples=40, seed=3)
    assert np.median(spaced.configs["learning_rate"]) > 2e-2  # uniform when not log
    again = jax_rmsprop.tune(task, ranges, 2, samples=40, seed=3)
    np.testing.assert_array_equal(again.configs["learning_rate"], lr)
    i = 7
    hist = _fit_cell(task, jax_rmsprop.rmsprop(float(lr[i]), decay=float(decay[i])), 0, 3, 2)
    np.testing.assert_allclose(res.val_loss[i, 0], hist.val_loss, rtol=1e-10)


@pytest.mark.parametrize("patience", [1, 2])
def test_early_stopping_follows_keras_rule_on_the_validation_loss(patience):
    task = _task()
    grid = {"learning_rate": np.array([0.3, 1.0])}  # large steps: the validation loss stalls
    epochs = 8
    res = jax_rmsprop.tune(task, grid, epochs, seeds=2, patience=patience)
    stopped_early = 0
    for i, lr in enumerate(grid["learning_rate"]):
        for s in range(2):
            full = _fit_cell(task, jax_rmsprop.rmsprop(float(lr)), s, 0, epochs)
            best, wait, ran = np.inf, 0, 0
            for v in full.val_loss:  # Keras EarlyStopping(monitor="val_loss", patience)
                ran += 1
                best, wait = (v, 0) if v < best else (best, wait + 1)
                if wait >= patience:
                    break
            assert res.epochs_run[i, s] == ran
            stopped_early += ran < epochs
            np.testing.assert_allclose(res.val_loss[i, s, :ran], full.val_loss[:ran], rtol=1e-10)
            np.testing.assert_allclose(res.loss[i, s, :ran], full.loss[:ran], rtol=1e-10)
            # later epochs repeat the last losses (the run stands still)
            np.testing.assert_array_equal(res.val_loss[i, s, ran:], res.val_loss[i, s, ran - 1])
    assert stopped_early > 0  # the case is one where early stopping acts


def test_random_search_and_patience_errors():
    with pytest.raises(ValueError, match=r"must be an Optuna distribution here"):
        jax_rmsprop.tune(_task(), {"learning_rate": (0.0, 1.0)}, 2, samples=4)
    with pytest.raises(ValueError, match=r"must be an Optuna distribution"):
        jax_rmsprop.tune(_task(), {"decay": np.array([0.5, 0.6, 0.7])}, 2, samples=4)
    with pytest.raises(ValueError, match=r"decay must be finite in \[0, 1\]; its bounds hold"):
        jax_rmsprop.tune(_task(), {"decay": F(0.5, 1.5)}, 2, samples=4)
    with pytest.raises(ValueError, match=r"`tune\(samples=...\)`"):
        jax_rmsprop.tune(_task(), {"decay": F(0.5, 0.9)}, 2, samples=0)
    with pytest.raises(ValueError, match=r"`tune\(patience=...\)`"):
        jax_rmsprop.tune(_task(), GRID, 2, patience=0)


@pytest.mark.slow
def test_k_fold_cross_validation_trains_each_fold_like_fit_on_its_split():
    task = _task()  # 64 examples: 4 folds of 16
    res = jax_rmsprop.tune(task, {"learning_rate": np.array([1e-2, 1e-1])}, 2, seeds=2, folds=4)
    assert res.loss.shape == res.val_loss.shape == (2, 8, 2)  # seed axis: seeds x folds
    x, y = task.data
    for s in range(2):
        for f in range(4):
            held = np.arange(16 * f, 16 * (f + 1))
            train = np.setdiff1d(np.arange(64), held)
            init_key, shuffle_key = _plan.seed_keys(0, s)
            hist = jax_rmsprop.fit(
                task.loss,
                task.init(init_key),
                jax_rmsprop.rmsprop(0.1),
                (x[train], y[train]),
                epochs=2,
                batch_size=10,
                key=shuffle_key,
                validation=(x[held], y[held]),
            )
            np.testing.assert_allclose(res.val_loss[1, 4 * s + f], hist.val_loss, rtol=1e-10)
            np.testing.assert_allclose(res.loss[1, 4 * s + f], hist.loss, rtol=1e-10)
    best = res.best(1)[0]
    assert best["score"] == pytest.approx(res.val_loss[..., -1].mean(-1).min())


def test_k_fold_errors():
    with pytest.raises(ValueError, match=r"`tune\(folds=...\)` must be an int in \[2, 64\]"):
        jax_rmsprop.tune(_task(), GRID, 2, folds=1)
    big_batch = dataclasses.replace(_task(), batch_size=40)
    with pytest.raises(ValueError, match=r"leaves 32 training examples per fold, fewer than"):
        jax_rmsprop.tune(big_batch, GRID, 2, folds=2)  # 2 folds of 32


def test_rungs_of_successive_halving():
    assert _tune._rungs(27, 27, 3) == [1, 3, 9, 27]
    assert _tune._rungs(24, 10, 3) == [1, 3, 10]
    assert _tune._rungs(2, 10, 3) == [10]  # too few configurations to halve
    assert _tune._rungs(100, 4, 2) == [1, 2, 4]  # limited by the epochs
    # epochs trained per rung (runs x the rung's epochs): 9 x 2 x 1, 3 x 2 x 2, 1 x 2 x 6
    assert _tune._work(9, 2, [1, 3, 9], 3) == [18, 12, 12]
    assert _tune._work(32, 3, [1, 3, 9], 3) == [96, 66, 72]  # 11 then 4 configurations
    assert _tune._work(5, 1, [4], None) == [20]


@pytest.mark.slow
def test_successive_halving_continues_the_best_and_equals_the_full_grid_where_it_trains():
    task = _task()
    grid = {"learning_rate": np.logspace(-3, 0, 9)}
    full = jax_rmsprop.tune(task, grid, 9, seeds=2)
    calls = []
    sh = jax_rmsprop.tune(  # rungs at 1, 3, 9 epochs
        task, grid, 9, seeds=2, halving=3, progress=lambda d, t: calls.append((d, t))
    )
    alive = np.arange(9)
    for end, keep in ((1, 3), (3, 1)):
        # the survivors are the best by mean validation loss over seeds at the rung's end
        score = full.val_loss[alive, :, end - 1].mean(-1)
        survivors = np.sort(alive[np.argsort(score, kind="stable")[:keep]])
        pruned = np.setdiff1d(alive, survivors)
        assert (sh.epochs_run[pruned] == end).all()
        assert np.isnan(sh.val_loss[pruned, :, end:]).all()
        alive = survivors
    assert (sh.epochs_run[alive] == 9).all()
    trained = ~np.isnan(sh.val_loss)
    # wherever halving trained, it equals the full grid (the continuation is exact)
    np.testing.assert_allclose(sh.val_loss[trained], full.val_loss[trained], rtol=1e-10)
    np.testing.assert_allclose(sh.loss[trained], full.loss[trained], rtol=1e-10)
    assert sh.best(1)[0]["learning_rate"] == grid["learning_rate"][alive[0]]
    # budget: 9 x 1 + 3 x 2 + 1 x 6 = 21 configuration-epochs of the full grid's 81
    assert sh.epochs_run.sum() == 2 * 21
    # the progress counts every rung's epochs, against the true total from the start
    trained_epochs = int((~np.isnan(sh.val_loss)).sum())
    assert calls == [(18, 42), (30, 42), (42, 42)] and trained_epochs == 42


def test_halving_errors():
    with pytest.raises(ValueError, match=r"`tune\(halving=...\)` must be >= 2"):
        jax_rmsprop.tune(_task(), GRID, 2, halving=1)


def _wide_task():
    """A 2,000-parameter linear model: its carries outweigh a run's logs ~100x."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 400)), rng.normal(size=(64, 5))
    xv, yv = rng.normal(size=(16, 400)), rng.normal(size=(16, 5))

    def loss(p, batch):
        return jnp.mean((batch[0] @ p["w"] - batch[1]) ** 2)

    def init(key):
        return {"w": 0.01 * jax.random.normal(key, (400, 5), jnp.float64)}

    return jax_rmsprop.Task(loss, init, (x, y), 16, (xv, yv), "wide")


@pytest.mark.parametrize("epochs", [4, pytest.param(16, marks=pytest.mark.slow)])  # 3, 5 rungs
def test_halving_keeps_the_carries_on_the_devices_between_rungs(monkeypatch, epochs):
    """What comes to the host is the logs, whatever the number of rungs: the survivors'
    parameters and optimizer states are gathered on the devices (they went through the
    host at every rung before). Measured as the bytes passed to ``to_host``."""
    hosted = []

    def counting(a):
        out = _plan_to_host(a)
        hosted.append(out.nbytes)
        return out

    from jax_rmsprop import _host, _plan

    _plan_to_host = _host.to_host
    monkeypatch.setattr(_plan, "to_host", counting)
    task = _wide_task()
    grid = {"learning_rate": np.logspace(-4, -1, 16)}
    res = jax_rmsprop.tune(task, grid, epochs, halving=2)
    rungs = len(_tune._rungs(16, epochs, 2))
    assert rungs == {4: 3, 16: 5}[epochs]
    carry_bytes = 3 * 400 * 5 * 8  # one run's params, nu and (none) more: > 2 x 16 kB
    logs_bytes = 16 * epochs * 8 * 2  # loss and val_loss of every run and epoch, at most
    assert sum(hosted) <= logs_bytes + 16 * 4 * rungs  # and the runs' epoch counters
    assert sum(hosted) < carry_bytes
    # the numbers are those of the full grid where halving trained (exact continuation)
    full = jax_rmsprop.tune(task, grid, epochs)
    trained = ~np.isnan(res.val_loss)
    np.testing.assert_allclose(res.val_loss[trained], full.val_loss[trained], rtol=1e-10)


def _quantizable_task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 64)).astype(np.float32)
    y = (x @ rng.normal(size=(64, 80))).astype(np.float32)

    def init(key):
        return {"w": jnp.zeros((64, 80), jnp.float32)}  # 5120 elements: above the minimum

    def loss(p, batch):
        return jnp.mean((batch[0] @ p["w"] - batch[1]) ** 2)

    return jax_rmsprop.Task(loss, init, (x[:64], y[:64]), 16, (x[64:], y[64:]))


def test_the_state_format_as_a_categorical_hyperparameter_is_one_program_per_value():
    """``CategoricalDistribution([8, 4])`` for ``state_bits``: numbers, but a format, so
    each value is a program of its own (not a traced number, which the optimizer cannot
    take); each trial equals ``fit`` with its format. In a grid it is refused, naming
    ``options=``."""
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution as C

    task = _quantizable_task()
    space = {"learning_rate": F(1e-3, 1e-2, log=True), "state_bits": C([8, 4])}
    res = jax_rmsprop.tune(task, space, 2, sampler=optuna.samplers.RandomSampler(seed=0),
                           trials=4, batch=4)  # fmt: skip
    bits = [t.params["state_bits"] for t in res.study.trials]
    assert sorted(set(bits)) == [4, 8]  # (seed 0 draws both)
    for i, n in enumerate(res.trial):
        t = res.study.trials[n]
        tx = jax_rmsprop.rmsprop(t.params["learning_rate"], state_bits=t.params["state_bits"])
        hist = _fit_cell(task, tx, 0, 0, 2)
        np.testing.assert_allclose(res.val_loss[i, 0], hist.val_loss, rtol=1e-6)
    with pytest.raises(ValueError, match=r"state_bits decides the compiled program.*options="):
        jax_rmsprop.tune(task, {"learning_rate": np.array([1e-3]), "state_bits": [8, 4]}, 1)


@pytest.mark.parametrize("bits", [8, 4])
def test_a_grid_with_quantized_state_trains_each_cell_as_fit_does(bits):
    """``options={"state_bits": ...}``: the state format is a fixed option of the one
    program; each cell equals ``fit`` with that optimizer and its seed's keys, and the
    quantization is really applied (not float32's numbers) while tracking them."""
    task = _quantizable_task()
    grid = {"learning_rate": np.array([1e-3, 1e-2])}
    res = jax_rmsprop.tune(task, grid, 3, options={"state_bits": bits})
    plain = jax_rmsprop.tune(task, grid, 3)
    for i, lr in enumerate(grid["learning_rate"]):
        tx = jax_rmsprop.rmsprop(float(lr), state_bits=bits)
        hist = _fit_cell(task, tx, 0, 0, 3)
        np.testing.assert_allclose(res.val_loss[i, 0], hist.val_loss, rtol=1e-6)
    assert not np.array_equal(res.val_loss, plain.val_loss)
    np.testing.assert_allclose(res.val_loss, plain.val_loss, rtol=0.05)
