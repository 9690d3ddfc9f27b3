"""Sweeps of whole trainings: every configuration x seed trained with ``fit``'s epochs.

One compiled program per chunk of configurations: ``vmap`` over the hyperparameters and
the seeds of a ``lax.scan`` over the epochs of :func:`~jax_rmsprop._fit.train_epoch`, so a
cell equals ``fit`` run alone with that configuration and seed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial

from ._fit import _check, evaluate, train_epoch
from .problems import Task

LOG_UNIFORM = ("learning_rate", "lr")  # drawn log-uniformly in random search


def seed_keys(seed: int, s: int) -> tuple[jax.Array, jax.Array]:
    """Seed ``s``'s (initialisation key, shuffling key): ``fold_in(key(seed), s)``, then 0/1."""
    k = jax.random.fold_in(jax.random.key(seed), s)
    return jax.random.fold_in(k, 0), jax.random.fold_in(k, 1)


@dataclasses.dataclass(frozen=True)
class TrainingSweepResult:
    """The outcome of a training sweep; arrays are shaped ``(*grid, seeds, epochs)``.

    Attributes:
      configs: hyperparameter name -> array of its value in each cell (grid-shaped).
      loss: each epoch's training loss (batch-size-weighted mean, as in ``fit``).
      val_loss: each epoch's validation loss, or ``None`` without validation data.
      epochs_run: shape ``(*grid, seeds)``: epochs trained before early stopping (all of
        them without ``patience``); later epochs repeat the last losses.
    """

    configs: dict[str, np.ndarray]
    loss: np.ndarray
    val_loss: np.ndarray | None
    epochs_run: np.ndarray

    def score(self) -> np.ndarray:
        """The ranking score of each cell (grid-shaped), lower is better.

        The final validation loss (else training loss) averaged over seeds; ``inf`` where
        a seed ended non-finite.
        """
        final = (self.val_loss if self.val_loss is not None else self.loss)[..., -1]
        return np.where(np.isfinite(final).all(-1), final.mean(-1), np.inf)

    def best(self, k: int = 5) -> list[dict[str, float]]:
        """The ``k`` best cells by :meth:`score`, with the spread over seeds."""
        final = (self.val_loss if self.val_loss is not None else self.loss)[..., -1]
        score = self.score().ravel()
        spread = final.reshape(score.size, -1).std(-1)
        rows = []
        for i in np.argsort(score, kind="stable")[:k]:
            row = {name: float(v.ravel()[i]) for name, v in self.configs.items()}
            row |= {"score": float(score[i]), "seed_std": float(spread[i])}
            rows.append(row)
        return rows


def _early_stop(patience, prev, new):
    """Keras's EarlyStopping on the validation loss, as a freeze that vmap can run.

    ``prev``/``new``: (params, opt_state, last (f, v), best v, epochs without improvement,
    epochs run, stopped). A run that has waited ``patience`` epochs without improving
    stands still from then on, repeating its last losses.
    """
    *_, best, wait, ran, stopped = prev
    params, opt_state, fv, _, _, _, _ = new
    improved = fv[1] < best
    best = jnp.where(improved, fv[1], best)
    wait = jnp.where(improved, 0, wait + 1)
    moved = (params, opt_state, fv, best, wait, ran + 1, wait >= patience)
    return jax.tree.map(lambda a, b: jnp.where(stopped, a, b), prev, moved)


@functools.partial(
    jax.jit, static_argnames=("optimizer", "names", "options", "epochs", "bs", "patience")
)
def _train_chunk(
    loss,
    init,
    data,
    validation,
    values,
    keys,
    rows,
    optimizer,
    names,
    options,
    epochs,
    bs,
    patience,
):
    def one(vals, init_key, shuffle_key, rows):
        tx = optimizer(**dict(zip(names, vals)), **dict(options))
        params = init(init_key)
        train_rows, val_rows = (None, None) if rows is None else rows

        def epoch(carry, e):
            params, opt_state = carry[:2]
            params, opt_state, f = train_epoch(
                loss, tx, params, opt_state, data, shuffle_key, e, bs, rows=train_rows
            )
            if val_rows is not None:  # cross-validation: the held-out fold of ``data``
                v = evaluate(loss, params, data, bs, rows=val_rows)
            else:
                v = f if validation is None else evaluate(loss, params, validation, bs)
            new = (params, opt_state, (f, v), *carry[3:5], carry[5] + 1, carry[6])
            carry = new if patience is None else _early_stop(patience, carry, new)
            return carry, carry[2]

        inf = jnp.asarray(jnp.inf, jax.tree.leaves(params)[0].dtype)
        zero = jnp.zeros((), jnp.int32)
        start = (params, tx.init(params), (inf, inf), inf, zero, zero, jnp.zeros((), bool))
        last, (fs, vs) = jax.lax.scan(epoch, start, jnp.arange(epochs))
        return fs, vs, last[5]

    return jax.vmap(one)(values, *keys, rows)


def _folds(folds: int | None, n: int, batch_size: int):
    """(training rows, validation rows) of each of ``folds`` folds, as ``(folds, .)`` arrays.

    Fold f holds out examples ``[f m, (f + 1) m)`` with ``m = n // folds`` and trains on the
    other ``(folds - 1) m`` of the first ``folds m`` (the last ``n mod folds`` are unused).
    """
    if folds is None:
        return None
    if not isinstance(folds, int) or not 2 <= folds <= n:
        raise ValueError(f"`sweep(folds=...)` must be an int in [2, {n}]; got {folds!r}.")
    m = n // folds
    if batch_size > (folds - 1) * m:
        raise ValueError(
            f"`sweep(folds={folds})` leaves {(folds - 1) * m} training examples per fold, "
            f"fewer than the task's batch_size {batch_size}."
        )
    idx = np.arange(folds * m).reshape(folds, m)
    train = np.stack([np.delete(idx, f, axis=0).ravel() for f in range(folds)])
    return jnp.asarray(train, jnp.int32), jnp.asarray(idx, jnp.int32)


def _configurations(grid, samples, seed):
    """The configurations to train: names, one flat array per name, and the result shape.

    The grid's Cartesian product, or ``samples`` random draws from each ``(low, high)``
    range (log-uniform for the learning rate).
    """
    names = tuple(grid)
    if samples is None:
        axes = [np.asarray(grid[n]) for n in names]
        shape = tuple(a.size for a in axes)
        return names, [m.ravel() for m in np.meshgrid(*axes, indexing="ij")], shape
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"`sweep(samples=...)` must be a positive int; got {samples!r}.")
    rng = np.random.default_rng(seed)
    cells = []
    for name in names:
        bounds = np.asarray(grid[name], np.float64)
        log = name in LOG_UNIFORM
        if bounds.shape != (2,) or not bounds[0] <= bounds[1] or (log and bounds[0] <= 0):
            raise ValueError(
                f"`sweep(grid={{{name!r}: ...}})` with `samples` must be a range (low, high), "
                f"low <= high{' and low > 0 (log-uniform)' if log else ''}; got {grid[name]!r}."
            )
        draw = rng.uniform(*(np.log(bounds) if log else bounds), size=samples)
        cells.append(np.exp(draw) if log else draw)
    return names, cells, (samples,)


def sweep_task(
    task: Task,
    grid: Mapping[str, Any],
    epochs: int,
    *,
    seeds: int = 1,
    seed: int = 0,
    optimizer: Callable[..., optax.GradientTransformation],
    options: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    samples: int | None = None,
    patience: int | None = None,
    folds: int | None = None,
) -> TrainingSweepResult:
    """Trains ``task`` for every configuration of ``grid`` and every seed (see ``sweep``)."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`sweep(steps=...)` (epochs for a Task) must be >= 1; got {epochs!r}.")
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"`sweep(seeds=...)` must be a positive int; got {seeds!r}.")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ValueError(f"`sweep(patience=...)` must be a positive int; got {patience!r}.")
    names, cells, shape = _configurations(grid, samples, seed)
    params0 = task.init(seed_keys(seed, 0)[0])
    _check(task.loss, params0, task.data, task.validation, epochs, task.batch_size)
    fold_rows = _folds(folds, jax.tree.leaves(task.data)[0].shape[0], task.batch_size)
    k = 1 if folds is None else folds
    dtype = jax.tree.leaves(params0)[0].dtype
    # every (configuration, seed, fold) run, the fold varying fastest, then the seed
    runs = [np.repeat(c, seeds * k) for c in cells]
    init_keys, shuffle_keys = (
        jnp.stack(ks) for ks in zip(*(seed_keys(seed, s) for s in range(seeds)))
    )
    n_runs = runs[0].size
    chunk = chunk_size or n_runs
    static = dict(
        optimizer=optimizer,
        names=names,
        options=tuple(sorted((options or {}).items())),
        epochs=epochs,
        bs=int(task.batch_size),
        patience=patience,
    )
    loss = task.loss if isinstance(task.loss, Partial) else Partial(task.loss)
    init = task.init if isinstance(task.init, Partial) else Partial(task.init)
    data = jax.tree.map(jnp.asarray, task.data)
    val = None if task.validation is None else jax.tree.map(jnp.asarray, task.validation)
    out_f, out_v, out_n = [], [], []
    for start in range(0, n_runs, chunk):
        idx = np.minimum(np.arange(start, start + chunk), n_runs - 1)  # pad with the last run
        values = tuple(jnp.asarray(r[idx], dtype) for r in runs)
        keys = (init_keys[idx // k % seeds], shuffle_keys[idx // k % seeds])
        rows = None if fold_rows is None else tuple(r[idx % k] for r in fold_rows)
        fs, vs, ran = _train_chunk(loss, init, data, val, values, keys, rows, **static)
        take = min(chunk, n_runs - start)
        out_f.append(np.asarray(fs)[:take])
        out_v.append(np.asarray(vs)[:take])
        out_n.append(np.asarray(ran)[:take])
        if progress is not None:
            progress(start + take, n_runs)
    grid_shape = (*shape, seeds * k, epochs)
    return TrainingSweepResult(
        configs={name: c.reshape(shape) for name, c in zip(names, cells)},
        loss=np.concatenate(out_f).reshape(grid_shape),
        val_loss=None
        if val is None and folds is None
        else np.concatenate(out_v).reshape(grid_shape),
        epochs_run=np.concatenate(out_n).reshape(grid_shape[:-1]),
    )
