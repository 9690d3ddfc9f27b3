"""Group tune-ask-ahead: the sampler's asks overlapped with the device's training.

``tune(sampler=TPE, ask_ahead=True)`` asks the next batch in a thread while this one
trains, and tells a batch while the next one trains. Side by side in round-robin, on
the digits task (4 RMSProp hyperparameters, 96 trials in batches of 16), at 1, 2 and 3
epochs a trial (the device's share grows with the epochs; on this CPU the sampler's and
the device's times are nearest at 1 epoch and 2):

- ``serial``: the default order; its wall is the sampler's time plus the device's;
- ``ahead``: ``ask_ahead=True``.

``sampler ms`` is the time inside TPE's sampling methods (a ``TPESampler`` subclass
times them, in whichever thread runs them); ``device ms`` is the serial wall minus its
sampler time (the training and the rest of ``tune``'s own host work). The goal: the
overlapped wall at most 1.15x the larger of the two. Its floor is the larger plus what
cannot overlap: the host work before the first batch trains (the plan: ~25 ms here),
the last batch's training, and on 2 cores the sampler's thread and ``tune``'s own
Python taking turns at the interpreter's lock.
"""

import statistics
import time
import warnings

import numpy as np
import pytest

import jax_rmsprop

from .helpers import big_enabled

optuna = pytest.importorskip("optuna")
pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

from .test_tune_optuna import SPACE  # noqa: E402

TRIALS, BATCH = 96, 16


class _TimedTPE(optuna.samplers.TPESampler):
    """Optuna's TPE, summing the seconds spent in its sampling methods."""

    seconds = 0.0

    def _timed(self, name, *args, **kwargs):
        t = time.perf_counter()
        try:
            return getattr(super(), name)(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t

    def infer_relative_search_space(self, *a, **k):
        return self._timed("infer_relative_search_space", *a, **k)

    def sample_relative(self, *a, **k):
        return self._timed("sample_relative", *a, **k)

    def sample_independent(self, *a, **k):
        return self._timed("sample_independent", *a, **k)

    def before_trial(self, *a, **k):
        return self._timed("before_trial", *a, **k)

    def after_trial(self, *a, **k):
        return self._timed("after_trial", *a, **k)


def _tuning(task, ahead: bool, epochs: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = _TimedTPE(seed=0, constant_liar=True, multivariate=True)
    t = time.perf_counter()
    res = jax_rmsprop.tune(
        task, SPACE, epochs, sampler=sampler, trials=TRIALS, batch=BATCH, ask_ahead=ahead
    )
    wall = time.perf_counter() - t
    return wall * 1e3, sampler.seconds * 1e3, [t.params for t in res.study.trials]


@pytest.mark.benchmark(group="tune-ask-ahead")
@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_ask_ahead_overlaps_the_sampler_and_the_device(benchmark, device, request, epochs):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rounds = 10 if big_enabled(request.config) else 4
    task = jax_rmsprop.problems.digits()
    _tuning(task, False, epochs)  # (the programs compiled outside the timer)
    runs: dict[str, list] = {"serial": [], "ahead": []}

    def one_round():
        order = list(runs)[:: -1 if len(runs["serial"]) % 2 else 1]
        for name in order:
            runs[name].append(_tuning(task, name == "ahead", epochs))

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    # the same seeds gave the same trials in every round (the overlap's timing does not count)
    for name, got in runs.items():
        assert all(r[2] == got[0][2] for r in got), name
    assert runs["serial"][0][2] != runs["ahead"][0][2]  # (the documented other order)
    serial = np.asarray([r[:2] for r in runs["serial"]])
    ahead = np.asarray([r[:2] for r in runs["ahead"]])
    device_ms = serial[:, 0] - serial[:, 1]
    bound = np.maximum(serial[:, 1], device_ms)  # each round's max(sampler, device)
    med = statistics.median
    benchmark.extra_info.update(
        {
            "rounds": rounds,
            "trials": TRIALS,
            "batch": BATCH,
            "epochs": epochs,
            "serial wall ms": round(med(serial[:, 0]), 1),
            "ahead wall ms": round(med(ahead[:, 0]), 1),
            "sampler ms": round(med(serial[:, 1]), 1),
            "sampler ms (ahead)": round(med(ahead[:, 1]), 1),
            "device ms": round(med(device_ms), 1),
            "ahead/max(sampler, device)": round(med(ahead[:, 0] / bound), 3),
            "serial/ahead": round(med(serial[:, 0] / ahead[:, 0]), 3),
        },
        device=device,
    )
