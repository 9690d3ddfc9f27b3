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


def table(result: SweepResult | TuneResult, k: int = 10) -> str:
    """The best ``k`` rows of ``result`` (its ``best(k)``) as an aligned table.

    For a tuning, configurations without a finished score (not continued by successive
    halving, pruned, or diverged) are not ranked: a last line counts them; the task's
    metrics (``accuracy``, ``val_accuracy``...) follow, each the mean over seeds of its
    final value.
    """
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
        lines.append(
            f"({unranked} more not ranked: not continued by successive halving, pruned, "
            "or diverged)"
        )
    return "\n".join(lines)


def aligned(header: list[str], rows: list[list[str]]) -> str:
    """``header`` and ``rows`` of text as right-aligned columns, a rule under the header."""
    widths = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(header)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in lines)


def to_csv(result: SweepResult | TuneResult) -> str:
    """Every configuration of ``result`` as CSV text, one row each, full precision.

    A training sweep has one row per (configuration, seed), with its final training and
    validation losses.
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
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(result.configs)
    writer.writerow([*names, "seed", "final_loss", "final_val_loss"])
    seeds = result.loss.shape[-2]
    val = result.val_loss if result.val_loss is not None else np.full_like(result.loss, np.nan)
    for i in range(result.configs[names[0]].size):
        values = [repr(float(result.configs[n].ravel()[i])) for n in names]
        for s in range(seeds):
            cell = np.unravel_index(i, result.configs[names[0]].shape) + (s, -1)
            writer.writerow([*values, s, repr(float(result.loss[cell])), repr(float(val[cell]))])
    return out.getvalue()


def write_csv(result: SweepResult | TuneResult, path: str | os.PathLike) -> None:
    """Writes ``to_csv`` of ``result`` to ``path``."""
    with open(path, "w", newline="") as f:
        f.write(to_csv(result))
