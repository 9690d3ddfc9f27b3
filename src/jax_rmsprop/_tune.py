"""Tuning: whole trainings of a ``Task``, every configuration x seed with ``fit``'s epochs.

One compiled program per chunk of configurations: ``vmap`` over the hyperparameters and
the seeds of a ``lax.scan`` over the epochs of ``train_epoch``, so a
cell equals ``fit`` run alone with that configuration and seed. The configurations come
from a grid, random draws, or an Optuna sampler's batches (``_search``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.tree_util import Partial

from . import _resume
from ._epoch import evaluate, train_epoch
from ._faults import translate
from ._inputs import batch_of, check_data, direction, loss_output
from ._model import FUNCTIONAL, NNX, Model, split_params
from ._model import split as split_model
from ._signals import Interrupts
from ._space import check_traceable, draw, make_tx, shard_runs
from ._space import grid as grid_cells
from ._sweep_progress import Progress, SweepInterrupted, fingerprint
from ._transform import rmsprop
from .checkpoint import _host as to_host
from .checkpoint import key_data, with_keys
from .problems import Problem, Task


def seed_keys(seed: Any, s: Any) -> tuple[jax.Array, jax.Array]:
    """Seed ``s``'s (initialisation key, shuffling key): ``fold_in(key(seed), s)``, then 0/1."""
    k = jax.random.fold_in(jax.random.key(seed), s)
    return jax.random.fold_in(k, 0), jax.random.fold_in(k, 1)


def model_key(seed: Any, s: Any) -> jax.Array:
    """Seed ``s``'s key for a functional model's randomness (``fit(rng=...)``): then 2."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), s), 2)


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """The outcome of a training sweep; arrays are shaped ``(*grid, seeds, epochs)``.

    Attributes:
      configs: hyperparameter name -> array of its value in each cell (grid-shaped).
      loss: each epoch's training loss (batch-size-weighted mean, as in ``fit``).
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


class _Run(NamedTuple):
    """One training run's state between epochs (a pytree: vmapped, carried across rungs)."""

    params: Any
    state: Any  # the model state (batch-norm statistics, RNG streams), or None
    opt_state: Any
    last: tuple[dict, dict]  # the last epoch's (training, validation) logs: loss, metrics
    best: jax.Array  # the best validation loss so far (early stopping)
    wait: jax.Array  # epochs since it improved
    ran: jax.Array  # epochs trained
    stopped: jax.Array


def _fresh_run(model: Model, metrics: tuple[str, ...], init, tx, key) -> _Run:
    """A run before its first epoch: ``init(key)``, ``tx.init``, no losses yet."""
    params, state = _initial(model, init, key)
    inf = jnp.asarray(jnp.inf, jax.tree.leaves(params)[0].dtype)
    logs = {"loss": inf} | {m: jnp.full((), jnp.nan, inf.dtype) for m in metrics}
    zero = jnp.zeros((), jnp.int32)
    return _Run(params, state, tx.init(params), (logs, logs), inf, zero, zero, jnp.zeros((), bool))


def _initial(model: Model, init, key) -> tuple[Any, Any]:
    """``(params, model state)`` of a fresh run: ``init(key)`` split as the model's kind says."""
    made = init(key)
    if model.kind == NNX:
        return split_params(made)[1:]
    if model.kind == FUNCTIONAL:
        return made
    return made, None


def _early_stop(patience: int, prev: _Run, new: _Run) -> _Run:
    """Keras's EarlyStopping on the validation loss, as a freeze that vmap can run.

    A run that has waited ``patience`` epochs without improving stands still from then
    on, repeating its last losses.
    """
    v = new.last[1]["loss"]
    improved = v < prev.best
    wait = jnp.where(improved, 0, prev.wait + 1)
    moved = new._replace(
        best=jnp.where(improved, v, prev.best), wait=wait, stopped=wait >= patience
    )
    return jax.tree.map(lambda a, b: jnp.where(prev.stopped, a, b), prev, moved)


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "metrics",
        "optimizer",
        "names",
        "options",
        "epochs",
        "bs",
        "patience",
    ),
)
def _train_chunk(
    init,
    data,
    validation,
    values,
    root,
    seed_of_run,
    rows,
    carry,
    first,
    model,
    metrics,
    optimizer,
    names,
    options,
    epochs,
    bs,
    patience,
):
    """``epochs`` epochs from epoch ``first`` of every run in the chunk.

    Starts from ``carry`` (``None``: initialise); returns the new carries and each
    epoch's (training, validation) logs.
    """

    def one(vals, s, rows, carry):
        tx = make_tx(optimizer, names, options, vals)
        init_key, shuffle_key = seed_keys(root, s)
        rng = model_key(root, s) if model.kind == FUNCTIONAL else None
        train_rows, val_rows = (None, None) if rows is None else rows
        fresh = functools.partial(_fresh_run, model, metrics, init, tx)
        if carry is None:
            carry = fresh(init_key)
        else:  # from the host: keys (NNX RNG streams) come back as their data
            carry = with_keys(carry, jax.eval_shape(fresh, init_key))

        def epoch(carry: _Run, e):
            params, state, opt_state, logs = train_epoch(
                model, tx, carry.params, carry.state, carry.opt_state, data, shuffle_key, e, bs,
                rows=train_rows, rng=rng,
            )  # fmt: skip
            if val_rows is not None:  # cross-validation: the held-out fold of ``data``
                val = evaluate(model, params, state, data, bs, rows=val_rows)
            else:
                val = logs if validation is None else evaluate(model, params, state, validation, bs)
            new = carry._replace(
                params=params, state=state, opt_state=opt_state, last=(logs, val),
                ran=carry.ran + 1,
            )  # fmt: skip
            if patience is not None:
                carry = _early_stop(patience, carry, new)
            else:  # a run stopped from outside (an Optuna pruner) stands still
                carry = jax.tree.map(lambda a, b: jnp.where(carry.stopped, a, b), carry, new)
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
        raise ValueError(f"`tune(folds=...)` must be an int in [2, {n}]; got {folds!r}.")
    m = n // folds
    if batch_size > (folds - 1) * m:
        raise ValueError(
            f"`tune(folds={folds})` leaves {(folds - 1) * m} training examples per fold, "
            f"fewer than the task's batch_size {batch_size}."
        )
    idx = np.arange(folds * m).reshape(folds, m)
    train = np.stack([np.delete(idx, f, axis=0).ravel() for f in range(folds)])
    return train.astype(np.int32), idx.astype(np.int32)


MEMORY_FRACTION = 0.5  # of the memory free when a sweep starts, for its chunks


def _free_bytes(device: jax.Device, sharing: int) -> int:
    """Memory ``device`` can give a sweep: its free memory, or on CPU a share of the RAM.

    CPU devices hold the host's memory (``MemAvailable``), split among the ``sharing``
    devices the sweep runs on.
    """
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # not Linux
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return free // sharing


def _memory_budget(mesh: Mesh | None) -> int:
    """Bytes one device may use for one chunk (the least free of the devices it runs on)."""
    devices = [jax.local_devices()[0]] if mesh is None else list(mesh.local_devices)
    budget = int(MEMORY_FRACTION * min(_free_bytes(d, len(devices)) for d in devices))
    if mesh is not None and jax.process_count() > 1:  # every process must pick the same
        budget = int(multihost_utils.process_allgather(np.int64(budget)).min())
    return budget


@dataclasses.dataclass
class _Plan:
    """Every (configuration, seed, fold) run of a training sweep, ready to train."""

    runs: list[np.ndarray]  # one array of values per hyperparameter, a run per entry
    root: int  # the sweep's ``seed``: run keys are ``seed_keys(root, seed of the run)``
    seeds: int
    k: int  # folds (1 without cross-validation)
    fold_rows: tuple[np.ndarray, np.ndarray] | None
    dtype: Any
    args: tuple  # (init, data, validation)
    static: dict[str, Any]
    chunk_size: int | None  # the user's; None: sized by memory (``chunk``)
    mesh: Mesh | None
    params0: Any  # seed 0's initial parameters (checked, and fingerprinted)

    @property
    def _devices(self) -> int:
        return self.mesh.size if self.mesh else 1

    def _round(self, n: int) -> int:
        """``n`` rounded up to a multiple of the mesh's devices (an equal share each)."""
        return -(-n // self._devices) * self._devices

    def _inputs(self, run: np.ndarray, carry: Any):
        """The chunk's per-run inputs (values, seed, fold rows, carry), on the mesh."""
        # host (NumPy) arrays: they go to the mesh's devices, other processes' included
        values = tuple(np.asarray(r[run]).astype(self.dtype) for r in self.runs)
        seed = (run // self.k % self.seeds).astype(np.int32)
        rows = None
        if self.fold_rows is not None:
            rows = tuple(r[run % self.k] for r in self.fold_rows)
        return shard_runs((values, seed, rows, carry), self.mesh)

    def _bytes(self, c: int, carry: Any, first: int, epochs: int) -> tuple[int, int]:
        """XLA's accounting of a ``c``-run chunk, per device: (total, shared by all runs).

        Compiling here is not wasted: the program is cached for the call that follows.
        """
        run = np.zeros(c, np.int64)
        c_carry = None if carry is None else jax.tree.map(lambda a: a[:c], carry)
        inputs = self._inputs(run, c_carry)
        args = (*self.args, inputs[0], self.root, *inputs[1:], first)
        m = _train_chunk.lower(*args, **self.static, epochs=epochs).compile().memory_analysis()
        if m is None:  # a backend without XLA's accounting: size as if it all fits
            return 0, 0
        total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
        total -= m.alias_size_in_bytes
        shared = sum(getattr(a, "nbytes", 0) for a in jax.tree.leaves(self.args))
        return total, shared

    def chunk(self, n: int, carry: Any, first: int, epochs: int) -> int:
        """Runs per program: the user's ``chunk_size``, else as many as memory allows.

        All ``n`` runs in one program if XLA's accounting of it fits in
        ``MEMORY_FRACTION`` of the free memory; otherwise the chunk is shrunk in
        proportion to its excess per run (memory grows about linearly with the runs of a
        ``vmap``) until its own accounting fits, or one run per device is left.
        """
        if self.chunk_size is not None:
            return self._round(self.chunk_size)
        budget = _memory_budget(self.mesh)
        c = self._round(n)
        while c > self._devices:
            total, shared = self._bytes(c, carry, first, epochs)
            if total <= budget:
                break
            per_run = max(1, (total - shared) // (c // self._devices))
            fit = max(1, (budget - shared) // per_run) * self._devices
            c = self._round(min(fit, c - self._devices))
        return c

    def abstract_run(self) -> _Run:
        """The shapes and dtypes of one run's carry (nothing is computed)."""
        init = self.args[0]
        vals = tuple(jax.ShapeDtypeStruct((), self.dtype) for _ in self.runs)
        st = self.static

        def fresh(v):
            tx = make_tx(st["optimizer"], st["names"], st["options"], v)
            return _fresh_run(st["model"], st["metrics"], init, tx, seed_keys(self.root, 0)[0])

        return jax.eval_shape(fresh, vals)

    def advance(self, idx: np.ndarray, carry: Any, first: int, epochs: int):
        """Runs ``idx`` (one program) ``epochs`` epochs on from ``first``; carries stay put.

        ``carry``: the device carries of the previous call, or ``None`` to start. Returns
        the new carries (on the devices) and the epochs' (training, validation) logs on
        the host, ``(runs, epochs)`` each.
        """
        values, seed, rows, _ = self._inputs(idx, None)
        out, logs = _train_chunk(
            *self.args, values, self.root, seed, rows, carry, first, **self.static, epochs=epochs
        )
        return out, jax.tree.map(to_host, logs)

    def train(self, idx, carry, first, epochs, keep: bool, chunk: int, start: int = 0, full=False):
        """Trains runs ``idx`` for ``epochs`` from ``first``, ``chunk`` runs per program.

        ``carry`` (host arrays, one entry per run of ``idx``, or ``None`` to start) goes
        in chunk by chunk, from run ``start`` of ``idx``. Yields, after each chunk,
        ``(runs done, kept, losses, validation losses)`` on the host: ``kept`` is the
        chunk's new carries when ``keep`` (successive halving continues them) or ``full``
        (the trained parameters are returned), else the epochs each run trained; the
        losses are ``(runs in the chunk, epochs)``.
        """
        for begin in range(start, idx.size, chunk):
            part = np.minimum(np.arange(begin, begin + chunk), idx.size - 1)  # pad
            c = None if carry is None else jax.tree.map(lambda a: a[part], carry)  # noqa: B023
            values, seed, rows, c = self._inputs(idx[part], c)
            out, logs = _train_chunk(
                *self.args, values, self.root, seed, rows, c, first, **self.static, epochs=epochs
            )
            take = min(chunk, idx.size - begin)
            kept = out if keep or full else out.ran
            kept, (f, v) = jax.tree.map(lambda a, n=take: to_host(a)[:n], (key_data(kept), logs))
            yield begin + take, kept, f, v


def _rungs(n_configs: int, epochs: int, eta: int) -> list[int]:
    """Cumulative epochs at each rung of successive halving.

    As many halvings ``h`` as ``eta`` divides the configurations (and the epochs); rung i
    ends at ``epochs // eta**(h - i)``, the last at ``epochs``.
    """
    h = 0
    while eta ** (h + 1) <= n_configs and epochs // eta ** (h + 1) >= 1:
        h += 1
    return sorted({epochs // eta ** (h - i) for i in range(h + 1)})


def tune(
    task: Task,
    space: Mapping[str, Any],
    epochs: int,
    *,
    seeds: int = 1,
    seed: int = 0,
    optimizer: Callable[..., optax.GradientTransformation] = rmsprop,
    options: Mapping[str, Any] | None = None,
    samples: int | None = None,
    sampler: Any = None,
    pruner: Any = None,
    trials: int | None = None,
    batch: int = 32,
    study: Any = None,
    monitor: str | None = None,
    patience: int | None = None,
    folds: int | None = None,
    halving: int | None = None,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    checkpoint: str | os.PathLike | None = None,
    keep_params: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Trains ``task`` for every configuration of ``space`` and every seed.

    Every configuration is trained for ``epochs`` epochs from each of ``seeds`` seeds, as
    ``fit`` does (seed ``s`` initialises with ``task.init(k0)`` and shuffles with ``k1``,
    where ``k0, k1`` are ``fold_in(fold_in(key(seed), s), 0 / 1)``), as many
    (configuration, seed) runs per compiled program as memory allows. The configurations
    are the grid's Cartesian product (``space`` of 1-D arrays), ``samples`` random draws,
    or an Optuna ``sampler``'s proposals, ``batch`` at a time (``space`` of Optuna
    distributions). The result is ranked by the validation loss averaged over seeds (the
    training loss without validation data). With ``mesh`` the runs are sharded over its
    devices, across processes too.

    Args:
      task: the ``Task`` to train.
      space: hyperparameter name (a keyword of ``optimizer``) -> a 1-D array of values
        (a grid axis) or, with ``samples`` or ``sampler``, an Optuna distribution
        (``FloatDistribution(1e-4, 1e-1, log=True)``, ``IntDistribution``,
        ``CategoricalDistribution``).
      epochs: epochs per run.
      seeds: trainings per configuration, from different initialisations and shuffles.
      seed: the root of the seeds' keys (and of the random draws).
      optimizer: factory called as ``optimizer(**config, **options)``.
      options: fixed keyword arguments for ``optimizer`` (static: ``eps``, ``centered``...).
      samples: random search: draw this many configurations from the distributions
        (seeded by ``seed``); the result then has one axis of ``samples`` configurations.
      sampler: an Optuna sampler (``optuna.samplers.TPESampler(constant_liar=True,
        multivariate=True)``...): it proposes ``batch`` configurations at a time (ask),
        each batch trains as one vmapped program, and the runs' scores are told back,
        until ``trials`` trials are finished. See ``_search``.
      pruner: (sampler) an Optuna pruner (``MedianPruner()``, ``HyperbandPruner()``...):
        every epoch's score is reported and a trial it stops freezes in its program and
        is told ``PRUNED``. Default: none.
      trials: (sampler) trials to finish, the study's earlier ones included.
      batch: (sampler) trials asked, and trained together, at a time.
      study: (sampler) an ``optuna.Study`` to continue (with RDB storage, a tuning that
        was killed resumes from it); default: a new in-memory study.
      monitor: what ranks and is told to Optuna: ``"val_loss"`` (the default with
        validation data, else ``"loss"``) or a metric of the task's loss.
      patience: early stopping: a run stops once its validation loss (training loss
        without validation data) has not improved for ``patience`` epochs.
      folds: k-fold cross-validation on ``task.data`` (``task.validation`` is not used):
        fold f validates on the f-th of ``folds`` equal slices and trains on the others;
        the result's seed axis then holds seeds x folds (fold fastest).
      halving: successive halving with this factor: all configurations train to the
        first rung (``epochs // halving**h``), the best ``1/halving`` of them continue
        to the next rung, and so on to ``epochs``; epochs a configuration did not train
        are NaN (``epochs_run``).
      chunk_size: (configuration, seed) runs per compiled program. Default: all of them
        if XLA's accounting of that program fits in half the free memory, else chunks
        shrunk until theirs does.
      mesh: shard the runs over all devices of this ``jax.sharding.Mesh``.
      checkpoint: a directory: progress is saved there (``sweep.npz``, atomically, in
        the background) after each chunk of runs, and a call that finds it goes on from
        there; a tuning killed at any point and run again ends with the same numbers, bit
        for bit. A checkpoint of a different call raises ``CheckpointMismatch``.
      keep_params: return every run's trained parameters and model state
        (``result.params``, ``result.model_state``, ``result.best_params(k, by=...)``).
      progress: called as ``progress(runs_done, runs)`` after each chunk.

    Returns:
      A ``TuneResult`` (with ``study`` set when a sampler proposed the configurations).

    Raises:
      SweepInterrupted: on Ctrl-C or SIGTERM, with the finished runs and the checkpoint.
    """
    if not isinstance(task, Task):
        hint = " (a closed-form Problem is swept with `sweep`)" if isinstance(task, Problem) else ""
        raise TypeError(f"`tune(task=...)` must be a Task{hint}; got {task!r}.")
    if sampler is not None or study is not None or pruner is not None:
        if samples is not None or halving is not None or checkpoint is not None:
            raise TypeError(
                "`tune(sampler=...)` chooses the configurations and prunes with the study's "
                "pruner: `samples`, `halving` and `checkpoint` do not apply (the study's "
                "storage is the checkpoint)."
            )
        if chunk_size is not None:
            raise TypeError(
                "`tune(sampler=..., chunk_size=...)`: a batch of trials is one program; "
                "size it with `batch=`."
            )
        from ._search import search

        return search(
            task, space, epochs, sampler=sampler, pruner=pruner, trials=trials, batch=batch,
            study=study, seeds=seeds, seed=seed, optimizer=optimizer, options=options,
            monitor=monitor, patience=patience, folds=folds, mesh=mesh,
            keep_params=keep_params, progress=progress,
        )  # fmt: skip
    if trials is not None:
        raise TypeError("`tune(trials=...)` counts an Optuna sampler's trials: pass `sampler=`.")
    if monitor is not None:
        raise TypeError(
            "`tune(monitor=...)` chooses what a sampler is told; without one, rank the "
            "result with `result.best(by=...)`."
        )
    if keep_params and checkpoint is not None:
        raise ValueError(
            "`tune(keep_params=True)` does not work with `checkpoint` yet: the checkpoint "
            "does not hold every run's parameters."
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`tune(epochs=...)` must be a positive int; got {epochs!r}.")
    checked = (("seeds", seeds), ("patience", patience), ("halving", halving))
    for name, v in (*checked, ("chunk_size", chunk_size)):
        if (v is not None or name == "seeds") and (not isinstance(v, int) or v < 1):
            raise ValueError(f"`tune({name}=...)` must be a positive int; got {v!r}.")
    if halving is not None and halving < 2:
        raise ValueError(f"`tune(halving=...)` must be >= 2; got {halving!r}.")
    if samples is None:
        names, cells, shape = grid_cells(space, "tune")
    else:
        names, cells, shape = draw(space, samples, seed)
    plan = make_plan(
        task, cells, names, seeds, seed, folds, optimizer, options, chunk_size, patience, mesh
    )
    n_cfg, per_cfg = cells[0].size, seeds * plan.k
    rungs = [epochs] if halving is None else _rungs(n_cfg, epochs, halving)
    if halving is not None and len(rungs) < 2:
        raise ValueError(
            f"`tune(halving={halving})` needs at least {halving} epochs and {halving} "
            f"configurations for two rungs; got epochs={epochs}, {n_cfg} configurations."
        )
    names_logged = logged_names(plan.static["metrics"])
    prog = Progress.start(n_cfg * per_cfg, epochs, n_cfg, names_logged)
    resume = None
    if checkpoint is not None:
        settings = dict(epochs=epochs, seeds=seeds, seed=seed, samples=samples, folds=folds)
        settings |= dict(patience=patience, halving=halving)
        print_ = fingerprint(task, plan.params0, names, cells, optimizer, options, **settings)
        resume = _resume.Resume(checkpoint, "sweep", print_)
        like = lambda pos: Progress.like(  # noqa: E731
            pos, n_cfg * per_cfg, epochs, per_cfg, plan.abstract_run(), names_logged
        )
        if (got := resume.load(like, host=True)) is not None:
            prog = Progress.restored(*got)
    finals: list | None = [] if keep_params else None
    try:
        with Interrupts() as signals:  # Ctrl-C, SIGTERM: stop after the chunk in flight
            while prog.rung < len(rungs):
                _rung(plan, prog, rungs, per_cfg, halving, resume, progress, signals, finals)
    except jax.errors.JaxRuntimeError as err:  # another process died?
        raise translate(err, "sweep", None if resume is None else resume.path) from err
    except KeyboardInterrupt:
        raise SweepInterrupted(
            _result(prog, names, cells, shape, per_cfg, task, folds),
            None if resume is None else resume.path,
        ) from None
    finally:  # what finished is kept, however the loop ended
        if resume is not None:
            resume.save(prog.arrays(), prog.position)
            resume.flush()
    result = _result(prog, names, cells, shape, per_cfg, task, folds)
    if finals:
        params, state = _gathered(finals, prog.loss.shape[0], (*shape, per_cfg), plan)
        result = dataclasses.replace(result, params=params, model_state=state)
    return result


def _gathered(finals: list, runs: int, lead: tuple, plan) -> tuple[Any, Any]:
    """Every run's latest ``(params, model state)`` from the chunks.

    Host arrays with the leading axes ``lead`` (``(*grid, seeds)``); typed keys (an NNX
    module's RNG streams) wrapped again.
    """
    first = finals[0][1]
    out = jax.tree.map(lambda a: np.empty((runs, *a.shape[1:]), a.dtype), first)
    for rows, part in finals:  # in training order: a later rung's carries win
        jax.tree.map(lambda o, a, r=rows: o.__setitem__(r, a), out, part)
    out = jax.tree.map(lambda a: a.reshape(*lead, *a.shape[1:]), out)
    run = plan.abstract_run()
    sds = lambda a: jax.ShapeDtypeStruct(lead + a.shape, a.dtype)  # noqa: E731
    return with_keys(out, jax.tree.map(sds, (run.params, run.state)))


def logged_names(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics a sweep records beside the losses: each, and its ``val_`` twin."""
    return (*metrics, *[f"val_{m}" for m in metrics])


def _rung(plan, prog: Progress, rungs, per_cfg, halving, resume, progress, signals, finals):
    """Trains the rest of ``prog``'s rung, chunk by chunk, then moves it to the next rung.

    After each chunk the checkpoint (if any) is given the progress; at a rung's end,
    successive halving keeps the best ``1/halving`` of the configurations (mean of the
    last validation loss over seeds and folds) with their carries.
    """
    first = rungs[prog.rung - 1] if prog.rung else 0
    target = rungs[prog.rung]
    idx = (prog.alive[:, None] * per_cfg + np.arange(per_cfg)).ravel()
    keep = prog.rung + 1 < len(rungs)  # the next rung continues these runs
    if prog.chunk is None:
        prog.chunk = plan.chunk(idx.size, prog.carry_in, first, target - first)
    full = finals is not None
    chunks = plan.train(
        idx, prog.carry_in, first, target - first, keep, prog.chunk, prog.done, full
    )
    for done, kept, f, v in chunks:
        rows = idx[prog.done : done]
        prog.loss[rows, first:target], prog.val[rows, first:target] = f["loss"], v["loss"]
        for name, values in prog.metrics.items():  # "accuracy", "val_accuracy"...
            log, key = (v, name[4:]) if name.startswith("val_") else (f, name)
            values[rows, first:target] = log[key]
        prog.ran[rows] = kept.ran if keep or full else kept
        if full:  # every run's latest parameters and model state (later rungs overwrite)
            finals.append((rows, (kept.params, kept.state)))
        if keep:
            prog.kept.append(kept)
        prog.done = done
        if resume is not None and resume.ready():
            resume.save(prog.arrays(), prog.position)
        if progress is not None:
            progress(done, idx.size)
        if signals.requested is not None:  # saved below (the sweep's finally)
            raise KeyboardInterrupt
    carry_in = None
    if keep:
        score = prog.val[idx, target - 1].reshape(prog.alive.size, per_cfg).mean(-1)
        best = np.argsort(np.where(np.isfinite(score), score, np.inf), kind="stable")
        best = np.sort(best[: max(1, -(-prog.alive.size // halving))])
        rows = (best[:, None] * per_cfg + np.arange(per_cfg)).ravel()
        kept = jax.tree.map(lambda *a: np.concatenate(a), *prog.kept)
        carry_in, prog.alive = jax.tree.map(lambda a: a[rows], kept), prog.alive[best]
    prog.rung, prog.done, prog.chunk, prog.carry_in, prog.kept = (
        prog.rung + 1,
        0,
        None,
        carry_in,
        [],
    )


def _result(prog: Progress, names, cells, shape, per_cfg, task, folds) -> TuneResult:
    grid_shape = (*shape, per_cfg, prog.loss.shape[1])
    has_val = task.validation is not None or folds is not None
    metrics = {
        name: values.reshape(grid_shape)
        for name, values in prog.metrics.items()
        if has_val or not name.startswith("val_")
    }
    return TuneResult(
        configs={name: c.reshape(shape) for name, c in zip(names, cells)},
        loss=prog.loss.reshape(grid_shape),
        val_loss=prog.val.reshape(grid_shape) if has_val else None,
        epochs_run=prog.ran.reshape(grid_shape[:-1]),
        metrics=metrics,
    )


def make_plan(
    task, cells, names, seeds, seed, folds, optimizer, options, chunk_size, patience, mesh
):
    made = task.init(seed_keys(seed, 0)[0])
    params0, state0 = made if task.model_state else (made, None)
    model, params0, state0 = split_model(task.loss, params0, state0)
    first = [np.asarray(c).ravel()[0] for c in cells]
    check_traceable(optimizer, names, options, first, params0, "tune")
    check_data(task.data, task.validation, 1, task.batch_size, call="Task")
    batch = batch_of(task.data, task.batch_size)
    _, metrics = loss_output(model, params0, state0, batch, call="Task")
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
        args=(wrap(task.init), jax.tree.map(jnp.asarray, task.data), val),
        static=dict(
            model=model,
            metrics=metrics,
            optimizer=optimizer,
            names=names,
            options=tuple(sorted((options or {}).items())),
            bs=int(task.batch_size),
            patience=patience,
        ),
        chunk_size=chunk_size,
        mesh=mesh,
        params0=params0,
    )
