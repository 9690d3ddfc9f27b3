"""tune(sampler=...): Optuna's trials, asked in batches, each trained as fit trains it."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
)

import jax_rmsprop  # noqa: E402

from ..training.test_tune import _fit_cell, _task  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {
    "learning_rate": FloatDistribution(1e-3, 3e-1, log=True),
    "decay": FloatDistribution(0.5, 0.99),
}
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def _tx(params):
    return jax_rmsprop.rmsprop(**params)


# Optuna 4.0-4.x flag constant_liar as experimental (5.0 does not): its warning, not ours
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_every_told_trial_is_its_configuration_trained_by_fit_with_each_seed():
    task = _task()
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=3, constant_liar=True)
    res = jax_rmsprop.tune(
        task, SPACE, 3, sampler=sampler, trials=7, batch=3, seeds=2, keep_params=True
    )
    study = res.study
    assert [t.state for t in study.trials] == [COMPLETE] * 7  # 3 + 3 + 1 asked
    assert sorted(res.trial) == list(range(7)) and res.loss.shape == (7, 2, 3)
    assert not res.pruned.any() and (res.epochs_run == 3).all()
    for i, number in enumerate(res.trial):
        t = study.trials[number]
        assert {n: res.configs[n][i] for n in SPACE} == t.params
        finals = []
        for s in range(2):
            hist = _fit_cell(task, _tx(t.params), s, 0, 3)
            np.testing.assert_allclose(res.val_loss[i, s], hist.val_loss, rtol=1e-10)
            np.testing.assert_allclose(res.loss[i, s], hist.loss, rtol=1e-10)
            for name in ("w", "b"):  # keep_params: the trained parameters came back
                np.testing.assert_allclose(res.params[name][i, s], hist.params[name], rtol=1e-9)
            finals.append(hist.val_loss[-1])
        np.testing.assert_allclose(t.value, np.mean(finals), rtol=1e-10)
    # later batches learn from the first: TPE's proposals are not the first three again
    assert res.best(1)[0]["score"] == pytest.approx(study.best_value)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_progress_counts_each_epoch_of_a_batch_once_it_ran_with_the_same_numbers():
    """With ``progress`` a batch trains epoch by epoch, each reported as the trials'
    epochs trained so far of trials x epochs; the numbers are those of one call."""
    task = _task()
    kw = dict(trials=5, batch=3)
    sampler = lambda: optuna.samplers.TPESampler(seed=1, constant_liar=True)  # noqa: E731
    whole = jax_rmsprop.tune(task, SPACE, 3, sampler=sampler(), **kw)
    calls = []
    stepped = jax_rmsprop.tune(
        task, SPACE, 3, sampler=sampler(), **kw, progress=lambda d, t: calls.append((d, t))
    )
    # a batch of 3, epoch by epoch, then the last 2 trials
    assert calls == [(d, 15) for d in (3, 6, 9, 11, 13, 15)]
    np.testing.assert_array_equal(stepped.val_loss, whole.val_loss)
    assert [t.value for t in stepped.study.trials] == [t.value for t in whole.study.trials]


@pytest.mark.slow
def test_a_categorical_that_changes_the_program_trains_one_program_per_value():
    task = _task()
    space = SPACE | {"centered": CategoricalDistribution([False, True])}
    sampler = optuna.samplers.RandomSampler(seed=3)
    res = jax_rmsprop.tune(task, space, 2, sampler=sampler, trials=6, batch=6)
    assert set(res.configs["centered"]) == {False, True}  # both programs ran in one batch
    for i, number in enumerate(res.trial):
        t = res.study.trials[number]
        hist = _fit_cell(task, _tx(t.params), 0, 0, 2)
        np.testing.assert_allclose(res.val_loss[i, 0], hist.val_loss, rtol=1e-10)
        assert t.value == pytest.approx(hist.val_loss[-1], rel=1e-10)


@pytest.mark.slow
def test_a_pruned_trial_stops_training_where_the_pruner_said_and_is_told_pruned():
    """Large learning rates stall: the median pruner stops them after an epoch or two.

    Their epochs before the prune equal fit's; afterwards they stand still (not trained,
    `epochs_run`), and the values reported to Optuna are each epoch's mean over seeds.
    """
    task = _task()
    space = {"learning_rate": FloatDistribution(1e-4, 3.0, log=True)}
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    sampler = optuna.samplers.RandomSampler(seed=0)
    epochs = 5
    res = jax_rmsprop.tune(
        task, space, epochs, sampler=sampler, pruner=pruner, trials=12, batch=4, seeds=2
    )
    states = [res.study.trials[n].state for n in res.trial]
    assert res.pruned.any() and not res.pruned.all()
    assert [s == PRUNED for s in states] == list(res.pruned)
    for i, number in enumerate(res.trial):
        t = res.study.trials[number]
        ran = int(res.epochs_run[i, 0])
        assert (res.epochs_run[i] == ran).all()
        assert ran == (max(t.intermediate_values) if res.pruned[i] else epochs)
        reported = [t.intermediate_values[e] for e in range(1, ran + 1)]
        np.testing.assert_allclose(reported, res.val_loss[i, :, :ran].mean(0), rtol=1e-12)
        hist = _fit_cell(task, _tx(t.params), 1, 0, ran)
        np.testing.assert_allclose(res.val_loss[i, 1, :ran], hist.val_loss, rtol=1e-10)
        if res.pruned[i]:  # frozen in its program from then on
            assert ran < epochs
            np.testing.assert_array_equal(
                res.val_loss[i, :, ran:],
                res.val_loss[i, :, ran - 1 :][:, :1].repeat(epochs - ran, 1),
            )


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_study_with_storage_goes_on_and_a_stale_trial_is_failed_and_retried(tmp_path):
    """A trial left ``RUNNING`` counts for nothing; with no heartbeat it may be another
    worker's, so it stays; with one (``tune_storage``), once stale it is ``FAIL`` and
    its values are the next trial asked, marked as its retry."""
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    study = optuna.create_study(
        storage=url, study_name="t", sampler=optuna.samplers.RandomSampler(seed=1)
    )
    task = _task()
    jax_rmsprop.tune(task, SPACE, 2, study=study, trials=4, batch=2)
    stale = study.ask(SPACE)  # what a killed tuning leaves: a trial RUNNING
    res = jax_rmsprop.tune(task, SPACE, 2, study=study, trials=5, batch=4)
    assert study.trials[stale.number].state.name == "RUNNING"  # no heartbeat: stays
    assert list(res.trial) == [5] and study.trials[5].params != stale.params
    # (a grace of 6 heartbeats: a loaded machine can hold a live worker's beat for seconds)
    storage = jax_rmsprop.tune_storage(url, heartbeat=1, grace=6)
    storage.record_heartbeat(stale._trial_id)  # its last beat, then its worker killed
    time.sleep(7.5)  # its grace period over (SQLite counts whole seconds)
    # (load_study's defaults are an unseeded TPE and a MedianPruner, which prunes a bad
    # new trial at random: the count of COMPLETE below would be a coin flip)
    again = optuna.load_study(
        study_name="t", storage=storage, sampler=optuna.samplers.RandomSampler(seed=2),
        pruner=optuna.pruners.NopPruner(),
    )  # fmt: skip
    res = jax_rmsprop.tune(task, SPACE, 2, study=again, trials=7, batch=4)
    states = [t.state for t in again.trials]
    assert states.count(COMPLETE) == 7 and again.trials[stale.number].state.name == "FAIL"
    assert list(res.trial) == [6, 7] and again.trials[6].params == stale.params
    assert again.trials[6].system_attrs["retry_history"] == [stale.number]
    assert len({tuple(t.params.items()) for t in again.trials if t.state == COMPLETE}) == 7


def test_what_the_sampler_path_refuses():
    task = _task()
    sampler = optuna.samplers.RandomSampler()
    with pytest.raises(ValueError, match=r"`tune\(trials=...\)` must be a positive int"):
        jax_rmsprop.tune(task, SPACE, 2, sampler=sampler)
    with pytest.raises(ValueError, match=r"`tune\(batch=...\)` must be a positive int"):
        jax_rmsprop.tune(task, SPACE, 2, sampler=sampler, trials=4, batch=0)
    study = optuna.create_study(direction="maximize")
    with pytest.raises(ValueError, match=r"the monitored value should be minimized"):
        jax_rmsprop.tune(task, SPACE, 2, study=study, trials=4)
    with pytest.raises(TypeError, match=r"give them to the study"):
        jax_rmsprop.tune(task, SPACE, 2, study=study, sampler=sampler, trials=4)
    with pytest.raises(ValueError, match=r"`tune\(monitor='val_acc'\)` is not recorded"):
        jax_rmsprop.tune(task, SPACE, 2, sampler=sampler, trials=1, monitor="val_acc")
    with pytest.raises(ValueError, match=r"must be an Optuna distribution"):
        jax_rmsprop.tune(task, {"learning_rate": [0.1, 0.2]}, 2, sampler=sampler, trials=2)


def test_a_batch_too_large_for_memory_is_refused_naming_batch(monkeypatch):
    """A batch is one program: past the free memory (XLA's accounting, as grids are
    chunked by), `tune` refuses it before training, with the largest batch that fits;
    far from the limit nothing is compiled to know."""
    from jax_rmsprop import _plan

    task = _task()
    sampler = optuna.samplers.RandomSampler(seed=0)
    plan = _plan.make_plan(task, [np.asarray([0.01]), np.asarray([0.9])], tuple(SPACE), 2, 0,
                           None, jax_rmsprop.rmsprop, {}, None, None, None)  # fmt: skip
    total = plan._bytes(plan.padded(16), None, 0, 2)[0]  # 8 trials x 2 seeds
    monkeypatch.setattr(_plan, "_memory_budget", lambda mesh: total // 2)
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match=r"`tune\(batch=8\)`: a batch trains as one program") as e:
        jax_rmsprop.tune(task, SPACE, 2, study=study, trials=8, batch=8, seeds=2)
    fits = int(str(e.value).split("use batch <= ")[1].rstrip("."))
    assert 1 <= fits < 8 and not study.trials  # refused before any trial was asked
    res = jax_rmsprop.tune(task, SPACE, 2, study=study, trials=8, batch=fits, seeds=2)
    assert len(res.study.trials) == 8
    compiled = []
    monkeypatch.setattr(_plan._Plan, "_bytes", lambda *a: compiled.append(a) or (0, 0))
    monkeypatch.setattr(_plan, "_memory_budget", lambda mesh: 1 << 40)
    jax_rmsprop.tune(task, SPACE, 2, sampler=sampler, trials=8, batch=8, seeds=2)
    assert not compiled


KILLED = """
import sys, jax, optuna
jax.config.update("jax_enable_x64", True)
import jax_rmsprop
from tests.training.test_tune import _task
from tests.training.test_search import SPACE
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = jax_rmsprop.tune_storage(sys.argv[1], heartbeat=1, grace=6)
study = optuna.create_study(storage=storage, study_name="k", load_if_exists=True,
                            sampler=optuna.samplers.RandomSampler(),
                            pruner=optuna.pruners.NopPruner())
res = jax_rmsprop.tune(_task(), SPACE, int(sys.argv[2]), study=study, trials=8, batch=2)
print("TRAINED", len(res.trial), flush=True)
"""


@pytest.mark.slow
def test_a_study_survives_sigkill_mid_batch_and_the_rerun_finishes_without_duplicates(tmp_path):
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    cmd = [sys.executable, "-c", KILLED, storage]
    # 100k epochs of 7 steps: a batch trains for seconds after its compile
    proc = subprocess.Popen([*cmd, "100000"], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # kill once a batch is
        time.sleep(0.2)  # told and the next is running
        try:
            trials = optuna.load_study(study_name="k", storage=storage).trials
        except (KeyError, Exception):  # not created yet
            continue
        # a later batch asked (trial 2 on) and training: seconds in flight, so the kill
        # lands mid-batch (not between the tells of one batch's trials). Both its trials
        # asked, then 1 s more: a kill between a trial's ask and its first heartbeat
        # would leave it RUNNING for good (a trial that never beat is never stale)
        if sum(t.state.name == "RUNNING" and t.number >= 2 for t in trials) == 2:
            time.sleep(1.0)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    before = optuna.load_study(study_name="k", storage=storage).trials
    finished = sum(t.state.name == "COMPLETE" for t in before)
    assert 2 <= finished < 8 and any(t.state.name == "RUNNING" for t in before)
    time.sleep(7.5)  # the killed batch's grace period: stale, retried
    out = subprocess.run([*cmd, "100000"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"TRAINED {8 - finished}" in out.stdout
    after = optuna.load_study(study_name="k", storage=storage).trials
    states = [t.state.name for t in after]
    assert states.count("COMPLETE") == 8 and "RUNNING" not in states
    killed = [t for t in after if t.state.name == "FAIL"]
    retries = [t for t in after if "retry_history" in t.system_attrs]
    assert killed and [t.params for t in killed] == [t.params for t in retries]
    numbers = [t.number for t in after]
    assert len(set(numbers)) == len(numbers)
    params = [tuple(t.params.values()) for t in after if t.state.name == "COMPLETE"]
    assert len(set(params)) == 8


@pytest.mark.parametrize("pruner", [None, "median"])
def test_a_checkpoint_continues_the_group_in_flight_from_its_saved_epoch(
    pruner, tmp_path, monkeypatch
):
    """Ctrl-C in the second batch, after 2 of its 4 epochs: the batch's trials are failed,
    the checkpoint keeps their carries; the rerun asks the same values again (new
    trials) and trains only epochs 2-3 of them, and each is told what ``fit`` gives."""
    from jax_rmsprop import _plan

    task = _task()
    make = lambda: optuna.create_study(  # noqa: E731
        sampler=optuna.samplers.RandomSampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=100)
        if pruner
        else optuna.pruners.NopPruner(),  # (None: Optuna's default, a MedianPruner)
    )
    study = make()
    calls = []
    advance = _plan._Plan.advance

    def counted(self, idx, carry, first, epochs, reset=None):
        calls.append(int(np.max(first)))
        if len(calls) == 6:  # the second batch's second epoch: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return advance(self, idx, carry, first, epochs, reset)

    monkeypatch.setattr(_plan._Plan, "advance", counted)
    kw = dict(trials=6, batch=3, checkpoint=tmp_path)
    with pytest.raises(jax_rmsprop.SweepInterrupted) as info:
        jax_rmsprop.tune(task, SPACE, 4, study=study, **kw)
    assert calls == [0, 1, 2, 3, 0, 1]  # one epoch per call (4 epochs: up to 16 calls)
    assert info.value.checkpoint == tmp_path / "study.npz"
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["FAIL"] * 3
    calls.clear()
    res = jax_rmsprop.tune(task, SPACE, 4, study=study, **kw)
    assert calls == [2, 3]  # on from the saved epoch
    assert list(res.trial) == [6, 7, 8]
    for failed, new in zip(study.trials[3:6], study.trials[6:]):
        assert new.params == failed.params and new.state.name == "COMPLETE"
        hist = _fit_cell(task, _tx(new.params), 0, 0, 4)
        np.testing.assert_allclose(new.value, hist.val_loss[-1], rtol=1e-10)
        if pruner:  # every epoch reported, the saved ones again
            assert sorted(new.intermediate_values) == [1, 2, 3, 4]
    # a finished tuning's checkpoint is stale (its trials were told): nothing is resumed
    calls.clear()
    more = jax_rmsprop.tune(task, SPACE, 4, study=study, trials=7, batch=3, checkpoint=tmp_path)
    assert list(more.trial) == [9] and calls == [0, 1, 2, 3]


def test_the_trials_as_a_data_frame_one_row_per_run_or_per_epoch():
    pytest.importorskip("pandas")
    task = _task()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    space = {"learning_rate": FloatDistribution(1e-4, 3.0, log=True)}
    res = jax_rmsprop.tune(
        task, space, 4, sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner,
        trials=8, batch=4, seeds=2,
    )  # fmt: skip
    df = res.frame()
    assert len(df) == 8 * 2 and list(df.columns[:3]) == ["learning_rate", "trial", "seed"]
    for _, row in df.iterrows():
        i = list(res.trial).index(row["trial"])
        s, ran = int(row["seed"]), int(row["epochs_run"])
        assert row["pruned"] == res.pruned[i] and ran == res.epochs_run[i, s]
        assert row["val_loss"] == res.val_loss[i, s, ran - 1]
        assert row["learning_rate"] == res.study.trials[row["trial"]].params["learning_rate"]
    long = res.frame(per_epoch=True)
    assert len(long) == res.epochs_run.sum()  # pruned trials' untrained epochs left out
    one = long[(long["trial"] == res.trial[0]) & (long["seed"] == 1)]
    np.testing.assert_array_equal(one["loss"], res.loss[0, 1, : len(one)])
    # a pruned trial ranks after every finished one
    if res.pruned.any():
        assert np.isinf(res.score()[res.pruned]).all()


def test_a_freed_slot_takes_the_next_trial_at_once_and_trains_it_like_fit(monkeypatch):
    """With a pruner, a pruned (or finished) trial's slot takes the next trial from its
    epoch 0 inside the same program: fewer epoch steps than batch after batch, and a
    trial that started in a freed slot still equals fit alone."""
    from jax_rmsprop import _plan

    calls = []
    advance = _plan._Plan.advance
    monkeypatch.setattr(
        _plan._Plan, "advance", lambda self, *a, **k: calls.append(1) or advance(self, *a, **k)
    )
    task = _task()
    space = {"learning_rate": FloatDistribution(1e-4, 3.0, log=True)}
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    seen = []
    res = jax_rmsprop.tune(
        task, space, 5, sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner,
        trials=12, batch=4, progress=lambda d, t: seen.append((d, t)),
    )  # fmt: skip
    # after each epoch step: the told trials' epochs (a pruned one's all 5) and the others'
    done = [d for d, _ in seen]
    assert {t for _, t in seen} == {60} and done == sorted(done) and done[-1] == 60
    assert len(seen) == len(calls)
    states = [t.state for t in res.study.trials]
    assert states.count(COMPLETE) + states.count(PRUNED) == 12 and res.pruned.sum() >= 3
    assert len(calls) < 3 * 5  # batch after batch: 3 batches of 4 trials x 5 epochs
    late = [i for i, number in enumerate(res.trial) if number >= 4]  # asked into a freed slot
    assert late
    for i in late:
        t, ran = res.study.trials[res.trial[i]], int(res.epochs_run[i, 0])
        hist = _fit_cell(task, _tx(t.params), 0, 0, ran)
        np.testing.assert_allclose(res.val_loss[i, 0, :ran], hist.val_loss, rtol=1e-10)


@pytest.mark.slow
def test_folds_with_a_sampler_equal_the_grid_with_folds():
    """Cross-validation under a sampler: each trial is trained on every fold as the grid
    path trains it, and told the mean over folds of the final validation loss."""
    task = _task(validation=False)
    space = {"learning_rate": FloatDistribution(1e-3, 3e-1, log=True)}
    sampler = optuna.samplers.RandomSampler(seed=3)
    res = jax_rmsprop.tune(task, space, 2, sampler=sampler, trials=3, batch=3, folds=2)
    lrs = np.array([res.study.trials[n].params["learning_rate"] for n in res.trial])
    grid = jax_rmsprop.tune(task, {"learning_rate": lrs}, 2, folds=2)
    assert res.val_loss.shape == grid.val_loss.shape == (3, 2, 2)  # (trials, folds, epochs)
    np.testing.assert_allclose(res.val_loss, grid.val_loss, rtol=1e-10)
    for i, number in enumerate(res.trial):
        told = res.study.trials[number].value
        np.testing.assert_allclose(told, grid.val_loss[i, :, -1].mean(), rtol=1e-10)
