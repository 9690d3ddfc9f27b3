"""``jax-rmsprop demo``: the four seed articles' examples, reproduced, with their pictures.

Needs float64 (``jax_enable_x64``) for the seed table to print to its last digit:
``main`` turns it on for the demo alone and restores the previous setting.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import optax

from . import compat, problems
from ._jax_compat import enable_x64
from ._rmsprop import rmsprop
from ._run import run


def seed_table(epochs: int = 100, every: int = 20) -> list[str]:
    """Seed 000: x^2 + y^2 from (5, 4), lr 0.1, rho 0.9, eps 1e-6, printed every 20 epochs."""
    traj = run(problems.sphere(), rmsprop(0.1, decay=0.9, eps=1e-6), epochs + 1)
    path = np.asarray(traj.params)
    return [f"Epoch {e}, current state: {path[e + 1]}" for e in range(0, epochs + 1, every)]


def main(out: str | Path, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Runs every demo in float64, writes the pictures under ``out``, returns {name: path}."""
    with enable_x64(True):
        return _all(Path(out), echo)


def _all(out: Path, echo: Callable[[str], None]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    echo("== x^2 + y^2 from (5, 4): RMSProp, lr=0.1, rho=0.9, eps=1e-6, every 20th step")
    for line in seed_table():
        echo(line)
    files: dict[str, Path] = {}
    parts = (_seed_001, _seed_003_cubic, _seed_003_coupled, _seed_002_mlp, _seed_002_digits)
    for part in parts:
        files.update(part(out, echo))
    echo("\nWrote:")
    for name, path in files.items():
        echo(f"  {name:>9}: {path}")
    return files


_TINY = np.finfo(np.float32).tiny  # a loss of 0 has no place on a log axis


def _seed_001(out: Path, echo: Callable[[str], None]) -> dict[str, Path]:
    from . import plots

    echo(
        "\n== x^2 + 10y^2 from (1.5, 1.5), an elongated bowl: gradient descent vs RMSProp"
        " (lr=0.1, 100 epochs)"
    )
    p = problems.elongated()
    gd = run(p, optax.sgd(0.1), 100)
    rms = run(p, rmsprop(0.1, decay=0.9, eps=1e-8), 100)
    for name, t in (("Gradient Descent", gd), ("RMSProp", rms)):
        end = np.asarray(t.params)[-1]
        echo(f"{name:>16}: end {end}, loss {float(t.losses[-1]):.3e}")
    paths = {"Gradient Descent": gd.params, "RMSProp": rms.params}
    return {
        "paths": plots.contour_paths(
            p,
            paths,
            out / "elongated_paths.png",
            title="x² + 10y² from (1.5, 1.5): paths of GD and RMSProp",
        ),
        "losses": plots.loss_curves(
            {"Gradient Descent": gd.losses, "RMSProp": np.maximum(rms.losses, _TINY)},
            out / "elongated_losses.png",
            title="x² + 10y² from (1.5, 1.5): loss per step, GD vs RMSProp",
            xlabel="Step",
            note=(
                "GD with lr 0.1 bounces across the steep y valley for ever (1 - 0.1·20 = -1). "
                "RMSProp's loss falls below float32's smallest normal number (drawn at "
                "1.2e-38); then the gradients vanish, the mean of g² decays by ρ = 0.9 a "
                "step, the effective step lr/√v grows until it overshoots, and the loss "
                "climbs back until new gradients refill v: RMSProp's known near-minimum "
                "instability, not a bug."
            ),
        ),
    }


def _seed_003_cubic(out: Path, echo: Callable[[str], None]) -> dict[str, Path]:
    from . import plots

    echo("\n== x - x^3 from -1, a cubic: RMSProp, lr=0.01, rho=0.9, eps=1e-8, 1000 steps")
    p = problems.cubic()
    cub = run(p, rmsprop(0.01, decay=0.9, eps=1e-8), 1000)
    xs = np.asarray(cub.params)[:, 0]
    reached = int(np.argmax(np.abs(xs + 1 / np.sqrt(3)) < 0.01))
    echo(
        f"x = {xs[-1]:.6f} (local minimum -1/sqrt(3) = {-1 / np.sqrt(3):.6f}), "
        f"within 0.01 after {reached} steps"
    )
    gif = plots.animate_1d(
        p, xs, out / "cubic_rmsprop.gif", title="RMSProp on x − x³ from −1, learning_rate = 0.01"
    )
    return {"animation": gif}


def _seed_003_coupled(out: Path, echo: Callable[[str], None]) -> dict[str, Path]:
    from . import plots

    echo("\n== 2x^2 + 2xy + 2y^2 - 6x from (1, 0), a coupled bowl: RMSProp, lr=0.01, 1000 steps")
    p = problems.coupled()
    cp = run(p, rmsprop(0.01, decay=0.9, eps=1e-8), 1000)
    echo(f"end {np.asarray(cp.params)[-1]} (minimum (2, -1)), loss {float(cp.losses[-1]):.6f}")
    png = plots.contour_paths(
        p,
        {"RMSProp": cp.params},
        out / "coupled_path.png",
        title="RMSProp on 2x² + 2xy + 2y² − 6x from (1, 0)",
        extent=(0.5, 2.5, -1.5, 0.5),
    )
    return {"coupled": png}


def _seed_002_mlp(out: Path, echo: Callable[[str], None]) -> dict[str, Path]:
    from . import plots

    echo("\n== MLP regression (8-32-32-1, 512 samples, full batch, 500 steps, lr=0.01)")
    mlp = problems.mlp()
    curves = {}
    for name, tx in (
        ("RMSProp", compat.keras_rmsprop(learning_rate=0.01)),
        ("Adam", optax.adam(0.01)),
        ("Adagrad", optax.adagrad(0.01)),
    ):
        curves[name] = run(mlp, tx, 500, path=False).losses
        echo(f"{name:>8}: final MSE {float(curves[name][-1]):.4f}")
    png = plots.loss_curves(
        curves,
        out / "mlp_losses.png",
        title="MLP regression: RMSProp vs Adam vs Adagrad",
        xlabel="Step",
    )
    return {"mlp": png}


def _seed_002_digits(out: Path, echo: Callable[[str], None]) -> dict[str, Path]:
    """Seed 002's workflow on real data, with a Flax NNX model.

    Dropout and batch-norm, minibatches, validation, accuracy and a schedule: RMSProp
    against Adagrad, Adadelta and Adam, then a sweep of lr x rho over 3 seeds.
    """
    from . import plots
    from ._fit import fit
    from ._plan import seed_keys

    try:
        task = problems.digits_nnx()
    except ImportError as err:
        echo(f"\n== Digits classifier skipped: {err}")
        return {}
    echo(
        "\n== Digits classifier (Flax NNX: Dense(32) - BatchNorm - ReLU -"
        " Dropout(0.2) - Dense(10); 1437 train / 360 validation, batch 32, 20 epochs,"
        " shuffled)"
    )
    init_key, shuffle_key = seed_keys(0, 0)
    # halved every 10 epochs (45 steps each), from the sweep's best region
    schedule = optax.exponential_decay(5e-3, transition_steps=450, decay_rate=0.5)
    curves = {}
    for name, tx in (
        ("RMSProp", compat.keras_rmsprop(learning_rate=schedule)),
        ("Adagrad", optax.adagrad(0.05)),
        ("Adadelta", optax.adadelta(1.0)),
        ("Adam", optax.adam(1e-3)),
    ):
        hist = fit(
            task.loss,
            task.init(init_key),
            tx,
            task.data,
            epochs=20,
            batch_size=task.batch_size,
            key=shuffle_key,
            validation=task.validation,
        )
        h = hist.history
        curves[f"{name} train"], curves[f"{name} validation"] = h["loss"], h["val_loss"]
        echo(
            f"{name:>9}: loss {h['loss'][-1]:.4f}, validation loss {h['val_loss'][-1]:.4f}, "
            f"validation accuracy {h['val_accuracy'][-1]:.3f}"
        )
    return {
        "digits": plots.loss_curves(
            curves,
            out / "digits_losses.png",
            title="Digits: training and validation loss",
            first=1,  # the loss over epoch 1, then 2...
        ),
        "digits_sweep": _digits_sweep(task, out, echo),
    }


def _digits_sweep(task, out: Path, echo: Callable[[str], None]) -> Path:
    """Seed 002's tuning: learning rate x rho, 3 seeds each, as one program.

    Returns its heatmap of the validation accuracy.
    """
    from . import plots
    from ._tune import tune

    grid = {"learning_rate": np.logspace(-4, -1, 6), "decay": np.array([0.5, 0.8, 0.9, 0.99])}
    res = tune(task, grid, 10, seeds=3)
    best = res.best(1, by="val_accuracy")[0]
    echo(
        f"sweep of 24 configurations x 3 seeds x 10 epochs: best lr {best['learning_rate']:.2g},"
        f" rho {best['decay']:.2g}, validation accuracy {best['score']:.3f}"
        f" ± {best['seed_std']:.2g}"
    )
    return plots.sweep_heatmap(
        res,
        out / "digits_sweep.png",
        title="Digits (NNX, dropout + batch-norm): validation accuracy after 10 epochs, "
        "mean and spread over 3 seeds",
        by="val_accuracy",
    )
