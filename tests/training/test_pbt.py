"""Population-based training: exploit copies state exactly, explore stays in bounds,
and every member's recorded run is what fit reproduces from its lineage."""

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import FloatDistribution  # noqa: E402

import jax_rmsprop  # noqa: E402
from jax_rmsprop import _pbt  # noqa: E402

from ..training.test_tune import _task  # noqa: E402

SPACE = {
    "learning_rate": FloatDistribution(1e-3, 0.3, log=True),
    "decay": FloatDistribution(0.5, 0.99),
}


def test_every_member_replays_with_fit_from_its_lineage():
    task = _task()
    res = jax_rmsprop.pbt(task, SPACE, 6, population=8, interval=2, quantile=0.25, seed=0)
    assert res.loss.shape == (8, 6) and res.parent.shape == (3, 8)
    copied = [m for m in range(8) if len({s for *_, s in res.lineage(m)}) > 1]
    assert copied  # some member continued another's run
    for m in [res.best, *copied]:
        lineage = res.lineage(m)
        assert [(a, b) for a, b, *_ in lineage] == [(0, 2), (2, 4), (4, 6)]
        assert lineage[-1][3] == m
        hist = res.replay(task, m)
        np.testing.assert_allclose(hist.val_loss, res.val_loss[m, 4:], rtol=1e-10)
        np.testing.assert_allclose(hist.loss, res.loss[m, 4:], rtol=1e-10)
    assert res.best == int(np.argmin(res.val_loss[:, -1]))
    # explored values stay inside the distributions
    for name, d in SPACE.items():
        assert ((d.low <= res.schedule[name]) & (res.schedule[name] <= d.high)).all()


def test_the_worst_quantile_copies_the_best_members_state_bit_for_bit(monkeypatch):
    """With exploration switched off (copies keep the source's hyperparameters), a copied
    member and its source hold the same state and train identically from then on."""
    monkeypatch.setattr(_pbt, "_explore", lambda values, src, *a: values[:, src])
    task = _task()
    res = jax_rmsprop.pbt(task, SPACE, 4, population=8, interval=2, quantile=0.25, seed=1)
    src = res.parent[1]
    moved = np.flatnonzero(src != np.arange(8))
    assert moved.size == 2  # a quarter of 8
    worst = np.argsort(res.val_loss[:, 1])[-2:]
    best = np.argsort(res.val_loss[:, 1])[:2]
    assert set(moved) == set(worst) and set(src[moved]) <= set(best)
    for m in moved:
        np.testing.assert_array_equal(res.val_loss[m, 2:], res.val_loss[src[m], 2:])
        np.testing.assert_array_equal(res.loss[m, 2:], res.loss[src[m], 2:])
        for name in SPACE:
            assert res.schedule[name][1, m] == res.schedule[name][0, src[m]]


def test_pbt_refuses_what_it_cannot_explore():
    task = _task()
    with pytest.raises(ValueError, match=r"`pbt\(population=...\)` needs at least 2"):
        jax_rmsprop.pbt(task, SPACE, 2, population=1)
    with pytest.raises(ValueError, match=r"`pbt\(quantile=...\)` must be in \(0, 0.5\]"):
        jax_rmsprop.pbt(task, SPACE, 2, quantile=0.9)
    centered = SPACE | {"centered": optuna.distributions.CategoricalDistribution([False, True])}
    with pytest.raises(ValueError, match=r"explores by perturbing numbers"):
        jax_rmsprop.pbt(task, centered, 2)
    with pytest.raises(ValueError, match=r"must be an Optuna distribution"):
        jax_rmsprop.pbt(task, {"learning_rate": [0.1, 0.2]}, 2)


def test_a_population_too_large_for_memory_is_refused_naming_population(monkeypatch):
    """The population is one program: past the free memory (XLA's accounting) pbt
    refuses it before training, with the largest population that fits, which trains."""
    from jax_rmsprop import _plan

    task = _task()
    monkeypatch.setattr(_plan, "_memory_budget", lambda mesh: 1 << 40)
    plan = _plan.make_plan(task, [np.full(16, 0.01), np.full(16, 0.9)], tuple(SPACE), 1, 0,
                           None, jax_rmsprop.rmsprop, {}, None, None, None)  # fmt: skip
    total = plan._bytes(16, None, 0, 1)[0]
    monkeypatch.setattr(_plan, "_memory_budget", lambda mesh: total // 2)
    with pytest.raises(ValueError, match=r"`pbt\(population=16\)`: the population trains") as e:
        jax_rmsprop.pbt(task, SPACE, 2, population=16)
    fits = int(str(e.value).split("use population <= ")[1].rstrip("."))
    assert 2 <= fits < 16
    assert jax_rmsprop.pbt(task, SPACE, 2, population=fits).score.shape == (fits,)
