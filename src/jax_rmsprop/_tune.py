"""Tuning: whole trainings of a ``Task``, every configuration x seed with ``fit``'s epochs.

The configurations come from a grid (with successive halving, early stopping, folds and a
resumable checkpoint), random draws, or an Optuna sampler's batches (``_search``); each
chunk of runs is one compiled program (``_plan``), so a run equals ``fit`` alone with its
configuration and seed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from ._plan import logged_names, make_plan
from ._resumable import Loop, resumable
from ._resume import stacked
from ._rmsprop import rmsprop
from ._space import draw
from ._space import grid as grid_cells
from ._sweep_progress import Progress, SweepInterrupted, fingerprint
from ._tune_result import TuneResult
from .checkpoint import with_keys
from .problems import Problem, Task


def _rungs(n_configs: int, epochs: int, eta: int) -> list[int]:
    """Cumulative epochs at each rung of successive halving.

    As many halvings ``h`` as ``eta`` divides the configurations (and the epochs); rung i
    ends at ``epochs // eta**(h - i)``, the last at ``epochs``.
    """
    h = 0
    while eta ** (h + 1) <= n_configs and epochs // eta ** (h + 1) >= 1:
        h += 1
    return sorted({epochs // eta ** (h - i) for i in range(h + 1)})


def _work(n_configs: int, per_cfg: int, rungs: list[int], halving: int | None) -> list[int]:
    """Epochs trained (summed over runs) in each rung: its runs times its epochs."""
    out, alive, first = [], n_configs, 0
    for target in rungs:
        out.append(alive * per_cfg * (target - first))
        alive, first = max(1, -(-alive // (halving or 1))), target
    return out


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
    ask_ahead: bool = False,
) -> TuneResult:
    """Trains ``task`` for every configuration of ``space`` and every seed.

    Every configuration is trained for ``epochs`` epochs from each of ``seeds`` seeds, as
    [`fit`][jax_rmsprop.fit] does (seed ``s`` initialises with ``task.init(k0)`` and shuffles with
    ``k1``,
    where ``k0, k1`` are ``fold_in(fold_in(key(seed), s), 0 / 1)``), as many
    (configuration, seed) runs per compiled program as memory allows. The configurations
    are the grid's Cartesian product (``space`` of 1-D arrays), ``samples`` random draws,
    or an Optuna ``sampler``'s proposals, ``batch`` at a time (``space`` of Optuna
    distributions). The result is ranked by the validation loss averaged over seeds (the
    training loss without validation data). With ``mesh`` the runs are sharded over its
    devices, across processes too.

    Args:
      task: the [`Task`][jax_rmsprop.Task] to train.
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
      trials: (sampler) trials to finish, the study's earlier ones included (and, with
        several workers on one study, every worker's).
      batch: (sampler) trials asked, and trained together, at a time: one program (with
        their seeds and folds), so a batch that would not fit in the memory free for it
        raises ``ValueError`` before training, with the largest that fits.
      study: (sampler) an ``optuna.Study`` to continue (with RDB storage, a tuning that
        was killed resumes from it, and several workers may share it: with a heartbeat,
        [`tune_storage`][jax_rmsprop.tune_storage], a killed worker's trials are
        retried); default: a new in-memory study.
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
        for bit. A checkpoint of a different call raises
        [`CheckpointMismatch`][jax_rmsprop.CheckpointMismatch]. With a sampler
        (``study.npz``) it holds the group of trials in training: each group then trains
        in up to 16 program calls (one epoch per call with a pruner or ``progress``, and
        without the freed-slot refill), and a killed tuning run again with the same study (its
        storage) continues that group's configurations from their last saved epoch, as
        new trials (the killed ones are ``FAIL``).
      keep_params: return every run's trained parameters and model state
        (``result.params``, ``result.model_state``, ``result.best_params(k, by=...)``);
        with ``checkpoint``, they are kept in it too (host memory and the file grow with
        the runs times the model's size), so a resumed tuning returns them all.
      progress: called as ``progress(epochs_done, epochs_total)`` after each chunk: the
        epochs trained so far, summed over the runs and (successive halving) the rungs,
        of all there are to train (each rung's runs times its epochs). With a sampler,
        the trials' epochs (each trial counts ``epochs``, a pruned one too), after each
        epoch of a batch.
      ask_ahead: (sampler) ask the next batch while this one trains (in a thread), and
        tell a batch while the next one trains, so that the host's sampling and the
        device's training overlap: a tuning's wall time nears the larger of the two,
        not their sum (worth it where a batch trains in about the time its asks take,
        as on a GPU). Batch k+1 then sees batch k as
        pending trials (constant liar's lies), not its results: deterministic (same
        seeds, same trials) but other trials than the default order's. Not with a
        pruner or a ``checkpoint``.

    Returns:
      A [`TuneResult`][jax_rmsprop.TuneResult] (with ``study`` set when a sampler proposed the
      configurations).

    Raises:
      SweepInterrupted: on Ctrl-C or SIGTERM, with the finished runs and the checkpoint.
      ValueError: for bad arguments, named (before anything compiles); for a sampler's
        ``batch`` too large for the device's memory.
    """
    if not isinstance(task, Task):
        hint = " (a closed-form Problem is swept with `sweep`)" if isinstance(task, Problem) else ""
        raise TypeError(f"`tune(task=...)` must be a Task{hint}; got {task!r}.")
    if sampler is not None or study is not None or pruner is not None:
        _refuse_for_samplers(samples, halving, chunk_size)
        from ._search import search

        return search(
            task, space, epochs, sampler=sampler, pruner=pruner, trials=trials, batch=batch,
            study=study, seeds=seeds, seed=seed, optimizer=optimizer, options=options,
            monitor=monitor, patience=patience, folds=folds, mesh=mesh,
            keep_params=keep_params, progress=progress, checkpoint=checkpoint,
            ask_ahead=ask_ahead,
        )  # fmt: skip
    _check_grid_args(epochs, seeds, patience, halving, chunk_size, trials, monitor, ask_ahead)
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
    names_logged = logged_names(plan.recipe.metrics)
    prog = Progress.start(n_cfg * per_cfg, epochs, n_cfg, names_logged)
    settings = dict(epochs=epochs, seeds=seeds, seed=seed, samples=samples, folds=folds)
    settings |= dict(patience=patience, halving=halving)
    if keep_params:  # (absent otherwise: checkpoints written before it still match)
        settings["keep_params"] = True
    print_ = lambda: fingerprint(  # noqa: E731
        task, plan.params0, names, cells, optimizer, options, **settings
    )
    like = lambda pos: Progress.like(  # noqa: E731
        pos, n_cfg * per_cfg, epochs, per_cfg, plan.abstract_run(), names_logged
    )
    # Ctrl-C, SIGTERM: stop after the chunk in flight
    work = _work(n_cfg, per_cfg, rungs, halving)
    with resumable("tune", checkpoint, "sweep", print_) as loop:
        if (got := loop.load(like, host=True)) is not None:
            prog = Progress.restored(*got)
        try:
            while prog.rung < len(rungs):
                _rung(plan, prog, rungs, per_cfg, halving, loop, progress, keep_params, work)
        except KeyboardInterrupt:
            raise SweepInterrupted(
                _result(prog, names, cells, shape, per_cfg, task, folds), loop.path,
                counts=_counts(prog, rungs, per_cfg, work, n_cfg),
            ) from None  # fmt: skip
        finally:  # what finished is kept, however the loop ended
            loop.boundary(prog.arrays, prog.position, last=True)
    result = _result(prog, names, cells, shape, per_cfg, task, folds)
    if prog.trained is not None:
        params, state = _gathered(prog.trained, (*shape, per_cfg), plan)
        result = dataclasses.replace(result, params=params, model_state=state)
    return result


def _refuse_for_samplers(samples, halving, chunk_size) -> None:
    """The grid's options that a sampler's search does not take."""
    if samples is not None or halving is not None:
        raise TypeError(
            "`tune(sampler=...)` chooses the configurations and prunes with the study's "
            "pruner: `samples` and `halving` do not apply."
        )
    if chunk_size is not None:
        raise TypeError(
            "`tune(sampler=..., chunk_size=...)`: a batch of trials is one program; "
            "size it with `batch=`."
        )


def _check_grid_args(
    epochs, seeds, patience, halving, chunk_size, trials, monitor, ask_ahead=False
) -> None:
    """A grid (or random) search's arguments; a sampler's options refused."""
    if ask_ahead:
        raise TypeError("`tune(ask_ahead=True)` orders an Optuna sampler's asks: pass `sampler=`.")
    if trials is not None:
        raise TypeError("`tune(trials=...)` counts an Optuna sampler's trials: pass `sampler=`.")
    if monitor is not None:
        raise TypeError(
            "`tune(monitor=...)` chooses what a sampler is told; without one, rank the "
            "result with `result.best(by=...)`."
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`tune(epochs=...)` must be a positive int; got {epochs!r}.")
    checked = (("seeds", seeds), ("patience", patience), ("halving", halving))
    for name, v in (*checked, ("chunk_size", chunk_size)):
        if (v is not None or name == "seeds") and (not isinstance(v, int) or v < 1):
            raise ValueError(f"`tune({name}=...)` must be a positive int; got {v!r}.")
    if halving is not None and halving < 2:
        raise ValueError(f"`tune(halving=...)` must be >= 2; got {halving!r}.")


def _gathered(trained: Any, lead: tuple, plan) -> tuple[Any, Any]:
    """Every run's latest ``(params, model state)``, from ``Progress.trained``.

    Host arrays with the leading axes ``lead`` (``(*grid, seeds)``); typed keys (an NNX
    module's RNG streams) wrapped again.
    """
    out = jax.tree.map(lambda a: a.reshape(*lead, *a.shape[1:]), trained)
    run = plan.abstract_run()
    return with_keys(out, stacked((run.params, run.state), *lead))


def _counts(prog: Progress, rungs, per_cfg, work, n_cfg) -> dict[str, tuple[int, int]]:
    """Where an interrupted grid tuning stood, as a rerun from its checkpoint finds it.

    ``epochs``: trained of all (the progress bar's count); ``rung``: the rung in training
    (1-based) of the rungs; ``runs``: that rung's runs trained of its runs;
    ``configs``: configurations trained to the last epoch (every seed) of all.
    """
    r = min(prog.rung, len(rungs) - 1)
    span = rungs[r] - (rungs[r - 1] if r else 0)
    runs = work[r] // span if prog.rung < len(rungs) else 0
    done = sum(work[: prog.rung]) + prog.done * span * (prog.rung < len(rungs))
    configs = 0  # trained to the last epoch: the last rung's, all seeds done
    if prog.rung == len(rungs):
        configs = prog.alive.size
    elif prog.rung == len(rungs) - 1:
        configs = prog.done // per_cfg
    return {
        "epochs": (done, sum(work)),
        "rung": (prog.rung + 1, len(rungs)),
        "runs": (prog.done, runs),
        "configs": (configs, n_cfg),
    }


def _rung(plan, prog: Progress, rungs, per_cfg, halving, loop: Loop, progress, full: bool, work):
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
            prog.keep_trained(rows, (kept.params, kept.state))
        if keep:
            prog.kept.append(kept)
        prog.done = done
        loop.boundary(prog.arrays, prog.position)  # (a signal: written by the finally)
        if progress is not None:  # (the losses came to the host: these epochs ran)
            progress(sum(work[: prog.rung]) + done * (target - first), sum(work))
        if loop.requested is not None:  # saved below (the sweep's finally)
            raise KeyboardInterrupt
    carry_in = None
    if keep:
        score = prog.val[idx, target - 1].reshape(prog.alive.size, per_cfg).mean(-1)
        best = np.argsort(np.where(np.isfinite(score), score, np.inf), kind="stable")
        best = np.sort(best[: max(1, -(-prog.alive.size // halving))])
        rows = (best[:, None] * per_cfg + np.arange(per_cfg)).ravel()
        kept = prog.kept_carries()
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
