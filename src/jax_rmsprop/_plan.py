"""Every run of a tuning, ready to train: the compiled epochs and how many runs per program.

``_train_chunk`` is one program: ``vmap`` over runs (configuration, seed, fold) of a
``lax.scan`` over the epochs of ``train_epoch``, so a run equals ``fit`` alone with its
configuration and seed's keys. ``_Plan`` holds the runs and sizes the chunks from XLA's
memory accounting; ``make_plan`` checks the task and builds it. Shared by ``tune``,
``_search`` (Optuna's batches) and ``_pbt``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.tree_util import Partial

from ._compile import training_jit
from ._epoch import evaluate, train_epoch
from ._host import to_host
from ._inputs import check_data, check_loss, loss_output
from ._model import FUNCTIONAL, NNX, Model, split_params
from ._model import split as split_model
from ._space import check_traceable, make_tx, shard_runs
from .checkpoint import key_data, with_keys


def seed_keys(seed: Any, s: Any) -> tuple[jax.Array, jax.Array]:
    """Seed ``s``'s (initialisation key, shuffling key): ``fold_in(key(seed), s)``, then 0/1."""
    k = jax.random.fold_in(jax.random.key(seed), s)
    return jax.random.fold_in(k, 0), jax.random.fold_in(k, 1)


def model_key(seed: Any, s: Any) -> jax.Array:
    """Seed ``s``'s key for a functional model's randomness (``fit(rng=...)``): then 2."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), s), 2)


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


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How every run of a plan trains (static: hashed into the compiled chunk)."""

    model: Model
    metrics: tuple[str, ...]  # the names of the loss's metrics
    optimizer: Any  # ``optimizer(**options, **values)`` makes the run's transformation
    names: tuple[str, ...]  # the traced hyperparameters, in the order of a run's values
    options: tuple  # the fixed options, as sorted (name, value) pairs
    batch_size: int
    patience: int | None

    def tx(self, values: tuple) -> Any:
        """A run's optimizer from its hyperparameter ``values`` (traced)."""
        return make_tx(self.optimizer, self.names, self.options, values)


class Shared(NamedTuple):
    """The inputs every run of a plan reads (traced, not vmapped)."""

    init: Partial  # ``init(key)``: a run's initial parameters (and model state)
    data: Any
    validation: Any  # or None


class PerRun(NamedTuple):
    """One entry per run of a chunk (vmapped)."""

    values: tuple  # one array per traced hyperparameter
    seed: Any  # the run's seed (its keys are ``seed_keys(root, seed)``)
    rows: Any  # its (training, validation) fold rows, or None


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


@functools.partial(training_jit, static_argnames=("recipe", "epochs"))
def _train_chunk(
    shared: Shared,
    runs: PerRun,
    root,
    carry,
    first,
    reset=None,
    *,
    recipe: Recipe,
    epochs: int,
):
    """``epochs`` epochs from epoch ``first`` of every run in the chunk.

    Starts from ``carry`` (``None``: initialise); ``first`` is one epoch for all runs or
    one per run; ``reset`` (per run, optional) starts those runs afresh from ``carry``'s
    place (a new trial in a freed slot). Returns the new carries and each epoch's
    (training, validation) logs.
    """
    firsts = jnp.broadcast_to(jnp.asarray(first, jnp.int32), runs.seed.shape)
    model, bs, data, validation = recipe.model, recipe.batch_size, shared.data, shared.validation

    def one(run: PerRun, carry, first, reset):
        tx = recipe.tx(run.values)
        init_key, shuffle_key = seed_keys(root, run.seed)
        rng = model_key(root, run.seed) if model.kind == FUNCTIONAL else None
        train_rows, val_rows = (None, None) if run.rows is None else run.rows
        fresh = functools.partial(_fresh_run, model, recipe.metrics, shared.init, tx)
        if carry is None:
            carry = fresh(init_key)
        else:  # from the host: keys (NNX RNG streams) come back as their data
            carry = with_keys(carry, jax.eval_shape(fresh, init_key))
            if reset is not None:
                carry = jax.tree.map(lambda a, b: jnp.where(reset, a, b), fresh(init_key), carry)

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
            if recipe.patience is not None:
                carry = _early_stop(recipe.patience, carry, new)
            else:  # a run stopped from outside (an Optuna pruner) stands still
                carry = jax.tree.map(lambda a, b: jnp.where(carry.stopped, a, b), carry, new)
            return carry, carry.last

        return jax.lax.scan(epoch, carry, first + jnp.arange(epochs, dtype=jnp.int32))

    return jax.vmap(one)(runs, carry, firsts, reset)


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
    shared: Shared
    recipe: Recipe
    chunk_size: int | None  # the user's; None: sized by memory (``chunk``)
    mesh: Mesh | None
    params0: Any  # seed 0's initial parameters (checked, and fingerprinted)

    @property
    def _devices(self) -> int:
        return self.mesh.size if self.mesh else 1

    def padded(self, n: int) -> int:
        """``n`` rounded up to a multiple of the mesh's devices (an equal share each)."""
        return -(-n // self._devices) * self._devices

    def _inputs(self, run: np.ndarray, carry: Any) -> tuple[PerRun, Any]:
        """The chunk's per-run inputs and carries, on the mesh."""
        # host (NumPy) arrays: they go to the mesh's devices, other processes' included
        values = tuple(np.asarray(r[run]).astype(self.dtype) for r in self.runs)
        seed = (run // self.k % self.seeds).astype(np.int32)
        rows = None
        if self.fold_rows is not None:
            rows = tuple(r[run % self.k] for r in self.fold_rows)
        per_run, carry = shard_runs((PerRun(values, seed, rows), carry), self.mesh)
        return per_run, carry

    def _bytes(self, c: int, carry: Any, first: int, epochs: int) -> tuple[int, int]:
        """XLA's accounting of a ``c``-run chunk, per device: (total, shared by all runs).

        Compiling here is not wasted: the program is cached for the call that follows.
        """
        run = np.zeros(c, np.int64)
        c_carry = None if carry is None else jax.tree.map(lambda a: a[:c], carry)
        per_run, c_carry = self._inputs(run, c_carry)
        lowered = _train_chunk.lower(
            self.shared, per_run, self.root, c_carry, first, recipe=self.recipe, epochs=epochs
        )
        m = lowered.compile().memory_analysis()
        if m is None:  # a backend without XLA's accounting: size as if it all fits
            return 0, 0
        total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
        total -= m.alias_size_in_bytes
        return total, self._shared_bytes()

    def _shared_bytes(self) -> int:
        """The inputs every run reads (the data), counted once per program."""
        return sum(getattr(a, "nbytes", 0) for a in jax.tree.leaves(self.shared))

    def _runs_within(self, budget: int, c: int, total: int, shared: int) -> int:
        """Runs that fit in ``budget``, a multiple of the devices (0: not one each).

        At the bytes per run of a ``c``-run program whose accounting is ``total``.
        """
        per_run = max(1, (total - shared) // (c // self._devices))
        return max(0, (budget - shared) // per_run) * self._devices

    def chunk(self, n: int, carry: Any, first: int, epochs: int) -> int:
        """Runs per program: the user's ``chunk_size``, else as many as memory allows.

        All ``n`` runs in one program if XLA's accounting of it fits in
        ``MEMORY_FRACTION`` of the free memory; otherwise the chunk is shrunk in
        proportion to its excess per run (memory grows about linearly with the runs of a
        ``vmap``) until its own accounting fits, or one run per device is left.
        """
        if self.chunk_size is not None:
            return self.padded(self.chunk_size)
        budget = _memory_budget(self.mesh)
        c = self.padded(n)
        while c > self._devices:
            total, shared = self._bytes(c, carry, first, epochs)
            if total <= budget:
                break
            fit = max(self._runs_within(budget, c, total, shared), self._devices)
            c = self.padded(min(fit, c - self._devices))
        return c

    def largest_fitting(self, n: int, epochs: int) -> int | None:
        """``None`` if ``n`` runs fit in one program's memory, else how many would.

        Without compiling when ``64 n`` runs' carries (parameters, optimizer and model
        state) and twice the shared inputs (the data) fit in the budget, a bound with
        room (XLA's accounting per run, activations included: 3.3 carries for the digits
        MLP, 24 for the tests' 73-byte model); near it, by XLA's accounting of the program
        (as ``chunk`` sizes a grid's chunks).
        """
        budget = _memory_budget(self.mesh)
        leaves = jax.tree.leaves(self.abstract_run())
        carry = sum(int(np.prod(a.shape)) * getattr(a.dtype, "itemsize", 8) for a in leaves)
        c = self.padded(n)
        if 64 * c * carry + 2 * self._shared_bytes() <= budget:
            return None
        total, shared = self._bytes(c, None, 0, epochs)
        return None if total <= budget else self._runs_within(budget, c, total, shared)

    def abstract_run(self) -> _Run:
        """The shapes and dtypes of one run's carry (nothing is computed)."""
        vals = tuple(jax.ShapeDtypeStruct((), self.dtype) for _ in self.runs)
        r = self.recipe

        def fresh(v):
            key = seed_keys(self.root, 0)[0]
            return _fresh_run(r.model, r.metrics, self.shared.init, r.tx(v), key)

        return jax.eval_shape(fresh, vals)

    def advance(
        self, idx: np.ndarray, carry: Any, first: Any, epochs: int, reset: Any = None, host=True
    ):
        """Runs ``idx`` (one program) ``epochs`` epochs on from ``first``; carries stay put.

        ``carry``: the device carries of the previous call, or ``None`` to start;
        ``first``: an epoch, or one per run; ``reset``: runs to start afresh (a bool per
        run) or ``None``. Returns the new carries (on the devices) and the epochs'
        (training, validation) logs on the host, ``(runs, epochs)`` each (with ``host``
        false: on the devices, not waited for).
        """
        per_run, _ = self._inputs(idx, None)
        if np.ndim(first):
            first, reset = shard_runs((np.asarray(first, np.int32), reset), self.mesh)
        out, logs = _train_chunk(
            self.shared, per_run, self.root, carry, first, reset, recipe=self.recipe,
            epochs=epochs,
        )  # fmt: skip
        return out, jax.tree.map(to_host, logs) if host else logs

    def train(self, idx, carry, first, epochs, keep: bool, chunk: int, start: int = 0, full=False):
        """Trains runs ``idx`` for ``epochs`` from ``first``, ``chunk`` runs per program.

        ``carry`` (one entry per run of ``idx``, or ``None`` to start) goes in chunk by
        chunk, from run ``start`` of ``idx``. Yields, after each chunk, ``(runs done,
        kept, losses, validation losses)``: ``kept`` is the chunk's new carries when
        ``keep`` (successive halving continues them) or ``full`` (the trained parameters
        are returned), else the epochs each run trained; the losses are ``(runs in the
        chunk, epochs)`` on the host. When all the runs train in one program and only
        halving keeps the carries, they stay on the devices (the next rung gathers its
        survivors there); otherwise they come to the host, chunk by chunk.
        """
        on_device = keep and not full and start == 0 and chunk >= idx.size
        for begin in range(start, idx.size, chunk):
            part = np.minimum(np.arange(begin, begin + chunk), idx.size - 1)  # pad
            c = None if carry is None else jax.tree.map(lambda a: a[part], carry)  # noqa: B023
            per_run, c = self._inputs(idx[part], c)
            out, logs = _train_chunk(
                self.shared, per_run, self.root, c, first, recipe=self.recipe, epochs=epochs
            )
            take = min(chunk, idx.size - begin)
            kept = key_data(out if keep or full else out.ran)
            move = (lambda a, n=take: a[:n]) if on_device else (lambda a, n=take: to_host(a)[:n])
            f, v = jax.tree.map(lambda a, n=take: to_host(a)[:n], logs)
            yield begin + take, jax.tree.map(move, kept), f, v


def logged_names(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics a sweep records beside the losses: each, and its ``val_`` twin."""
    return (*metrics, *[f"val_{m}" for m in metrics])


def make_plan(
    task, cells, names, seeds, seed, folds, optimizer, options, chunk_size, patience, mesh
):
    made = task.init(seed_keys(seed, 0)[0])
    params0, state0 = made if task.model_state else (made, None)
    model, params0, state0 = split_model(task.loss, params0, state0)
    check_loss(model, "Task")
    first = [np.asarray(c).ravel()[0] for c in cells]
    check_traceable(optimizer, names, options, first, params0, "tune")
    check_data(task.data, task.validation, 1, task.batch_size, "Task", task.check_finite)
    _, metrics = loss_output(model, params0, state0, task.data, task.batch_size, call="Task")
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
        shared=Shared(wrap(task.init), jax.tree.map(jnp.asarray, task.data), val),
        recipe=Recipe(
            model=model,
            metrics=metrics,
            optimizer=optimizer,
            names=tuple(names),
            options=tuple(sorted((options or {}).items())),
            batch_size=int(task.batch_size),
            patience=patience,
        ),
        chunk_size=chunk_size,
        mesh=mesh,
        params0=params0,
    )
