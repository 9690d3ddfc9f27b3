"""Pictures: optimization paths on contours, loss curves, the 1-D animation, sweep heatmaps.

Needs the ``plot`` extra (matplotlib, pillow). The library core never imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ._sweep import SweepResult
from ._train_sweep import TrainingSweepResult
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
    for label, path in paths.items():
        path = np.asarray(path)
        ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1.2, label=label)
        ax.scatter(path[-1, 0], path[-1, 1], color="red", zorder=5)
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
) -> Path:
    """Loss against step for several optimizers (seeds 001 and 002).

    A curve labelled ``"X validation"`` is drawn dashed in the colour of ``"X train"``.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 6))
    colors: dict[str, str] = {}
    for label, curve in losses.items():
        base = label.removesuffix(" validation")
        if base != label and f"{base} train" in colors:
            ax.plot(np.asarray(curve), "--", color=colors[f"{base} train"], label=label)
        else:
            (line,) = ax.plot(np.asarray(curve), label=label)
            colors[label] = line.get_color()
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel="Loss")
    ax.grid(alpha=0.4)
    ax.legend()
    return _save(fig, out)


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
    result: SweepResult | TrainingSweepResult,
    out: str | Path,
    *,
    title: str,
    spread: np.ndarray | None = None,
    label: str = "final loss (log)",
) -> Path:
    """Final loss over a 2-D grid (log axes where log-spaced); x marks divergence.

    For a training sweep, the loss is its :meth:`~TrainingSweepResult.score` (the mean
    over seeds), non-finite cells are marked, and with several seeds a second panel
    shows the spread over seeds (:meth:`~TrainingSweepResult.spread`). ``spread``
    (grid-shaped) draws that panel from other values.
    """
    plt = _plt()
    names = list(result.configs)
    if len(names) != 2:
        raise ValueError(f"sweep_heatmap needs a 2-D grid; this one has {names}.")
    a = result.configs[names[0]][:, 0]
    b = result.configs[names[1]][0, :]
    if isinstance(result, TrainingSweepResult):
        loss = result.score()
        diverged = ~np.isfinite(loss)
        if spread is None and result.loss.shape[-2] > 1:
            spread = result.spread()
    else:
        loss, diverged = result.final_loss, result.diverged
    loss = np.where(diverged, np.nan, loss)
    panels = 1 if spread is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(8 * panels, 6.5), squeeze=False)
    _grid_panel(axes[0, 0], a, b, loss, label, log=True)
    if spread is not None:
        spread = np.where(diverged, np.nan, spread)
        _grid_panel(axes[0, 1], a, b, spread, "spread over seeds (std)", log=False)
    for ax in axes[0]:
        bad = np.argwhere(diverged)
        if bad.size:
            ax.scatter(b[bad[:, 1]], a[bad[:, 0]], marker="x", color="red", s=12, label="diverged")
            ax.legend(loc="upper right")
        ax.set(xlabel=names[1], ylabel=names[0])
    fig.suptitle(title)
    return _save(fig, out)


def _grid_panel(ax, a, b, values, label, log):
    """One heatmap of ``values`` over the grid ``a x b``, log-scaled axes where log-spaced."""
    from matplotlib.colors import LogNorm

    norm = None
    pos = values[np.isfinite(values) & (values > 0)]
    if log:
        values = np.where(values > 0, values, np.nan)
        norm = LogNorm(vmin=max(pos.min(), 1e-300), vmax=pos.max()) if pos.size else None
    mesh = ax.pcolormesh(b, a, values, norm=norm, cmap="viridis", shading="nearest")
    ax.figure.colorbar(mesh, ax=ax, label=label)
    for axis, v in (("y", a), ("x", b)):
        if v.size > 2 and v.min() > 0 and np.allclose(np.diff(np.log(v)), np.log(v[1] / v[0])):
            getattr(ax, f"set_{axis}scale")("log")


def _save(fig, out: str | Path) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
