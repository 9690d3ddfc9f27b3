"""Ratios and markdown tables of a quality study (NumPy only: the torch script uses it too).

A study is a dict: ``grid`` (hyperparameter name -> values), ``seeds``, ``epochs``,
``n_params`` and ``formats`` (name -> ``bytes_per_param``, ``final_val_loss`` shaped
``(*grid, seeds)``, ``seconds``); the first format is the reference of the ratios.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np


def summarise(study: dict[str, Any], chance: float) -> dict[str, Any]:
    """Ratios to the first format (per configuration, and the median over all runs) and
    divergences.

    A run diverged if its final validation loss is not finite or above ``chance`` (the
    loss of a uniform guess) while the reference's, same seed and configuration, is below
    it.
    """
    fmts = study["formats"]
    base = np.asarray(next(iter(fmts.values()))["final_val_loss"])
    converged = np.isfinite(base) & (base < chance)
    summary = {}
    for name, fmt in fmts.items():
        final = np.asarray(fmt["final_val_loss"])
        ratio = final / base
        bad = ~(np.isfinite(final) & (final < chance)) & converged
        summary[name] = {
            "median_ratio": float(np.median(ratio)),
            "worst_ratio": float(np.max(np.where(np.isfinite(ratio), ratio, np.inf))),
            "config_median_ratio": np.median(ratio, axis=-1).tolist(),
            "config_median_loss": np.median(final, axis=-1).tolist(),
            "diverged": [list(map(int, ix)) for ix in np.argwhere(bad)],
        }
    return summary


def config_labels(grid: dict[str, list[float]]) -> list[str]:
    """``"lr 0.001, decay 0.9"`` for each cell of the grid, in C order."""
    names = {"learning_rate": "lr"}
    values = np.stack(np.meshgrid(*grid.values(), indexing="ij"), -1).reshape(-1, len(grid))
    return [", ".join(f"{names.get(k, k)} {v:g}" for k, v in zip(grid, row)) for row in values]


def table(study: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """One markdown row per format: bytes, the median and worst ratio, per-configuration
    medians (ratio and, in brackets, the final validation loss), divergences, seconds."""
    heads = config_labels(study["grid"])
    lines = [
        "| state | bytes/param | median ratio | worst | " + " | ".join(heads) + " | diverged | s |",
        "|---" * (len(heads) + 6) + "|",
    ]
    for name, s in summary.items():
        fmt = study["formats"][name]
        per = np.asarray(s["config_median_ratio"]).ravel()
        loss = np.asarray(s["config_median_loss"]).ravel()
        cols = " | ".join(f"{r:.3f} ({v:.3f})" for r, v in zip(per, loss))
        lines.append(
            f"| {name} | {fmt['bytes_per_param']:.3f} | **{s['median_ratio']:.3f}** | "
            f"{s['worst_ratio']:.3f} | {cols} | {len(s['diverged'])} | {fmt['seconds']:.0f} |"
        )
    return lines


def markdown(studies: dict[str, Any], summaries: dict[str, Any], marker: str) -> str:
    """The tables of every study, between ``<!-- marker:begin -->`` and ``:end``."""
    lines = [f"<!-- {marker}:begin -->"]
    for key, study in studies.items():
        ref = next(iter(study["formats"]))
        lines += [
            "",
            f"**{key}** ({study['n_params']:,} parameters, {study['epochs']} epochs, "
            f"{study['seeds']} seeds; a cell: the median over seeds of final validation loss "
            f"/ {ref}'s of the same seed, and in brackets the median final validation loss):",
            "",
            *table(study, summaries[key]),
        ]
    lines += ["", f"<!-- {marker}:end -->"]
    return "\n".join(lines)


def write_results(text: str, path: pathlib.Path, marker: str) -> None:
    """Replaces the ``marker`` block in ``path`` (it must be there) with ``text``."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    old = path.read_text()
    if begin not in old or end not in old:
        raise SystemExit(f"{path} has no {begin} ... {end} block to replace")
    head, rest = old.split(begin, 1)
    path.write_text(head + text + rest.split(end, 1)[1])
