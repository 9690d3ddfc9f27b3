"""tune(ask_ahead=True): the next batch asked while this one trains, in a fixed order.

The order of the study's calls decides TPE's proposals. Both orders are checked against
a study driven by hand with the values the tuning told: serially, batch k+1 is asked
after batch k is told; ahead, after batch k is asked and batch k-1 told.
"""

import threading
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

import jax_rmsprop  # noqa: E402
from jax_rmsprop import _ask_ahead, _plan, _search  # noqa: E402
from jax_rmsprop._ask_ahead import AskAhead  # noqa: E402

from ..training.test_search import SPACE, _task  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
TRIALS, BATCH = 10, 4  # batches of 4, 4, 2


def _sampler():
    return optuna.samplers.TPESampler(seed=3, n_startup_trials=2, constant_liar=True)


def _replayed(study, ahead: bool) -> list[dict]:
    """The params a fresh study proposes in the given order, told ``study``'s values."""
    values = [t.value for t in study.trials]
    replay = optuna.create_study(sampler=_sampler())
    sizes = [BATCH, BATCH, TRIALS - 2 * BATCH]
    batches: list[list] = []
    for k, size in enumerate(sizes):
        if not ahead or k == 0:
            batches.append([replay.ask(dict(SPACE)) for _ in range(size)])
        if ahead and k + 1 < len(sizes):
            batches.append([replay.ask(dict(SPACE)) for _ in range(sizes[k + 1])])
        for t in batches[k]:
            replay.tell(t, values[t.number])
    return [t.params for t in replay.trials]


@pytest.mark.parametrize("ahead", [False, True])
def test_the_trials_follow_the_documented_order_of_asks_and_tells(ahead):
    res = jax_rmsprop.tune(
        _task(), SPACE, 2, sampler=_sampler(), trials=TRIALS, batch=BATCH, ask_ahead=ahead
    )
    study = res.study
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS
    assert [t.params for t in study.trials] == _replayed(study, ahead)
    # the other order proposes other trials after the first batch (the test can fail)
    assert [t.params for t in study.trials] != _replayed(study, not ahead)
    order = np.argsort(res.trial)
    assert np.allclose(
        [res.configs["decay"][i] for i in order], [t.params["decay"] for t in study.trials]
    )


def test_the_next_batch_is_asked_while_this_one_trains(monkeypatch):
    """The asks of batch 2 run in another thread, begun before batch 1 is told; batch 1
    is told once batch 2 is on the device (its training begun)."""
    events = []
    real_ask, real_tell = optuna.Study.ask, optuna.Study.tell
    real_advance = _plan._Plan.advance

    def ask(self, *a, **k):
        events.append(("ask", threading.current_thread().name))
        return real_ask(self, *a, **k)

    def tell(self, *a, **k):
        events.append(("tell", threading.current_thread().name))
        return real_tell(self, *a, **k)

    def advance(self, *a, **k):
        events.append(("train", threading.current_thread().name))
        return real_advance(self, *a, **k)

    monkeypatch.setattr(optuna.Study, "ask", ask)
    monkeypatch.setattr(optuna.Study, "tell", tell)
    monkeypatch.setattr(_plan._Plan, "advance", advance)
    jax_rmsprop.tune(_task(), SPACE, 1, sampler=_sampler(), trials=8, batch=4, ask_ahead=True)
    main = threading.main_thread().name
    assert [e for e, t in events if t == main] == ["ask"] * 4 + ["train"] * 2 + ["tell"] * 8
    assert [e for e, t in events if t != main] == ["ask"] * 4
    assert {t for _, t in events} == {main, "tune-ask-ahead"}


def test_an_error_in_the_asking_thread_is_raised_in_the_caller():
    class Broken:
        def ask(self, space):
            raise RuntimeError("storage gone")

    asker = _ask_ahead.asking(Broken(), SPACE, True)
    asker._asked = ["t0"]  # (one batch asked ahead: the next is asked in the thread)
    assert asker.batch(4, 8) == ["t0"]
    asker.begin()
    with pytest.raises(RuntimeError, match="storage gone"):
        asker.settle()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"pruner": "median"}, "takes no pruner"),
        ({"checkpoint": "tmp"}, "no `checkpoint`"),
        ({"ask_ahead": 1}, r"`tune\(ask_ahead=...\)` must be True or False"),
    ],
)
def test_what_ask_ahead_refuses(kw, match, tmp_path):
    kw = dict(kw)
    if kw.get("pruner") == "median":
        kw["pruner"] = optuna.pruners.MedianPruner()
    if kw.get("checkpoint") == "tmp":
        kw["checkpoint"] = tmp_path
    kw.setdefault("ask_ahead", True)
    with pytest.raises(ValueError, match=match):
        jax_rmsprop.tune(_task(), SPACE, 1, sampler=_sampler(), trials=2, batch=2, **kw)
    with pytest.raises(TypeError, match="pass `sampler=`"):
        jax_rmsprop.tune(_task(), {"learning_rate": [0.1]}, 1, ask_ahead=True)


def test_a_stop_mid_batch_tells_the_trials_trained_and_fails_the_rest(monkeypatch):
    """Ctrl-C while batch 2 trains: batch 1 (trained, its tells waiting for batch 2 to be
    on the device) is told; batch 2 fails (retried); batch 3 was never asked."""
    real_advance = _plan._Plan.advance
    calls = []

    def advance(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_advance(self, *a, **k)

    monkeypatch.setattr(_plan._Plan, "advance", advance)
    with pytest.raises(jax_rmsprop.SweepInterrupted) as stop:
        jax_rmsprop.tune(_task(), SPACE, 1, sampler=_sampler(), trials=12, batch=4, ask_ahead=True)
    study = stop.value.partial.study
    State = optuna.trial.TrialState
    states = [t.state for t in study.trials]  # (then batch 2 queued again: its retries)
    assert states[:8] == [State.COMPLETE] * 4 + [State.FAIL] * 4
    assert State.RUNNING not in states and len(states) <= 12
    assert sorted(stop.value.partial.trial) == [0, 1, 2, 3]
    assert np.isfinite(stop.value.partial.loss).all()


def test_an_error_mid_batch_still_tells_the_batch_trained(monkeypatch):
    """An error (not Ctrl-C) while batch 2 trains: batch 1, trained, is told first."""
    real_advance = _plan._Plan.advance

    def advance(self, *a, **k):
        advance.calls += 1
        if advance.calls == 2:
            raise RuntimeError("the device is gone")
        return real_advance(self, *a, **k)

    advance.calls = 0
    monkeypatch.setattr(_plan._Plan, "advance", advance)
    study = optuna.create_study(sampler=_sampler(), pruner=optuna.pruners.NopPruner())
    with pytest.raises(RuntimeError, match="the device is gone"):
        jax_rmsprop.tune(_task(), SPACE, 1, study=study, trials=12, batch=4, ask_ahead=True)
    states = [t.state for t in study.trials]
    assert states[:4] == [optuna.trial.TrialState.COMPLETE] * 4


@pytest.mark.parametrize("groups", [1, 2])
def test_the_study_is_the_callers_alone_while_the_thread_asks(monkeypatch, groups):
    """No tell and no count of the study's trials runs beside the asking thread (which
    is made slower than a batch's training here, so an overlap would show); also where a
    batch trains as two programs (``centered`` changes the program: a group each)."""
    space = dict(SPACE)
    if groups == 2:
        space["centered"] = optuna.distributions.CategoricalDistribution([False, True])
    asking = threading.Event()
    seen = []
    real_run, real_left, real_tell = AskAhead._ask_in_thread, _search._left, optuna.Study.tell

    def run(self, n):
        asking.set()
        try:
            time.sleep(0.3)
            real_run(self, n)
        finally:
            asking.clear()

    def left(*a, **k):
        seen.append(("count", asking.is_set()))
        return real_left(*a, **k)

    def tell(self, *a, **k):
        seen.append(("tell", asking.is_set()))
        return real_tell(self, *a, **k)

    monkeypatch.setattr(AskAhead, "_ask_in_thread", run)
    monkeypatch.setattr(_search, "_left", left)
    monkeypatch.setattr(optuna.Study, "tell", tell)
    res = jax_rmsprop.tune(
        _task(), space, 1, sampler=_sampler(), trials=12, batch=4, ask_ahead=True
    )
    assert [kind for kind, _ in seen].count("tell") == 12
    assert not any(overlap for _, overlap in seen), seen
    states = [t.state for t in res.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 12
    if groups == 2:  # (both programs trained)
        assert {t.params["centered"] for t in res.study.trials} == {False, True}
