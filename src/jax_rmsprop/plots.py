"""Pictures: contours, loss curves, animations, sweep heatmaps, searches, PBT schedules.

Paths on contours, loss curves, the 1-D animation, sweep heatmaps and scatters, parallel
coordinates and best-so-far curves of searches, and PBT schedules.

Needs the ``plot`` extra (matplotlib, pillow). The library core never imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._inputs import direction
from ._pbt import PBTResult
from ._sweep import SweepResult
from ._tune_result import TuneResult
from .problems import Problem


def _plt():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "jax_rmsprop.plots needs matplotlib: pip install 'jax-rmsprop[plot]'"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def contour_paths(
    problem: Problem,
    paths: Mapping[str, np.ndarray],
    out: str | Path,
    *,
    title: str,
    extent: tuple[float, float, float, float] = (-2.0, 2.0, -2.0, 2.0),
) -> Path:
    """Paths of 2-D optimizers over the loss contours (seed 001's figure)."""
    import jax
    import jax.numpy as jnp

    plt = _plt()
    x0, x1, y0, y1 = extent
    xs, ys = np.meshgrid(np.linspace(x0, x1, 400), np.linspace(y0, y1, 400))
    pts = jnp.stack([xs.ravel(), ys.ravel()], axis=1)
    zs = np.asarray(jax.vmap(problem.loss)(pts)).reshape(xs.shape)
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.contour(xs, ys, zs, levels=50, cmap="jet", linewidths=0.6)
    for k, (label, path) in enumerate(paths.items()):
        path = np.asarray(path)
        ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1.2, label=label)
        ax.scatter(path[-1, 0], path[-1, 1], color="red", zorder=5, label=None if k else "End")
    first = np.asarray(next(iter(paths.values())))
    ax.scatter(first[0, 0], first[0, 1], color="green", zorder=5, label="Start")
    if problem.minimizer is not None:
        m = np.asarray(problem.minimizer)
        ax.scatter(m[0], m[1], marker="*", s=150, color="black", zorder=6, label="Minimum")
    ax.set(title=title, xlabel="x", ylabel="y", xlim=(x0, x1), ylim=(y0, y1))
    ax.legend()
    return _save(fig, out)


def loss_curves(
    losses: Mapping[str, npt.ArrayLike],
    out: str | Path,
    *,
    title: str,
    xlabel: str = "Epoch",
    log: bool = True,
    note: str | None = None,
    first: int = 0,
) -> Path:
    """Loss against step for several optimizers.

    A curve labelled ``"X validation"`` is drawn dashed in the colour of ``"X train"``;
    ``note`` is printed under the axes (what the reader should know to read the curves).
    A curve's first value is drawn at ``first`` (1 for losses after each epoch); the
    ticks are whole numbers.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 6.6 if note else 6))
    colors: dict[str, str] = {}
    for label, curve in losses.items():
        curve = np.asarray(curve)
        x = np.arange(first, first + curve.shape[0])
        base = label.removesuffix(" validation")
        if base != label and f"{base} train" in colors:
            ax.plot(x, curve, "--", color=colors[f"{base} train"], label=label)
        else:
            (line,) = ax.plot(x, curve, label=label)
            colors[label] = line.get_color()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel="Loss")
    ax.grid(alpha=0.4)
    ax.legend()
    if note:
        fig.text(0.02, 0.01, note, fontsize=8.5, va="bottom", wrap=True)
    return _save(fig, out, rect=(0, 0.1, 1, 1) if note else None)


def animate_1d(
    problem: Problem,
    points: np.ndarray,
    out: str | Path,
    *,
    title: str,
    frames: int = 200,
    interval_ms: int = 20,
) -> Path:
    """A point sliding down a 1-D loss, one frame per step (seed 003's GIF)."""
    import jax
    import jax.numpy as jnp
    from matplotlib import animation

    plt = _plt()
    xs = np.linspace(-5, 5, 2000)
    ys = np.asarray(jax.vmap(lambda v: problem.loss(v[None]))(jnp.asarray(xs)))
    pts = np.asarray(points).reshape(-1)
    fs = np.asarray(jax.vmap(lambda v: problem.loss(v[None]))(jnp.asarray(pts)))
    fig, ax = plt.subplots(figsize=(9.6, 5.4), dpi=60)
    ax.plot(xs, ys)
    ax.grid(alpha=0.5)
    ax.set(xlim=(-5, 5), ylim=(-5, 5), xlabel="x", ylabel="y", title=title)
    if problem.min_loss is not None:
        ax.hlines(problem.min_loss, -5, 5, linestyles="dashed", alpha=0.5)
    (dot,) = ax.plot([pts[0]], [fs[0]], "o", color="red", ms=10)
    label = ax.text(0.02, 0.95, "", transform=ax.transAxes, va="top")

    def draw(i):
        dot.set_data([pts[i]], [fs[i]])
        label.set_text(f"step {i}: x = {pts[i]:.4f}")
        return dot, label

    n = min(frames, len(pts))
    anim = animation.FuncAnimation(fig, draw, frames=n, interval=interval_ms, blit=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    anim.save(out, writer=animation.PillowWriter(fps=1000 // interval_ms))
    plt.close(fig)
    return out


def sweep_heatmap(
    result: SweepResult | TuneResult,
    out: str | Path,
    *,
    title: str,
    spread: np.ndarray | None = None,
    label: str | None = None,
    by: str | None = None,
    mode: str = "auto",
) -> Path:
    """A 2-D grid's final values as a heatmap; red x marks divergence.

    Each cell is centred on its grid values, with edges halfway between neighbours
    (geometric midpoints on log axes, used where the values are log-spaced or span two
    decades), and the grid values are the ticks. For a training sweep the value is its
    ``score`` of ``by`` (default: the validation loss) as the mean
    over seeds, e.g. ``by="val_accuracy"``; runs that successive halving did not continue
    are marked apart from diverged ones, and with several seeds a second panel shows the
    spread over seeds (``spread``, grid-shaped, draws it from other values). Losses are
    coloured on a log scale, other metrics on a linear one.
    """
    plt = _plt()
    names = list(result.configs)
    if len(names) != 2 or np.ndim(result.configs[names[0]]) != 2:
        raise ValueError(
            f"sweep_heatmap needs a 2-D grid; this one has {names}"
            + (" drawn at random: use plots.sweep_scatter." if len(names) and
               np.ndim(result.configs[names[0]]) == 1 else ".")
        )  # fmt: skip
    a = result.configs[names[0]][:, 0]
    b = result.configs[names[1]][0, :]
    stopped = np.zeros(a.shape + b.shape, bool)
    what = "final loss"
    if isinstance(result, TuneResult):
        sign = 1.0 if by is None else direction(by, mode, "sweep_heatmap")
        values = result.score(by, mode) * sign
        bad = ~np.isfinite(values)
        full = result.loss.shape[-1]
        stopped = bad & (result.epochs_run.min(-1) < full)  # halving did not continue them
        diverged = bad & ~stopped
        if spread is None and result.loss.shape[-2] > 1:
            spread = result.spread(by)
        seeds = result.loss.shape[-2]
        what = by or ("validation loss" if result.val_loss is not None else "training loss")
        what = f"final {what}" + (f", mean over {seeds} seeds" if seeds > 1 else "")
    else:
        values, diverged = result.final_loss, result.diverged
    values = np.where(diverged | stopped, np.nan, values)
    log = by is None or "loss" in by
    label = label or (what + (" (log)" if log else ""))
    panels = 1 if spread is None else 2
    # large type: the picture is read at about half its width (a docs page, a gallery)
    with plt.rc_context({"font.size": 14, "axes.labelsize": 15, "figure.titlesize": 16}):
        fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 6), squeeze=False)
        _grid_panel(axes[0, 0], a, b, values, label, log=log)
        if spread is not None:
            spread = np.where(diverged | stopped, np.nan, spread)
            _grid_panel(axes[0, 1], a, b, spread, "spread over seeds (std)", log=False)
        halted = ""
        if isinstance(result, TuneResult) and stopped.any():
            ran = sorted({int(e) for e in result.epochs_run.min(-1)[stopped]})
            halted = f" (after {' or '.join(map(str, ran))} of {result.loss.shape[-1]} epochs)"
        _marks(axes[0], a, b, diverged, stopped, names, halted)
        import textwrap

        fig.suptitle(textwrap.fill(title, 60 * panels))  # (a long title: on two lines)
        return _save(fig, out)


def _marks(axes, a, b, diverged, stopped, names, halted: str = "") -> None:
    """Diverged and halted cells marked on each panel, the legend under it; the axes named.

    A halted cell (successive halving did not continue it) is hatched grey, a diverged
    one carries a red x; the legend sits below the axes, off the data.
    """
    from matplotlib.patches import Patch, Rectangle

    ea, eb = cell_edges(a, _log_axis(a)), cell_edges(b, _log_axis(b))
    for ax in axes:
        handles = []
        for i, j in np.argwhere(stopped):
            corner, size = (eb[j], ea[i]), (eb[j + 1] - eb[j], ea[i + 1] - ea[i])
            ax.add_patch(Rectangle(corner, *size, facecolor="0.85", edgecolor="0.55",
                                   hatch="///", lw=0))  # fmt: skip
        if stopped.any():
            handles.append(Patch(facecolor="0.85", edgecolor="0.55", hatch="///",
                                 label=f"halted early by successive halving{halted}"))  # fmt: skip
        cells = np.argwhere(diverged)
        if cells.size:
            handles.append(ax.scatter(b[cells[:, 1]], a[cells[:, 0]], marker="x", color="red",
                                      s=30, label="diverged"))  # fmt: skip
        if handles:
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                      ncol=len(handles), frameon=False, fontsize=11)  # fmt: skip
        ax.set(xlabel=names[1], ylabel=names[0])


def sweep_scatter(
    result: TuneResult,
    out: str | Path,
    *,
    title: str,
    x: str | None = None,
    y: str | None = None,
    by: str | None = None,
    mode: str = "auto",
) -> Path:
    """A random search's configurations as points, coloured by their score.

    Each sampled configuration is a point at its values of ``x`` and ``y`` (default: the
    first two hyperparameters; log axes where the values span two decades), coloured by
    the mean over seeds of the final ``by`` (default: the validation loss; log colours for
    losses); the best is ringed; configurations that successive halving did not continue
    are grey crosses, those that diverged red ones.
    """
    plt = _plt()
    names = list(result.configs)
    x, y = x or names[0], y or (names[1] if len(names) > 1 else names[0])
    for name in (x, y):
        if name not in result.configs:
            raise ValueError(f"sweep_scatter(x/y={name!r}): the sweep searched {names}.")
    xs, ys = (np.asarray(result.configs[n]).ravel() for n in (x, y))
    sign = 1.0 if by is None else direction(by, mode, "sweep_scatter")
    score = result.score(by, mode).ravel()
    values = score * sign
    ok = np.isfinite(values)
    log = by is None or "loss" in by
    fig, ax = plt.subplots(figsize=(8, 6.5))
    from matplotlib.colors import LogNorm

    norm = LogNorm() if log and ok.any() and (values[ok] > 0).all() else None
    points = ax.scatter(xs[ok], ys[ok], c=values[ok], cmap="viridis", norm=norm, s=30,
                        label="configurations")  # fmt: skip
    # not finished: halving did not continue them (fewer epochs), or they diverged
    stopped = ~ok & (result.epochs_run.min(-1).ravel() < result.loss.shape[-1])
    for mask, color, name in ((stopped, "0.6", "halted early (successive halving)"),
                              (~ok & ~stopped, "red", "diverged")):  # fmt: skip
        if mask.any():
            ax.scatter(xs[mask], ys[mask], marker="x", color=color, s=20, label=name)
    if ok.any():
        i = int(np.argmin(np.where(ok, score, np.inf)))
        ax.scatter([xs[i]], [ys[i]], s=160, facecolors="none", edgecolors="red", label="best")
    what = by or ("validation loss" if result.val_loss is not None else "training loss")
    seeds = result.loss.shape[-2]
    label = f"final {what}" + (f", mean over {seeds} seeds" if seeds > 1 else "")
    fig.colorbar(points, ax=ax, label=label + (" (log)" if norm is not None else ""))
    for axis, v in (("x", xs), ("y", ys)):
        if _spans_decades(v):
            getattr(ax, f"set_{axis}scale")("log")
    ax.set(xlabel=x, ylabel=y, title=title)
    ax.legend(loc="best")
    return _save(fig, out)


def parallel_coordinates(
    result: TuneResult,
    out: str | Path,
    *,
    title: str,
    by: str | None = None,
    mode: str = "auto",
) -> Path:
    """Every configuration as a line across one axis per hyperparameter, coloured by score.

    For searches of more than two hyperparameters. Each axis spans its values (log where
    they span two decades), its ends labelled; lines are coloured by the mean final ``by``
    (default: the validation loss; the best drawn last, darkest, and ringed in red), and
    configurations that did not finish (pruned, diverged, not continued by halving) are
    thin grey lines underneath.
    """
    plt = _plt()
    names = list(result.configs)
    cols = np.stack([np.asarray(result.configs[n], np.float64).ravel() for n in names])
    logs = [_spans_decades(c) for c in cols]
    if result.study is not None and result.trial is not None and result.trial.size:
        dists = result.study.trials[int(result.trial[0])].distributions  # they say log
        logs = [bool(getattr(dists.get(n), "log", False)) for n in names]
    scaled = np.empty_like(cols)
    for i, (c, log) in enumerate(zip(cols, logs)):
        v = np.log10(c) if log else c
        span = v.max() - v.min()
        scaled[i] = (v - v.min()) / span if span > 0 else 0.5
    sign = 1.0 if by is None else direction(by, mode, "parallel_coordinates")
    score = result.score(by, mode).ravel()
    ok = np.isfinite(score)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(names)), 5.5))
    xs = np.arange(len(names))
    for j in np.flatnonzero(~ok):
        ax.plot(xs, scaled[:, j], color="0.8", lw=0.6, zorder=1)
    from matplotlib.colors import LogNorm, Normalize

    shown = score[ok] * sign
    log = (by is None or "loss" in by) and ok.any() and (shown > 0).all()
    norm = LogNorm(shown.min(), shown.max()) if log else Normalize(shown.min(), shown.max())
    cmap = plt.get_cmap("viridis" if sign > 0 else "viridis_r")  # the best darkest
    for j in np.flatnonzero(ok)[np.argsort(-score[ok], kind="stable")]:  # best on top
        ax.plot(xs, scaled[:, j], color=cmap(norm(score[j] * sign)), lw=1.0, alpha=0.8, zorder=2)
    if ok.any():
        b = int(np.argmin(np.where(ok, score, np.inf)))
        ax.plot(xs, scaled[:, b], color="red", lw=2.5, zorder=3, label="best")
        if (~ok).any():
            ax.plot([], [], color="0.8", label="pruned, diverged or not continued")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    for i, c in enumerate(cols):
        ax.axvline(i, color="black", lw=0.8)
        for y, v in ((0, c.min()), (1, c.max())):
            ax.annotate(f"{v:.3g}", (i, y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8)  # fmt: skip
    ax.set_xticks(xs, [f"{n}{' (log)' if log_ else ''}" for n, log_ in zip(names, logs)])
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(names) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    what = by or ("validation loss" if result.val_loss is not None else "training loss")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=f"final {what}" + (" (log)" if log else ""))
    ax.set_title(title)
    return _save(fig, out)


def search_progress(
    results: Mapping[str, TuneResult],
    out: str | Path,
    *,
    title: str,
    by: str | None = None,
    mode: str = "auto",
) -> Path:
    """The best score found so far against the epochs trained so far, one line per search.

    ``results``: label -> [`TuneResult`][jax_rmsprop.TuneResult], each read in its configurations'
    order (the
    order asked for a sampler, drawn for random search). Compute is the epochs each
    configuration trained (pruned and halved ones count what they trained), summed over
    seeds; the best is the lowest ``score`` so far (for ``by`` where higher is better,
    its value is shown as recorded).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    sign = 1.0 if by is None else direction(by, mode, "search_progress")
    for label, res in results.items():
        score = res.score(by, mode).ravel()
        spent = res.epochs_run.reshape(score.size, -1).sum(-1)
        best = np.minimum.accumulate(np.where(np.isfinite(score), score, np.inf))
        x = np.cumsum(spent)
        shown = np.isfinite(best)
        (line,) = ax.step(
            x[shown], best[shown] * sign, where="post", label=f"{label} ({x[-1]} epochs)"
        )
        ax.plot([x[shown][-1]], [best[-1] * sign], "o", color=line.get_color())
    what = by or "validation loss"
    ax.set(xlabel="epochs trained (all runs, cumulative)", ylabel=f"best final {what} so far",
           title=title)  # fmt: skip
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, out)


def pbt_schedule(result: PBTResult, out: str | Path, *, title: str) -> Path:
    """A PBT run: every member's hyperparameters by epoch and its validation loss.

    One panel per hyperparameter (log where it spans two decades) with every member's
    value per interval (grey) and the best member's lineage (red: the values its
    ancestors trained with), and a last panel of every member's validation loss (training
    loss without validation data), the best in red.
    """
    plt = _plt()
    names = list(result.schedule)
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(8, 2.4 * (len(names) + 1)),
                             sharex=True)  # fmt: skip
    n_int, pop = result.parent.shape
    edges = np.minimum(np.arange(n_int + 1) * result.interval, result.loss.shape[1])
    lineage = result.lineage()
    for ax, name in zip(axes, names):
        v = result.schedule[name]
        for m in range(pop):
            ax.stairs(v[:, m], edges, baseline=None, color="0.6", lw=0.7, alpha=0.6)
        ax.stairs([h[name] for _, _, h, _ in lineage], edges, baseline=None, color="red",
                  lw=2.2, label="the best member's lineage")  # fmt: skip
        if _spans_decades(v):
            ax.set_yscale("log")
        ax.set_ylabel(name)
    axes[0].legend(loc="best")
    curves = result.val_loss if result.val_loss is not None else result.loss
    epochs = np.arange(1, curves.shape[1] + 1)
    for m in range(pop):
        axes[-1].plot(epochs, curves[m], color="0.6", lw=0.7, alpha=0.6)
    axes[-1].plot(epochs, curves[result.best], color="red", lw=2.2)
    axes[-1].set_yscale("log")
    axes[-1].set(xlabel="epoch", ylabel="validation loss" if result.val_loss is not None
                 else "training loss")  # fmt: skip
    axes[0].set_title(title)
    return _save(fig, out)


def fit_curves(history: Any, out: str | Path, *, title: str) -> Path:
    """A ``fit``'s ``History``: its loss and each metric against the epoch.

    ``history``: a [`History`][jax_rmsprop.History] of [`fit`][jax_rmsprop.fit]. One panel
    per quantity of ``history.history`` (``loss``, ``accuracy``...), training solid and
    validation (``val_``) dashed in the same colour; losses on a log axis; the best epoch of
    early stopping marked where there is one.
    """
    plt = _plt()
    hist = history.history
    names = [k for k in hist if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.5), squeeze=False)
    epochs = np.asarray(history.epoch) + 1 if history.epoch else None
    for ax, name in zip(axes[0], names):
        x = epochs if epochs is not None else np.arange(1, len(hist[name]) + 1)
        (line,) = ax.plot(x, hist[name], "o-", ms=3, label=f"training {name}")
        if f"val_{name}" in hist:
            ax.plot(x, hist[f"val_{name}"], "o--", ms=3, color=line.get_color(),
                    label=f"validation {name}")  # fmt: skip
        if history.best_epoch is not None:
            ax.axvline(history.best_epoch + 1, color="0.5", ls=":", label="best epoch")
        if "loss" in name and np.all(np.asarray(hist[name]) > 0):
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, out)


def top_curves(
    result: TuneResult,
    out: str | Path,
    *,
    title: str,
    k: int = 5,
    by: str | None = None,
    mode: str = "auto",
) -> Path:
    """The learning curves of a tuning's ``k`` best configurations, with the seed spread.

    Each of the ``k`` best (as ``best(k, by)`` ranks them) is its mean curve of ``by``
    (default: the validation loss, else the training loss) over seeds, and a band from
    the lowest to the highest seed; the legend gives its hyperparameters.
    """
    plt = _plt()
    name = by or ("val_loss" if result.val_loss is not None else "loss")
    curves = result.history(name)
    grid = curves.shape[:-2]
    order = np.argsort(result.score(by, mode).ravel(), kind="stable")[:k]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i in order:
        c = curves[np.unravel_index(i, grid)]  # (seeds, epochs)
        x = np.arange(1, c.shape[-1] + 1)
        label = ", ".join(f"{n} {v.ravel()[i]:.3g}" for n, v in result.configs.items())
        (line,) = ax.plot(x, np.nanmean(c, 0), label=label)
        if c.shape[0] > 1:
            ax.fill_between(x, np.nanmin(c, 0), np.nanmax(c, 0), color=line.get_color(),
                            alpha=0.2)  # fmt: skip
    if "loss" in name:
        ax.set_yscale("log")
    seeds = curves.shape[-2]
    spread = f", band: min-max over {seeds} seeds" if seeds > 1 else ""
    ax.set(xlabel="epoch", ylabel=f"{name} (mean{spread})", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def _spans_decades(v: np.ndarray) -> bool:
    """Positive values spanning two decades or more: they belong on a log axis."""
    return bool(v.min() > 0 and v.max() / v.min() >= 100)


def _log_axis(v: np.ndarray) -> bool:
    """Whether grid values ``v`` belong on a log axis.

    They do when positive and log-spaced, or spanning two decades.
    """
    if v.size < 2 or v.min() <= 0:
        return False
    steps = np.diff(np.log(v))
    return bool(np.allclose(steps, steps[0]) and v.size > 2) or _spans_decades(v)


def cell_edges(v: np.ndarray, log: bool) -> np.ndarray:
    """The edges of cells centred on the grid values ``v``.

    Midpoints between neighbours (geometric on a log axis); the outer edges as far out as
    the inner ones.
    """
    v = np.asarray(v, np.float64)
    w = np.log(v) if log else v
    if w.size == 1:
        edges = np.array([w[0] - 0.5, w[0] + 0.5]) if not log else w[0] + np.log([0.5, 2.0])
    else:
        mid = (w[:-1] + w[1:]) / 2
        edges = np.concatenate([[2 * w[0] - mid[0]], mid, [2 * w[-1] - mid[-1]]])
    return np.exp(edges) if log else edges


def _grid_panel(ax, a, b, values, label, log):
    """One heatmap of ``values`` over the grid ``a x b``.

    Cells centred on the grid values, the grid values as ticks, log-scaled axes where the
    values are; on log colours a value of exactly 0 takes the lowest colour and reads "0".
    """
    from matplotlib.colors import LogNorm

    norm = None
    pos = values[np.isfinite(values) & (values > 0)]
    zero = np.isfinite(values) & (values <= 0)
    if log:  # a loss of exactly 0 (underflow) has no log colour: the lowest, marked "0"
        vmin = max(pos.min(), 1e-300) if pos.size else 1.0
        values = np.where(zero, vmin, values)
        norm = LogNorm(vmin=vmin, vmax=pos.max()) if pos.size else None
        for i, j in zip(*np.nonzero(zero)):
            ax.text(b[j], a[i], "0", ha="center", va="center", color="white", fontsize=9)
    log_a, log_b = _log_axis(a), _log_axis(b)
    mesh = ax.pcolormesh(
        cell_edges(b, log_b), cell_edges(a, log_a), values, norm=norm, cmap="viridis",
        shading="flat",
    )  # fmt: skip
    ax.figure.colorbar(mesh, ax=ax, label=label)
    for axis, v, is_log in (("y", a, log_a), ("x", b, log_b)):
        if is_log:
            getattr(ax, f"set_{axis}scale")("log")
        getattr(ax, f"set_{axis}ticks")(v, [f"{x:.3g}" for x in v])
        getattr(ax, f"{axis}axis").set_minor_locator(_null_locator())
    ax.grid_ticks = {"x": b, "y": a}  # labels thinned once the layout is known (_save)


def _thin_grid_labels(fig) -> None:
    """Every grid panel's tick labels, every k-th kept, k the least for which none overlap.

    Measured as drawn (``get_window_extent``) with 2 pixels between neighbours, after the
    layout: a tick stays at every grid value, a label at every k-th.
    """
    for ax in fig.axes:
        for axis, v in getattr(ax, "grid_ticks", {}).items():
            labels = [f"{x:.3g}" for x in v]
            for every in range(1, len(v) + 1):
                getattr(ax, f"set_{axis}ticklabels")(
                    [t if i % every == 0 else "" for i, t in enumerate(labels)]
                )
                if not _overlapping(fig, getattr(ax, f"get_{axis}ticklabels")()):
                    break


def _overlapping(fig, labels) -> bool:
    """Whether any two of the drawn, non-empty ``labels`` come within 2 pixels."""
    fig.canvas.draw()
    boxes = [t.get_window_extent().expanded(1.0, 1.0).padded(1.0) for t in labels
             if t.get_text() and t.get_visible()]  # fmt: skip
    return any(p.overlaps(q) for i, p in enumerate(boxes) for q in boxes[i + 1 :])


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _layout(fig, rect: tuple | None = None) -> None:
    """The figure laid out (``tight_layout``), then the grid panels' labels thinned."""
    fig.set_dpi(100)  # (as saved: the labels are measured at the file's resolution)
    fig.tight_layout(rect=rect)
    if any(hasattr(ax, "grid_ticks") for ax in fig.axes):
        _thin_grid_labels(fig)
        fig.tight_layout(rect=rect)


def _save(fig, out: str | Path, rect: tuple | None = None) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _layout(fig, rect)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def tune_trials(study: Any, out: str | Path, *, title: str) -> Path:
    """An Optuna study's trials: the value against the trial number, and the parameters.

    Left, each finished trial's value (the monitored score, log-scaled for positive
    values) at its number, the best so far as a line; trials the pruner stopped are grey
    crosses at the last value they reported. Right, the first two parameters (one: the
    value against it), each finished trial a point coloured by its value, pruned ones
    grey crosses, the best ringed in red. Log axes where the distribution is log.
    """
    plt = _plt()
    done = [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    if not done and not pruned:
        raise ValueError("tune_trials: the study has no finished trial to draw.")
    last = lambda t: t.intermediate_values[max(t.intermediate_values)]  # noqa: E731
    pruned = [t for t in pruned if t.intermediate_values]
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    nums = np.array([t.number for t in done])
    vals = np.array([t.value for t in done], np.float64)
    finite = np.isfinite(vals)
    if done:
        left.plot(nums[finite], vals[finite], "o", ms=4, color="C0", label="completed")
        best = sign * np.minimum.accumulate(np.where(finite, sign * vals, np.inf))
        shown = np.isfinite(best)
        left.step(nums[shown], best[shown], where="post", color="C1", label="best so far")
    if pruned:
        left.plot([t.number for t in pruned], [last(t) for t in pruned], "x", color="0.55",
                  ms=5, label="pruned (last reported value)")  # fmt: skip
    shown_vals = [*vals[finite], *(last(t) for t in pruned)]
    if shown_vals and min(shown_vals) > 0:
        left.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set(xlabel="trial number", ylabel="value (validation loss)", title="value by trial")
    left.grid(alpha=0.3)
    _legend_below(left)
    _param_scatter(right, study, done, pruned, vals, finite, sign, last)
    fig.suptitle(title)
    return _save(fig, out)


def _param_scatter(ax, study, done, pruned, vals, finite, sign, last) -> None:
    """``tune_trials``' right panel: the trials over their first two parameters."""
    from matplotlib.colors import LogNorm

    trials = [*done, *pruned]
    names = [n for n in trials[0].distributions if all(n in t.params for t in trials)][:2]
    dists = trials[0].distributions
    at = lambda ts, n: np.array([float(t.params[n]) for t in ts])  # noqa: E731
    one = len(names) == 1
    x = names[0] if names else None
    if x is None:
        ax.set_axis_off()
        return
    ys_done = vals if one else at(done, names[1])
    ys_pruned = np.array([last(t) for t in pruned]) if one else at(pruned, names[1])
    ok = finite if done else np.zeros(0, bool)
    positive = ok.any() and (vals[ok] > 0).all()
    norm = LogNorm() if positive else None
    if ok.any():
        points = ax.scatter(at(done, x)[ok], ys_done[ok], c=vals[ok], cmap="viridis", norm=norm,
                            s=30, label="completed (colour: value)")  # fmt: skip
        ax.figure.colorbar(points, ax=ax, label="value" + (" (log)" if positive else ""))
        i = int(np.argmin(np.where(ok, sign * vals, np.inf)))
        ax.scatter(
            [at(done, x)[i]],
            [ys_done[i]],
            s=220,
            facecolors="none",
            edgecolors="red",
            linewidths=2.2,
            zorder=5,
            label="best",
        )  # fmt: skip (on top of the rest)
    if pruned:
        ax.scatter(at(pruned, x), ys_pruned, marker="x", color="0.55", s=25, label="pruned")
    for axis, name in (("x", x), ("y", None if one else names[1])):
        log = getattr(dists.get(name), "log", False) if name else positive
        if log:
            getattr(ax, f"set_{axis}scale")("log")
    ylabel = "value" if one else names[1]
    ax.set(xlabel=x, ylabel=ylabel, title="the trials' parameters")
    _legend_below(ax)


def _legend_below(ax) -> None:
    """The legend in one row under the axes' label, off the data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
