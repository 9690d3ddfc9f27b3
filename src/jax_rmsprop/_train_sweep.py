"""Sweeps of whole trainings: every configuration x seed trained with ``fit``'s epochs.

One compiled program per chunk of configurations: ``vmap`` over the hyperparameters and
the seeds of a ``lax.scan`` over the epochs of :func:`~jax_rmsprop._fit.train_epoch`, so a
cell equals ``fit`` run alone with that configuration and seed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.tree_util import Partial

from ._fit import _check, evaluate, train_epoch
from .problems import Task

LOG_UNIFORM = ("learning_rate", "lr")  # drawn log-uniformly in random search


def to_host(x: jax.Array) -> np.ndarray:
    """The whole of ``x`` on this process, also when it spans other processes' devices."""
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def make_tx(optimizer, names, options, values) -> optax.GradientTransformation:
    """``optimizer(**config, **options)`` for one configuration's (traced) values."""
    return optimizer(**dict(zip(names, values)), **dict(options))


def shard_runs(tree: Any, mesh: Mesh | None) -> Any:
    """Places host arrays with their leading (run/config) axis over all the mesh's devices."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
    return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)


def seed_keys(seed: Any, s: Any) -> tuple[jax.Array, jax.Array]:
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

    def _final(self) -> np.ndarray:
        """Each run's last validation loss (else training loss): ``(*grid, seeds)``."""
        return (self.val_loss if self.val_loss is not None else self.loss)[..., -1]

    def score(self) -> np.ndarray:
        """The ranking score of each cell (grid-shaped), lower is better.

        The final validation loss (else training loss) averaged over seeds; ``inf`` where
        a seed ended non-finite.
        """
        final = self._final()
        return np.where(np.isfinite(final).all(-1), final.mean(-1), np.inf)

    def best(self, k: int = 5) -> list[dict[str, float]]:
        """The ``k`` best cells by :meth:`score`, with the spread over seeds."""
        final = self._final()
        score = self.score().ravel()
        spread = final.reshape(score.size, -1).std(-1)
        rows = []
        for i in np.argsort(score, kind="stable")[:k]:
            row = {name: float(v.ravel()[i]) for name, v in self.configs.items()}
            row |= {"score": float(score[i]), "seed_std": float(spread[i])}
            rows.append(row)
        return rows


class _Run(NamedTuple):
    """One training run's state between epochs (a pytree: vmapped, carried across rungs)."""

    params: Any
    opt_state: Any
    last: tuple[jax.Array, jax.Array]  # the last epoch's (training, validation) loss
    best: jax.Array  # the best validation loss so far (early stopping)
    wait: jax.Array  # epochs since it improved
    ran: jax.Array  # epochs trained
    stopped: jax.Array


def _early_stop(patience: int, prev: _Run, new: _Run) -> _Run:
    """Keras's EarlyStopping on the validation loss, as a freeze that vmap can run.

    A run that has waited ``patience`` epochs without improving stands still from then
    on, repeating its last losses.
    """
    v = new.last[1]
    improved = v < prev.best
    wait = jnp.where(improved, 0, prev.wait + 1)
    moved = new._replace(
        best=jnp.where(improved, v, prev.best), wait=wait, stopped=wait >= patience
    )
    return jax.tree.map(lambda a, b: jnp.where(prev.stopped, a, b), prev, moved)


@functools.partial(
    jax.jit, static_argnames=("optimizer", "names", "options", "epochs", "bs", "patience")
)
def _train_chunk(
    loss,
    init,
    data,
    validation,
    values,
    root,
    seed_of_run,
    rows,
    carry,
    first,
    optimizer,
    names,
    options,
    epochs,
    bs,
    patience,
):
    """``epochs`` epochs from epoch ``first`` of every run in the chunk.

    Starts from ``carry`` (``None``: initialise); returns the new carries and each
    epoch's losses.
    """

    def one(vals, s, rows, carry):
        tx = make_tx(optimizer, names, options, vals)
        init_key, shuffle_key = seed_keys(root, s)
        train_rows, val_rows = (None, None) if rows is None else rows
        if carry is None:
            params = init(init_key)
            inf = jnp.asarray(jnp.inf, jax.tree.leaves(params)[0].dtype)
            zero = jnp.zeros((), jnp.int32)
            carry = _Run(params, tx.init(params), (inf, inf), inf, zero, zero, jnp.zeros((), bool))

        def epoch(carry: _Run, e):
            params, opt_state, f = train_epoch(
                loss, tx, carry.params, carry.opt_state, data, shuffle_key, e, bs, rows=train_rows
            )
            if val_rows is not None:  # cross-validation: the held-out fold of ``data``
                v = evaluate(loss, params, data, bs, rows=val_rows)
            else:
                v = f if validation is None else evaluate(loss, params, validation, bs)
            new = carry._replace(params=params, opt_state=opt_state, last=(f, v), ran=carry.ran + 1)
            carry = new if patience is None else _early_stop(patience, carry, new)
            return carry, carry.last

        return jax.lax.scan(epoch, carry, first + jnp.arange(epochs))

    return jax.vmap(one)(values, seed_of_run, rows, carry)


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
    return train.astype(np.int32), idx.astype(np.int32)


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


@dataclasses.dataclass
class _Plan:
    """Every (configuration, seed, fold) run of a training sweep, ready to train."""

    runs: list[np.ndarray]  # one array of values per hyperparameter, a run per entry
    root: int  # the sweep's ``seed``: run keys are ``seed_keys(root, seed of the run)``
    seeds: int
    k: int  # folds (1 without cross-validation)
    fold_rows: tuple[np.ndarray, np.ndarray] | None
    dtype: Any
    args: tuple  # (loss, init, data, validation)
    static: dict[str, Any]
    chunk: int
    mesh: Mesh | None

    def train(self, idx: np.ndarray, carry: Any, first: int, epochs: int, progress=None):
        """Trains runs ``idx`` for ``epochs`` from ``first``, in chunks.

        The carries stay on the device; the losses come back as ``(len(idx), epochs)``.
        """
        carries, fs, vs = [], [], []
        for start in range(0, idx.size, self.chunk):
            part = np.minimum(np.arange(start, start + self.chunk), idx.size - 1)  # pad
            run = idx[part]
            # host (NumPy) arrays: they go to the mesh's devices, other processes' included
            values = tuple(np.asarray(r[run]).astype(self.dtype) for r in self.runs)
            seed = (run // self.k % self.seeds).astype(np.int32)
            rows = None
            if self.fold_rows is not None:
                rows = tuple(r[run % self.k] for r in self.fold_rows)
            c = None if carry is None else jax.tree.map(lambda a: a[part], carry)  # noqa: B023
            values, seed, rows = shard_runs((values, seed, rows), self.mesh)
            out, (f, v) = _train_chunk(
                *self.args, values, self.root, seed, rows, c, first, **self.static, epochs=epochs
            )
            take = min(self.chunk, idx.size - start)
            carries.append(jax.tree.map(lambda a, n=take: a[:n], out))
            fs.append(to_host(f)[:take])
            vs.append(to_host(v)[:take])
            if progress is not None:
                progress(start + take, idx.size)
        carry = jax.tree.map(lambda *a: jnp.concatenate(a), *carries)
        return carry, np.concatenate(fs), np.concatenate(vs)


def _rungs(n_configs: int, epochs: int, eta: int) -> list[int]:
    """Cumulative epochs at each rung of successive halving.

    As many halvings ``h`` as ``eta`` divides the configurations (and the epochs); rung i
    ends at ``epochs // eta**(h - i)``, the last at ``epochs``.
    """
    h = 0
    while eta ** (h + 1) <= n_configs and epochs // eta ** (h + 1) >= 1:
        h += 1
    return sorted({epochs // eta ** (h - i) for i in range(h + 1)})


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
    halving: int | None = None,
    mesh: Mesh | None = None,
) -> TrainingSweepResult:
    """Trains ``task`` for every configuration of ``grid`` and every seed (see ``sweep``)."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`sweep(steps=...)` (epochs for a Task) must be >= 1; got {epochs!r}.")
    for name, v in (("seeds", seeds), ("patience", patience), ("halving", halving)):
        if (v is not None or name == "seeds") and (not isinstance(v, int) or v < 1):
            raise ValueError(f"`sweep({name}=...)` must be a positive int; got {v!r}.")
    if halving is not None and halving < 2:
        raise ValueError(f"`sweep(halving=...)` must be >= 2; got {halving!r}.")
    names, cells, shape = _configurations(grid, samples, seed)
    plan = _plan(
        task, cells, names, seeds, seed, folds, optimizer, options, chunk_size, patience, mesh
    )
    n_cfg, per_cfg = cells[0].size, seeds * plan.k
    loss = np.full((n_cfg * per_cfg, epochs), np.nan)
    val = np.full_like(loss, np.nan)
    rungs = [epochs] if halving is None else _rungs(n_cfg, epochs, halving)
    alive, carry, done = np.arange(n_cfg), None, 0
    ran = np.zeros(n_cfg * per_cfg, np.int64)
    for r, target in enumerate(rungs):
        idx = (alive[:, None] * per_cfg + np.arange(per_cfg)).ravel()
        carry, f, v = plan.train(idx, carry, done, target - done, progress)
        loss[idx, done:target], val[idx, done:target] = f, v
        ran[idx] = to_host(carry.ran)
        done = target
        if halving is not None and r + 1 < len(rungs):  # keep the best 1/halving, by mean
            score = v[:, -1].reshape(alive.size, per_cfg).mean(-1)
            keep = np.argsort(np.where(np.isfinite(score), score, np.inf), kind="stable")
            keep = np.sort(keep[: max(1, -(-alive.size // halving))])
            alive = alive[keep]
            rows = (keep[:, None] * per_cfg + np.arange(per_cfg)).ravel()
            carry = jax.tree.map(lambda a, rows=rows: a[rows], carry)
    grid_shape = (*shape, per_cfg, epochs)
    has_val = task.validation is not None or folds is not None
    return TrainingSweepResult(
        configs={name: c.reshape(shape) for name, c in zip(names, cells)},
        loss=loss.reshape(grid_shape),
        val_loss=val.reshape(grid_shape) if has_val else None,
        epochs_run=ran.reshape(grid_shape[:-1]),
    )


def _plan(task, cells, names, seeds, seed, folds, optimizer, options, chunk_size, patience, mesh):
    params0 = task.init(seed_keys(seed, 0)[0])
    _check(task.loss, params0, task.data, task.validation, 1, task.batch_size)
    fold_rows = _folds(folds, jax.tree.leaves(task.data)[0].shape[0], task.batch_size)
    k = 1 if folds is None else folds
    # every (configuration, seed, fold) run, the fold varying fastest, then the seed
    runs = [np.repeat(c, seeds * k) for c in cells]
    wrap = lambda f: f if isinstance(f, Partial) else Partial(f)  # noqa: E731
    val = None if task.validation is None else jax.tree.map(jnp.asarray, task.validation)
    return _Plan(
        runs=runs,
        root=seed,
        seeds=seeds,
        k=k,
        fold_rows=fold_rows,
        dtype=jax.tree.leaves(params0)[0].dtype,
        args=(wrap(task.loss), wrap(task.init), jax.tree.map(jnp.asarray, task.data), val),
        static=dict(
            optimizer=optimizer,
            names=names,
            options=tuple(sorted((options or {}).items())),
            bs=int(task.batch_size),
            patience=patience,
        ),
        # a multiple of the mesh's devices, so that every device gets the same share
        chunk=-(-(chunk_size or runs[0].size) // (mesh.size if mesh else 1))
        * (mesh.size if mesh else 1),
        mesh=mesh,
    )
