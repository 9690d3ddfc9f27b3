import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _sweep, problems, report

GRID = {"learning_rate": np.array([1e-3, 1e-2, 1e-1, 30.0]), "decay": np.array([0.5, 0.9, 0.99])}


@pytest.mark.parametrize("steps,max_lr", [(20, 30.0), (200, 1e-2)])
def test_sweep_equals_individual_runs(steps, max_lr):
    # Large steps oscillate chaotically around the minimum after a few dozen steps, where
    # 1-ulp differences between the vmapped and the single program grow: compare those early.
    p = problems.coupled()
    res = jax_rmsprop.sweep(p, GRID, steps, options={"eps": 1e-6})
    assert res.final_loss.shape == (4, 3)
    for i, lr in enumerate(GRID["learning_rate"]):
        for j, d in enumerate(GRID["decay"]):
            assert res.configs["learning_rate"][i, j] == lr and res.configs["decay"][i, j] == d
            if lr > max_lr:
                continue
            tx = jax_rmsprop.rmsprop(float(lr), float(d), 1e-6)
            traj = jax_rmsprop.run(p, tx, steps, path=False)
            np.testing.assert_allclose(res.final_loss[i, j], traj.losses[-1], rtol=1e-12)
    assert (res.steps_to_tol == -1).all()


def test_sweep_with_tolerance_and_divergence():
    p = problems.sphere()
    res = jax_rmsprop.sweep(p, GRID, 300, tol=1e-6)
    for i, lr in enumerate(GRID["learning_rate"]):
        for j, d in enumerate(GRID["decay"]):
            traj = jax_rmsprop.run(p, jax_rmsprop.rmsprop(float(lr), float(d)), 300, tol=1e-6)
            expected = int(traj.steps) if bool(traj.converged) else -1
            assert res.steps_to_tol[i, j] == expected
            assert res.diverged[i, j] == (
                not np.isfinite(traj.losses[-1]) or traj.losses[-1] > 41.0
            )
    assert res.diverged[3, 0]  # lr 30, decay 0.5 on x^2 + y^2 from (5, 4) ends above the start
    assert not res.diverged[:2].any()
    best = res.best(2)
    assert best[0]["steps_to_tol"] >= 0 and not best[0]["diverged"]
    assert best[0]["steps_to_tol"] <= best[1]["steps_to_tol"]


def test_table_and_csv():
    res = jax_rmsprop.sweep(problems.sphere(), GRID, 50)
    table = report.table(res, 3).splitlines()
    assert table[0].split() == ["learning_rate", "decay", "final_loss", "steps_to_tol", "diverged"]
    assert len(table) == 5
    best = res.best(1)[0]
    assert best["final_loss"] == pytest.approx(
        np.min(np.where(res.diverged, np.inf, res.final_loss))
    )
    csv = report.to_csv(res).splitlines()
    assert len(csv) == 13 and csv[0].startswith("learning_rate,decay,final_loss")


def test_other_optimizers_and_static_options():
    res = jax_rmsprop.sweep(
        problems.elongated(),
        {"learning_rate": np.array([0.01, 0.05])},
        100,
        optimizer=optax.sgd,
        options={"momentum": 0.9},
    )
    traj = jax_rmsprop.run(problems.elongated(), optax.sgd(0.05, momentum=0.9), 100, path=False)
    np.testing.assert_allclose(res.final_loss[1], traj.losses[-1], rtol=1e-12)


def test_repeated_sweeps_do_not_recompile():
    p = problems.sphere()
    jax_rmsprop.sweep(p, GRID, 40, chunk_steps=20)
    before = (_sweep._start_all._cache_size(), _sweep._advance_all._cache_size())
    grid2 = {k: v * 0.5 for k, v in GRID.items()}  # new values, same shapes
    jax_rmsprop.sweep(problems.sphere(), grid2, 40, chunk_steps=20)
    assert (_sweep._start_all._cache_size(), _sweep._advance_all._cache_size()) == before


def test_progress_chunks_give_the_same_numbers():
    p = problems.coupled()
    whole = jax_rmsprop.sweep(p, GRID, 60)
    calls = []
    chunked = jax_rmsprop.sweep(
        p, GRID, 60, chunk_steps=7, progress=lambda done, total: calls.append((done, total))
    )
    np.testing.assert_array_equal(whole.final_loss, chunked.final_loss)
    # once compiled (0 steps run), then after each chunk
    assert calls == [(0, 60), *[(min(k, 60), 60) for k in range(7, 67, 7)]]


def test_sweep_errors():
    with pytest.raises(ValueError, match=r"must be a non-empty 1-D array"):
        jax_rmsprop.sweep(problems.sphere(), {"decay": np.ones((2, 2))}, 10)
    with pytest.raises(ValueError, match=r"`sweep\(grid=...\)` needs"):
        jax_rmsprop.sweep(problems.sphere(), {}, 10)
