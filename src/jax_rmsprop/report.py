"""Sweep results as text: an aligned table of the best configurations, and CSV.

Output lives here, at the edge, not in the sweep itself; the CLI uses both.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from ._sweep import SweepResult
from ._tune_result import TuneResult

_OUTCOMES = ("final_loss", "steps_to_tol", "diverged")


def _fmt(v: float | int | bool) -> str:
    return str(v) if isinstance(v, bool | int) else f"{v:.4g}"


def table(result: SweepResult | TuneResult, k: int = 10, *, steps_to_tol: bool = True) -> str:
    """The best ``k`` rows of ``result`` (its ``best(k)``) as an aligned table.

    For a tuning, configurations without a finished score (not continued by successive
    halving, pruned, or diverged) are not ranked: a last line counts them by reason; the task's
    metrics (``accuracy``, ``val_accuracy``...) follow, each the mean over seeds of its
    final value. For a problem sweep, ``steps_to_tol`` reads ``never`` where the
    configuration did not come within ``tol`` (left out with ``steps_to_tol=False``, for
    a sweep without ``tol``), and a last line says how many configurations tie at a final
    loss of exactly 0 (the minimum, to floating-point precision): their order among
    themselves means nothing.
    """
    if isinstance(result, SweepResult):
        return _problem_table(result, k, steps_to_tol)
    rows = result.best(k)
    unranked = 0
    if isinstance(result, TuneResult):
        unranked = int((~np.isfinite(result.score())).sum())
        rows = [dict(r) for r in rows]
        order = np.argsort(result.score().ravel(), kind="stable")[: len(rows)]
        for name, values in result.metrics.items():  # the task's metrics, mean over seeds
            mean = values[..., -1].mean(-1).ravel()
            for r, i in zip(rows, order):
                r[name] = float(mean[i])
        rows = [r for r in rows if np.isfinite(r["score"])]
    if not rows:
        return "(empty sweep)" if not unranked else f"(none of {unranked} finished)"
    cols = list(rows[0])
    lines = aligned(cols, [[_fmt(r[c]) for c in cols] for r in rows]).splitlines()
    if unranked:
        lines.append(f"({unranked} more not ranked: {_unranked(result)})")
    return "\n".join(lines)


def _unranked(result: TuneResult) -> str:
    """Why a tuning's configurations without a score have none, counted by reason."""
    bad = ~np.isfinite(result.score())
    epochs = result.loss.shape[-1]
    pruned = bad & (result.pruned if result.pruned is not None else False)
    untrained = bad & ~pruned & (result.epochs_run.max(-1) == 0)
    halted = bad & ~pruned & ~untrained & (result.epochs_run.min(-1) < epochs)
    halted &= np.isnan(result.loss[..., -1]).any(-1)
    diverged = bad & ~pruned & ~untrained & ~halted
    parts = [(halted, "halted early by successive halving"), (pruned, "pruned"),
             (untrained, "not trained yet"), (diverged, "diverged")]  # fmt: skip
    return ", ".join(f"{int(m.sum())} {what}" for m, what in parts if m.any())


def _problem_table(result: SweepResult, k: int, steps_to_tol: bool) -> str:
    rows = result.best(k)
    if not rows:
        return "(empty sweep)"
    cols = [c for c in rows[0] if steps_to_tol or c != "steps_to_tol"]
    text = lambda r, c: (  # noqa: E731
        "never" if c == "steps_to_tol" and r[c] < 0 else _fmt(r[c])
    )
    lines = aligned(cols, [[text(r, c) for c in cols] for r in rows]).splitlines()
    zero = int(((result.final_loss == 0) & ~result.diverged).sum())
    if zero > 1:
        lines.append(
            f"({zero} configurations end at a loss of exactly 0, the minimum to floating-"
            "point precision: tied, in grid order"
            + ("; ranked by steps_to_tol first" if steps_to_tol else "; a tol (--tol) "
               "ranks them by the steps they take to get within it")
            + ")"
        )  # fmt: skip
    return "\n".join(lines)


def aligned(header: list[str], rows: list[list[str]]) -> str:
    """``header`` and ``rows`` of text as right-aligned columns, a rule under the header."""
    widths = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(header)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in lines)


def to_csv(result: SweepResult | TuneResult) -> str:
    """Every configuration of ``result`` as CSV text, one row each, full precision.

    A training sweep has one row per (configuration, seed), with its training and
    validation losses after the last epoch it trained, ``epochs_run`` and ``status``
    (``finished``, ``halted`` by successive halving, ``pruned``...: ``_training_csv``).
    """
    if isinstance(result, TuneResult):
        return _training_csv(result)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(result.configs)
    writer.writerow([*names, *_OUTCOMES])
    columns = [result.configs[n].ravel() for n in names]
    columns += [np.ravel(getattr(result, o)) for o in _OUTCOMES]
    for row in zip(*columns):
        *values, final, steps, diverged = row
        writer.writerow(
            [repr(float(v)) for v in values]
            + [repr(float(final)), int(steps), str(bool(diverged)).lower()]
        )
    return out.getvalue()


def _training_csv(result: TuneResult) -> str:
    """One row per run: its final losses (after the last epoch it trained) and status.

    ``status``: ``finished`` (every epoch), ``halted`` (successive halving did not continue
    it past ``epochs_run``), ``pruned`` (an Optuna pruner stopped it), ``stopped early``
    (``patience``), ``diverged`` (a non-finite loss) or ``not trained`` (interrupted).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(result.configs)
    writer.writerow([*names, "seed", "final_loss", "final_val_loss", "epochs_run", "status"])
    grid, seeds, epochs = result.loss.shape[:-2], result.loss.shape[-2], result.loss.shape[-1]
    val = result.val_loss if result.val_loss is not None else np.full_like(result.loss, np.nan)
    for i in range(int(np.prod(grid, dtype=np.int64))):
        values = [repr(float(result.configs[n].ravel()[i])) for n in names]
        for s in range(seeds):
            cell: tuple[int, ...] = (*(int(c) for c in np.unravel_index(i, grid)), s)
            ran = int(result.epochs_run[cell])
            last = (*cell, max(ran, 1) - 1)
            loss, v = float(result.loss[last]), float(val[last])
            writer.writerow([*values, s, repr(loss), repr(v), ran, _status(result, i, cell,
                             ran, epochs, loss, v)])  # fmt: skip
    return out.getvalue()


def _status(result: TuneResult, i: int, cell: tuple, ran: int, epochs: int, loss, val) -> str:
    if ran == 0:  # (an interrupted sweep's runs still to train)
        return "not trained"
    if not np.isfinite(loss) or (result.val_loss is not None and not np.isfinite(val)):
        return "diverged"
    if result.pruned is not None and result.pruned[i]:
        return "pruned"
    if ran < epochs:  # epochs it did not train are NaN after halving, repeated after patience
        return "halted" if np.isnan(result.loss[(*cell, -1)]) else "stopped early"
    return "finished"


def write_csv(result: SweepResult | TuneResult, path: str | os.PathLike) -> None:
    """Writes ``to_csv`` of ``result`` to ``path``."""
    with open(path, "w", newline="") as f:
        f.write(to_csv(result))
