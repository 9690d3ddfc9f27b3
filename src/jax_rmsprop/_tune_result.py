"""The outcome of ``tune``: every run's per-epoch logs, ranked, as arrays or a DataFrame."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from ._inputs import direction


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """The outcome of a training sweep; arrays are shaped ``(*grid, seeds, epochs)``.

    Attributes:
      configs: hyperparameter name -> array of its value in each cell (grid-shaped).
      loss: each epoch's training loss (batch-size-weighted mean, as in [`fit`][jax_rmsprop.fit]).
      val_loss: each epoch's validation loss, or ``None`` without validation data.
      epochs_run: shape ``(*grid, seeds)``: epochs trained before early stopping (all of
        them without ``patience``); later epochs repeat the last losses.
      metrics: each metric the task's loss returns, per epoch, and its ``val_`` twin
        (evaluation mode on the validation data), shaped like ``loss``.
      params: with ``tune(..., keep_params=True)``, every run's trained parameters: a
        pytree whose leaves have the leading axes ``(*grid, seeds)`` (runs that early
        stopping or successive halving stopped hold their parameters from then).
      model_state: likewise, every run's model state (batch-norm statistics...), or None.
      study: with ``tune(sampler=...)``, the ``optuna.Study`` (every trial of this call
        told: ``COMPLETE`` with its score, or ``PRUNED``); the result's configuration
        axis then holds this call's trials, in the order asked.
      trial: (sampler) each configuration's Optuna trial number.
      pruned: (sampler) whether the study's pruner stopped the trial.
    """

    configs: dict[str, np.ndarray]
    loss: np.ndarray
    val_loss: np.ndarray | None
    epochs_run: np.ndarray
    metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    params: Any = None
    model_state: Any = None
    study: Any = None
    trial: np.ndarray | None = None
    pruned: np.ndarray | None = None

    def history(self, name: str) -> np.ndarray:
        """``"loss"``, ``"val_loss"`` or a metric, ``(*grid, seeds, epochs)``."""
        if name == "loss":
            return self.loss
        if name == "val_loss" and self.val_loss is not None:
            return self.val_loss
        if name in self.metrics:
            return self.metrics[name]
        known = ["loss", *(["val_loss"] if self.val_loss is not None else []), *self.metrics]
        raise ValueError(f"`by={name!r}` is not recorded by this sweep; it has {known}.")

    def _final(self, by: str | None = None) -> np.ndarray:
        """Each run's last value of ``by`` (default: validation loss, else training loss)."""
        if by is None:
            return (self.val_loss if self.val_loss is not None else self.loss)[..., -1]
        return self.history(by)[..., -1]

    def score(self, by: str | None = None, mode: str = "auto") -> np.ndarray:
        """The ranking score of each cell (grid-shaped), lower is better.

        The final value of ``by`` (default: the validation loss, else the training loss)
        averaged over seeds, negated where higher is better (``mode``: ``"min"``,
        ``"max"``, or ``"auto"``: accuracy-like names are maximised); ``inf`` where a
        seed ended non-finite, and for trials a pruner stopped.
        """
        final = self._final(by) * (1.0 if by is None else direction(by, mode, "best"))
        score = np.where(np.isfinite(final).all(-1), final.mean(-1), np.inf)
        if self.pruned is not None:  # stopped early by a pruner: ranked after the finished
            score = np.where(self.pruned, np.inf, score)
        return score

    def spread(self, by: str | None = None) -> np.ndarray:
        """The standard deviation over seeds of each cell's final value (grid-shaped)."""
        final = self._final(by)
        with np.errstate(invalid="ignore"):  # a diverged (inf) seed: no spread to give
            return np.where(np.isfinite(final).all(-1), final.std(-1), np.nan)

    def best_params(self, k: int = 1, by: str | None = None, mode: str = "auto") -> list:
        """The ``k`` best cells' ``(row, params, model_state)``, as ``best`` ranks them.

        ``params`` (and ``model_state``) have a leading seed axis; needs
        ``tune(..., keep_params=True)``. Load an NNX module with ``nnx.update(model,
        jax.tree.map(lambda a: a[s], params))`` for seed ``s``.
        """
        if self.params is None:
            raise ValueError("`best_params` needs the sweep run with `keep_params=True`.")
        order = np.argsort(self.score(by, mode).ravel(), kind="stable")[:k]
        grid = self.loss.shape[:-2]
        out = []
        for row, i in zip(self.best(k, by, mode), order):
            cell = np.unravel_index(i, grid)
            pick = lambda tree: jax.tree.map(lambda a: a[cell], tree)  # noqa: E731, B023
            out.append((row, pick(self.params), pick(self.model_state)))
        return out

    def frame(self, per_epoch: bool = False) -> Any:
        """Every run as a row of a pandas ``DataFrame``: query it, group it, plot it.

        Columns: the hyperparameters, ``trial`` (with a sampler), ``seed`` (the index on
        the seed axis: seeds x folds with cross-validation, fold fastest),
        ``epochs_run``, ``pruned`` (with a sampler) and the last trained value of
        ``loss``, ``val_loss`` and every metric. With ``per_epoch``,
        one row per run and epoch (an ``epoch`` column, 1-based) with that epoch's values;
        epochs a run did not train (successive halving, pruning) are left out.
        """
        import pandas as pd

        grid, per_cfg, epochs = self.loss.shape[:-2], self.loss.shape[-2], self.loss.shape[-1]
        n = int(np.prod(grid, dtype=np.int64))
        cfg = np.repeat(np.arange(n), per_cfg)
        cols: dict[str, np.ndarray] = {k: v.reshape(n)[cfg] for k, v in self.configs.items()}
        if self.trial is not None:
            cols["trial"] = self.trial[cfg]
        cols["seed"] = np.tile(np.arange(per_cfg), n)
        cols["epochs_run"] = self.epochs_run.reshape(-1)
        if self.pruned is not None:
            cols["pruned"] = self.pruned[cfg]
        names = ["loss", *(["val_loss"] if self.val_loss is not None else []), *self.metrics]
        hist = {m: self.history(m).reshape(n * per_cfg, epochs) for m in names}
        if not per_epoch:
            last = np.maximum(cols["epochs_run"], 1) - 1
            rows = np.arange(n * per_cfg)
            return pd.DataFrame(cols | {m: h[rows, last] for m, h in hist.items()})
        long = {k: np.repeat(v, epochs) for k, v in cols.items()}
        long["epoch"] = np.tile(np.arange(1, epochs + 1), n * per_cfg)
        long |= {m: h.reshape(-1) for m, h in hist.items()}
        out = pd.DataFrame(long)
        return out[out["epoch"] <= out["epochs_run"]].reset_index(drop=True)

    def best(self, k: int = 5, by: str | None = None, mode: str = "auto") -> list[dict[str, float]]:
        """The ``k`` best cells by ``score`` (of ``by``), with the spread over seeds.

        Each row holds the configuration, ``score`` (the mean final value of ``by``,
        as recorded) and ``seed_std``.
        """
        score = self.score(by, mode).ravel()
        sign = 1.0 if by is None else direction(by, mode, "best")
        spread = self.spread(by).ravel()
        rows = []
        for i in np.argsort(score, kind="stable")[:k]:
            row = {name: v.ravel()[i].item() for name, v in self.configs.items()}
            row |= {"score": float(score[i] * sign), "seed_std": float(spread[i])}
            rows.append(row)
        return rows
