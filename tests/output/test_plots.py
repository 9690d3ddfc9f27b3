"""The sweep heatmap, read back from the drawn artists: cell edges, ticks, labels, marks."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import jax_rmsprop  # noqa: E402
from jax_rmsprop import (
    TuneResult,  # noqa: E402
    plots,  # noqa: E402
)


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Draws a heatmap and returns its figure (kept open) instead of only the file."""
    figures = []

    def keep(fig, out):
        figures.append(fig)
        return out

    monkeypatch.setattr(plots, "_save", keep)

    def draw(result, **kw):
        plots.sweep_heatmap(result, tmp_path / "h.png", title="t", **kw)
        return figures[-1]

    yield draw
    import matplotlib.pyplot as plt

    for fig in figures:
        plt.close(fig)


def _result(lr, decay, final, epochs_run=None, seeds=1, accuracy=None):
    shape = (lr.size, decay.size)
    loss = np.broadcast_to(final[..., None, None], (*shape, seeds, 2)).copy()
    ran = np.full((*shape, seeds), 2) if epochs_run is None else epochs_run
    metrics = (
        {}
        if accuracy is None
        else {"val_accuracy": np.broadcast_to(accuracy[..., None, None], (*shape, seeds, 2)).copy()}
    )
    configs = dict(zip(["learning_rate", "decay"], np.meshgrid(lr, decay, indexing="ij")))
    return TuneResult(configs, loss, loss.copy(), ran, metrics)


def _mesh(fig):
    from matplotlib.collections import QuadMesh

    return next(c for c in fig.axes[0].collections if isinstance(c, QuadMesh))


def test_cells_are_centred_on_log_spaced_values_with_geometric_edges(drawn):
    lr = np.array([1e-4, 1e-3, 1e-2, 1e-1])
    decay = np.array([0.5, 0.9, 0.99])
    fig = drawn(_result(lr, decay, np.arange(12.0).reshape(4, 3) + 1))
    ax = fig.axes[0]
    coords = _mesh(fig).get_coordinates()  # (rows + 1, cols + 1, 2): x, y of the corners
    y_edges = coords[:, 0, 1]
    np.testing.assert_allclose(y_edges, [10**-4.5, 10**-3.5, 10**-2.5, 10**-1.5, 10**-0.5])
    # every log-spaced row is equally tall on its log axis: the 1e-4 row included
    np.testing.assert_allclose(np.diff(np.log10(y_edges)), 1.0)
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    np.testing.assert_allclose(ax.get_yticks(), lr)
    np.testing.assert_allclose(ax.get_xticks(), decay)
    x_edges = coords[0, :, 0]
    np.testing.assert_allclose(x_edges, [0.3, 0.7, 0.945, 1.035])  # arithmetic midpoints
    assert _mesh(fig).colorbar.ax.get_ylabel() == "final validation loss (log)"
    # each cell's value is the one at its centre
    np.testing.assert_allclose(
        _mesh(fig).get_array().reshape(4, 3), np.arange(12.0).reshape(4, 3) + 1
    )


def test_halving_leftovers_are_not_marked_as_diverged(drawn):
    lr, decay = np.array([1e-3, 1e-2]), np.array([0.9, 0.99])
    final = np.array([[0.5, np.nan], [np.nan, 0.4]])
    ran = np.array([[2, 1], [2, 2]])[..., None]  # (0, 1) was not continued; (1, 0) diverged
    fig = drawn(_result(lr, decay, final, ran))
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["halted early by successive halving (after 1 of 2 epochs)", "diverged"]
    marks = {c.get_label(): c.get_offsets().data.tolist() for c in ax.collections[1:]}
    assert marks == {"diverged": [[0.9, 1e-2]]}
    # the halted cell is hatched over its whole extent: decay 0.99's column, lr 1e-3's row
    (cell,) = [p for p in ax.patches if p.get_hatch()]
    edges_x, edges_y = plots.cell_edges(decay, False), plots.cell_edges(lr, False)  # (linear)
    np.testing.assert_allclose(cell.get_xy(), (edges_x[1], edges_y[0]))
    np.testing.assert_allclose(cell.get_width(), edges_x[2] - edges_x[1])
    np.testing.assert_allclose(cell.get_height(), edges_y[1] - edges_y[0])
    # the legend lies below the axes, off the data
    fig.canvas.draw()
    box = ax.get_legend().get_window_extent()
    assert box.y1 < ax.get_window_extent().y0


@pytest.mark.parametrize(
    "lr, decay, seeds",
    [
        (np.logspace(-3, 0, 16), np.linspace(0.5, 0.999, 16), 1),  # sweep elongated's grid
        (np.logspace(-3, 0, 16), np.linspace(0.5, 0.999, 16), 3),  # two panels
        (np.logspace(-4, -1, 64), np.linspace(0.9, 0.9999, 64), 1),
        (np.array([1e-4, 1.2e-4, 1e-3, 0.5]), np.array([0.5, 0.51, 0.9, 0.99, 0.999]), 1),
    ],
    ids=["16x16", "16x16-seeds", "64x64", "uneven"],
)
def test_tick_labels_never_overlap(lr, decay, seeds, monkeypatch, tmp_path):
    """The labels as drawn in the saved file's layout: no two boxes intersect, on every
    axis of every panel, and the first grid value keeps its label."""
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: plots._layout(fig) or figures.append(fig))
    final = np.add.outer(np.log(lr), decay)
    plots.sweep_heatmap(_result(lr, decay, np.exp(final), seeds=seeds), tmp_path / "h.png",
                        spread=np.ones_like(final) if seeds > 1 else None, title="t")  # fmt: skip
    fig = figures[0]
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if hasattr(ax, "grid_ticks")]
    assert len(panels) == (2 if seeds > 1 else 1)
    for ax in panels:
        for labels, values in ((ax.get_xticklabels(), decay), (ax.get_yticklabels(), lr)):
            shown = [t for t in labels if t.get_text()]
            assert len(labels) == values.size and len(shown) >= 2
            assert shown[0].get_text() == f"{values[0]:.3g}"
            boxes = [t.get_window_extent() for t in shown]
            for i, p in enumerate(boxes):
                for q in boxes[i + 1 :]:
                    assert not p.overlaps(q), (p, q)
    plt.close(fig)


def test_a_metric_is_drawn_on_a_linear_scale_and_named(drawn):
    lr, decay = np.array([1e-3, 1e-2]), np.array([0.9, 0.99])
    acc = np.array([[0.8, 0.9], [0.95, 0.7]])
    fig = drawn(_result(lr, decay, np.ones((2, 2)), seeds=3, accuracy=acc), by="val_accuracy")
    assert _mesh(fig).colorbar.ax.get_ylabel() == "final val_accuracy, mean over 3 seeds"
    np.testing.assert_allclose(_mesh(fig).get_array().reshape(2, 2), acc)
    assert _mesh(fig).norm.__class__.__name__ == "Normalize"


def test_cell_edges_of_one_value_and_of_a_linear_grid():
    np.testing.assert_allclose(
        plots.cell_edges(np.array([1.0, 2.0, 4.0]), log=False), [0.5, 1.5, 3.0, 5.0]
    )
    np.testing.assert_allclose(plots.cell_edges(np.array([1e-3]), log=True), [5e-4, 2e-3])


def test_a_real_sweep_draws(drawn):
    task = jax_rmsprop.Task(
        lambda p, b: ((b[0] @ p - b[1]) ** 2).mean(),
        lambda key: np.zeros(3, np.float32),
        (np.ones((8, 3), np.float32), np.ones(8, np.float32)),
        4,
    )
    grid = {"learning_rate": np.array([1e-3, 1e-2, 1e-1]), "decay": np.array([0.5, 0.9])}
    fig = drawn(jax_rmsprop.tune(task, grid, 2))
    assert _mesh(fig).get_array().size == 6


def test_a_random_search_is_a_scatter_coloured_by_score_and_the_heatmap_says_so(drawn, tmp_path):
    task = jax_rmsprop.Task(
        lambda p, b: ((b[0] @ p - b[1]) ** 2).mean(),
        lambda key: np.zeros(3, np.float32),
        (np.ones((8, 3), np.float32), np.ones(8, np.float32)),
        4,
    )
    F = pytest.importorskip("optuna").distributions.FloatDistribution
    ranges = {"learning_rate": F(1e-4, 1e-1, log=True), "decay": F(0.5, 0.99)}
    res = jax_rmsprop.tune(task, ranges, 2, samples=12, seed=3)
    with pytest.raises(ValueError, match="drawn at random: use plots.sweep_scatter"):
        drawn(res)
    figures = []
    orig = plots._save
    plots._save = lambda fig, out: figures.append(fig) or out
    try:
        plots.sweep_scatter(res, tmp_path / "s.png", title="random search")
    finally:
        plots._save = orig
    ax = figures[0].axes[0]
    points = ax.collections[0]
    np.testing.assert_allclose(points.get_offsets()[:, 0], res.configs["learning_rate"])
    np.testing.assert_allclose(points.get_offsets()[:, 1], res.configs["decay"])
    np.testing.assert_allclose(points.get_array(), res.score())
    best = ax.collections[-1].get_offsets()[0]
    i = int(np.argmin(res.score()))
    np.testing.assert_allclose(best, [res.configs["learning_rate"][i], res.configs["decay"][i]])
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning_rate"
    import matplotlib.pyplot as plt

    plt.close(figures[0])
    # with halving: the configurations it did not continue are grey crosses, not "diverged"
    halved = jax_rmsprop.tune(task, ranges, 4, samples=12, seed=3, halving=2)
    plots._save = lambda fig, out: figures.append(fig) or out
    try:
        plots.sweep_scatter(halved, tmp_path / "h.png", title="random search, halving")
    finally:
        plots._save = orig
    ax = figures[-1].axes[0]
    marks = {c.get_label(): c for c in ax.collections}
    assert "diverged" not in marks  # (nothing diverged here)
    kept = np.isfinite(halved.score())
    grey = marks["halted early (successive halving)"].get_offsets()
    np.testing.assert_allclose(grey[:, 0], halved.configs["learning_rate"][~kept])
    assert len(grey) == (~kept).sum() > 0
    plt.close(figures[-1])


@pytest.fixture
def figures(monkeypatch):
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: kept.append(fig) or out)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def _search_result():
    """Five configurations of three hyperparameters, one pruned (inf score)."""
    configs = {
        "learning_rate": np.array([1e-4, 1e-3, 1e-2, 1e-1, 3e-2]),
        "decay": np.array([0.5, 0.9, 0.99, 0.7, 0.8]),
        "momentum": np.array([0.0, 0.5, 0.9, 0.2, 0.1]),
    }
    final = np.array([0.9, 0.4, 0.3, 2.0, 0.5])
    val = np.repeat(final[:, None, None], 3, -1)
    ran = np.array([[3], [3], [3], [3], [1]])
    return TuneResult(configs, val.copy(), val, ran, pruned=np.array([0, 0, 0, 0, 1], bool))


def test_parallel_coordinates_draw_every_configuration_on_scaled_axes(figures, tmp_path):
    res = _search_result()
    plots.parallel_coordinates(res, tmp_path / "p.png", title="t")
    ax = figures[-1].axes[0]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 3]
    red = [ln for ln in lines if ln.get_color() == "red"]
    grey = [ln for ln in lines if ln.get_color() == "0.8"]
    assert len(lines) == 5 + 1 and len(red) == 1 and len(grey) == 1  # 4 coloured, best again
    # the best (0.3: lr 1e-2, decay 0.99, momentum 0.9) on scaled axes: lr on a log axis
    lr = (np.log10(1e-2) - (-4)) / 3
    decay = (0.99 - 0.5) / 0.49
    np.testing.assert_allclose(red[0].get_ydata(), [lr, decay, 1.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "learning_rate (log)", "decay", "momentum",
    ]  # fmt: skip
    # the pruned configuration (index 4) is the grey one
    np.testing.assert_allclose(grey[0].get_ydata()[1], (0.8 - 0.5) / 0.49)


def test_search_progress_is_the_best_so_far_against_cumulative_epochs(figures, tmp_path):
    res = _search_result()
    plots.search_progress({"a": res}, tmp_path / "s.png", title="t")
    ax = figures[-1].axes[0]
    step = ax.get_lines()[0]
    np.testing.assert_array_equal(step.get_xdata(), [3, 6, 9, 12, 13])
    np.testing.assert_array_equal(step.get_ydata(), [0.9, 0.4, 0.3, 0.3, 0.3])
    assert "a (13 epochs)" in [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.slow
def test_pbt_schedule_draws_the_best_lineage_in_red(figures, tmp_path):
    pytest.importorskip("optuna")
    from optuna.distributions import FloatDistribution

    from ..training.test_tune import _task

    task = _task()
    space = {"learning_rate": FloatDistribution(1e-3, 0.3, log=True)}
    res = jax_rmsprop.pbt(task, space, 4, population=4, interval=2, seed=0)
    plots.pbt_schedule(res, tmp_path / "b.png", title="t")
    ax_lr, ax_loss = figures[-1].axes
    red = [p for p in ax_lr.patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(red) == 1 and len(ax_lr.patches) == 4 + 1
    lineage = [h["learning_rate"] for _, _, h, _ in res.lineage()]
    np.testing.assert_allclose(red[0].get_data().values, lineage)
    np.testing.assert_allclose(ax_loss.get_lines()[-1].get_ydata(), res.val_loss[res.best])


def test_fit_curves_draw_each_quantity_training_and_validation(figures, tmp_path):
    from jax_rmsprop._fit import History

    hist = {
        "loss": np.array([1.0, 0.5, 0.4]),
        "accuracy": np.array([0.5, 0.7, 0.8]),
        "val_loss": np.array([1.1, 0.6, 0.7]),
        "val_accuracy": np.array([0.4, 0.6, 0.6]),
    }
    h = History(None, None, hist["loss"], hist["val_loss"], hist, epoch=(0, 1, 2), best_epoch=1)
    plots.fit_curves(h, tmp_path / "f.png", title="t")
    loss_ax, acc_ax = figures[-1].axes
    train, val, best = loss_ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(train.get_ydata(), hist["loss"])
    np.testing.assert_array_equal(val.get_ydata(), hist["val_loss"])
    assert val.get_linestyle() == "--" and val.get_color() == train.get_color()
    assert best.get_xdata()[0] == 2 and loss_ax.get_yscale() == "log"
    np.testing.assert_array_equal(acc_ax.get_lines()[1].get_ydata(), hist["val_accuracy"])
    assert acc_ax.get_yscale() == "linear" and acc_ax.get_ylabel() == "accuracy"


def test_top_curves_are_the_best_configurations_mean_over_seeds(figures, tmp_path):
    lr, decay = np.array([1e-3, 1e-2]), np.array([0.5, 0.9])
    rng = np.random.default_rng(0)
    val = rng.uniform(0.1, 1.0, size=(2, 2, 3, 4))  # (lr, decay, seeds, epochs)
    res = TuneResult({"learning_rate": np.repeat(lr, 2).reshape(2, 2),
                      "decay": np.tile(decay, 2).reshape(2, 2)},
                     val.copy(), val, np.full((2, 2, 3), 4))  # fmt: skip
    plots.top_curves(res, tmp_path / "c.png", title="t", k=2)
    ax = figures[-1].axes[0]
    lines = ax.get_lines()
    order = np.argsort(val[..., -1].mean(-1).ravel())[:2]
    for line, i in zip(lines, order):
        cell = np.unravel_index(i, (2, 2))
        np.testing.assert_allclose(line.get_ydata(), val[cell].mean(0))
    assert len(lines) == 2 and len(ax.collections) == 2  # a seed band each
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    i = np.unravel_index(order[0], (2, 2))
    assert labels[0] == f"learning_rate {lr[i[0]]:.3g}, decay {decay[i[1]]:.3g}"


def test_a_zero_loss_on_log_colours_is_the_lowest_colour_and_reads_0(drawn):
    lr, decay = np.array([1e-3, 1e-2]), np.array([0.5, 0.9])
    final = np.array([[1.0, 1e-3], [1e-5, 0.0]])  # the last one underflowed to 0
    res = jax_rmsprop.SweepResult(
        configs={"learning_rate": np.repeat(lr, 2).reshape(2, 2),
                 "decay": np.tile(decay, 2).reshape(2, 2)},
        final_loss=final, steps_to_tol=np.full((2, 2), -1),
        diverged=np.zeros((2, 2), bool),
    )  # fmt: skip
    ax = drawn(res).axes[0]
    mesh = ax.collections[0]
    shown = np.asarray(mesh.get_array()).reshape(2, 2)
    assert not np.ma.is_masked(shown[1, 1]) and shown[1, 1] == 1e-5 == mesh.norm.vmin
    assert [(t.get_text(), t.get_position()) for t in ax.texts] == [("0", (0.9, 1e-2))]


def test_tune_trials_draws_each_trial_at_its_number_and_pruned_ones_apart(figures, tmp_path):
    """Completed trials at (number, value) and over their parameters; pruned ones as grey
    crosses at their last reported value; the best so far; the legends off the axes."""
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
             "decay": FloatDistribution(0.5, 0.99)}  # fmt: skip
    values = [0.9, 0.5, 0.7, 0.3, 0.8]
    for i, v in enumerate(values):
        t = study.ask(space)
        t.report(2 * v, 1)
        if i == 2:
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t, v)
    plots.tune_trials(study, tmp_path / "t.png", title="t")
    left, right = figures[0].axes[:2]
    lines = {line.get_label(): line for line in left.get_lines()}
    np.testing.assert_allclose(lines["completed"].get_xydata(),
                               [[0, 0.9], [1, 0.5], [3, 0.3], [4, 0.8]])  # fmt: skip
    np.testing.assert_allclose(lines["pruned (last reported value)"].get_xydata(), [[2, 1.4]])
    np.testing.assert_allclose(lines["best so far"].get_ydata(), [0.9, 0.5, 0.3, 0.3])
    marks = {c.get_label(): c for c in right.collections}
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    np.testing.assert_allclose(
        marks["completed (colour: value)"].get_offsets(),
        [[t.params["learning_rate"], t.params["decay"]] for t in done],
    )
    best = study.best_trial.params
    np.testing.assert_allclose(marks["best"].get_offsets(), [[best["learning_rate"],
                               best["decay"]]])  # fmt: skip
    assert len(marks["pruned"].get_offsets()) == 1 and right.get_xscale() == "log"
    figures[0].canvas.draw()
    for ax in (left, right):
        assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0
