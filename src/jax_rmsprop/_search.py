"""Optuna as the search engine, each batch of its trials trained as one vmapped program.

``tune(task, space, epochs, sampler=..., trials=..., batch=...)`` asks the study for
``batch`` trials (with ``TPESampler(constant_liar=True)`` the pending ones count as
"lies", so one batch does not propose one point 32 times), groups them by the values that
change the program (a categorical ``centered``: one program per value), trains each group
as one ``vmap`` of ``fit``'s epochs, and tells the scores back. With a pruner other than
``NopPruner`` the group trains epoch by epoch: each epoch's score is reported
(``trial.report``) and a trial the pruner stops freezes in the program (its epochs after
that are not trained: ``epochs_run``) and is told ``PRUNED``.

A study with RDB storage keeps the finished trials, and several calls (workers, on one
machine or many) may share it: only finished (``COMPLETE`` or ``PRUNED``) trials count
towards ``trials``, the study's, recounted before each batch is asked. A killed worker's
trials are left ``RUNNING``: with a heartbeat in the storage (``tune_storage``) they go
stale, become ``FAIL`` and are retried by the next worker that asks (``_storage``).
With ``checkpoint=``, the group of trials in training is saved too (``_Flight``:
carries, logs, epoch, the trials' numbers and values), and the worker's next call
continues it, as retries of the same values, from its saved epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from ._ask_ahead import Serial, asking
from ._host import to_host
from ._inputs import direction
from ._plan import logged_names, make_plan
from ._resumable import Loop, resumable
from ._resume import stacked
from ._space import check_space, static_names
from ._storage import (
    STUDY,
    answering,
    ask,
    check_study_space,
    fail,
    fail_stale,
    finished,
    queue_retries,
    working,
)
from ._sweep_progress import SweepInterrupted, fingerprint
from ._tune_result import TuneResult
from .checkpoint import key_data, with_keys
from .problems import Task


def _optuna():
    try:
        import optuna
    except ImportError as err:  # pragma: no cover - optuna is in the test extra
        raise ImportError(
            "`tune(sampler=...)` needs Optuna: pip install 'jax-rmsprop[tune]'."
        ) from err
    return optuna


@dataclasses.dataclass
class _Trained:
    """The runs of the trials trained so far, one row per trial (host arrays)."""

    trials: list = dataclasses.field(default_factory=list)  # optuna.Trial, in order
    loss: list = dataclasses.field(default_factory=list)  # (per_cfg, epochs) each
    val: list = dataclasses.field(default_factory=list)
    ran: list = dataclasses.field(default_factory=list)  # (per_cfg,)
    pruned: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)  # name -> list of (per_cfg, epochs)
    kept: list | None = None  # keep_params: each trial's (params, model state), per_cfg first
    like: Any = None  # one run's abstract (params, model state): typed keys come back

    def add(self, trial, f: dict, v: dict, ran, pruned: bool, plan, kept=None) -> None:
        """One trial's runs, whichever loop trained them.

        Its epoch logs ``f``/``v`` (``(per_cfg, epochs)`` each), the epochs each run
        trained, and (``keep_params``) its host ``(params, model state)``.
        """
        self.trials.append(trial)
        self.loss.append(f["loss"])
        self.val.append(v["loss"])
        self.ran.append(ran)
        self.pruned.append(bool(pruned))
        for name in logged_names(plan.recipe.metrics):
            log, key = (v, name[4:]) if name.startswith("val_") else (f, name)
            self.metrics.setdefault(name, []).append(log[key])
        if self.kept is not None:
            self.kept.append(kept)
            if self.like is None:
                run = plan.abstract_run()
                self.like = (run.params, run.state)


def search(
    task: Task,
    space: Mapping[str, Any],
    epochs: int,
    *,
    sampler: Any,
    pruner: Any,
    trials: int | None,
    batch: int,
    study: Any,
    seeds: int,
    seed: int,
    optimizer: Callable[..., optax.GradientTransformation],
    options: Mapping[str, Any] | None,
    monitor: str | None,
    patience: int | None,
    folds: int | None,
    mesh: Mesh | None,
    keep_params: bool,
    progress: Callable[[int, int], None] | None,
    checkpoint: str | os.PathLike | None = None,
    ask_ahead: bool = False,
) -> TuneResult:
    """``tune`` with an Optuna sampler (see the module's docstring and ``tune``)."""
    optuna = _optuna()
    _check_counts(trials=trials, batch=batch, epochs=epochs, seeds=seeds)
    assert trials is not None
    names = check_space(space, "tune", distributions=True)
    static = static_names(space)
    numeric = tuple(n for n in names if n not in static)
    has_val = task.validation is not None or folds is not None
    monitor = monitor or ("val_loss" if has_val else "loss")
    sign = direction(monitor, "auto", "tune")
    study, done = _opened(optuna, study, sampler, pruner, sign, space, trials)

    plan_for = _Plans(task, space, static, numeric, (seeds, seed, folds, optimizer, options,
                      patience, mesh))  # fmt: skip
    prune = not isinstance(study.pruner, optuna.pruners.NopPruner)
    asker = _asker(study, space, ask_ahead, prune, checkpoint)
    trained = _Trained(kept=[] if keep_params else None)
    pending: list = []  # asked, not told: failed if a second Ctrl-C cuts them short
    report = functools.partial(_report, progress, 0, trials * epochs)
    print_ = lambda: plan_for.fingerprint(  # noqa: E731
        names, epochs=epochs, monitor=monitor, keep_params=keep_params
    )
    teller = _Teller(study, optuna, trained, asker, monitor, sign, ask_ahead)
    # the asked trials (those asked ahead too) beat until told
    path, work = None, working(study, lambda: pending + teller.untold() + asker.ahead())
    try:
        with work, resumable("tune", checkpoint, "study", print_) as loop, teller:  # Ctrl-C
            path = loop.path
            flight = None if checkpoint is None else _Flight(loop)
            if flight is not None and (got := flight.resume(study, space, plan_for)):
                pending = got  # the group in flight when the last call stopped
            elif prune and not static and done < trials and flight is None:  # freed slots
                plan = plan_for.fitting((), min(batch, trials - done), 1, batch)
                slots = _Slots(plan, study, optuna, space, numeric, epochs, monitor, sign,
                               lambda: _left(optuna, study, trials) > 0)  # fmt: skip
                slots.run(trained, pending, min(batch, trials - done), trials - done,
                          functools.partial(report, done * epochs), loop)  # fmt: skip
                done += slots.finished
            while loop.requested is None:
                if not pending:  # (else a resumed group)
                    done, pending = _next_batch(optuna, study, trials, batch, teller)
                    if not pending:  # the study has its trials (every worker's)
                        break
                groups: dict[tuple, list] = {}
                for t in pending:
                    groups.setdefault(plan_for.key_of(t.params) if static else (), []).append(t)
                for key, group in groups.items():  # each group told once it is trained
                    plan = plan_for.fitting(key, min(batch, trials), 1 if prune else epochs, batch)
                    at = functools.partial(report, done * epochs)  # + the group's epochs
                    _train_group(plan, group, numeric, epochs, monitor, sign, prune,
                                 trained, flight, at if progress is not None else None,
                                 teller.meanwhile)  # fmt: skip
                    teller.trained(len(group))  # (then no longer pending: told or failed once)
                    done += len(group)
                    pending = [t for t in pending if t not in group]
    except KeyboardInterrupt:  # mid-batch (a second Ctrl-C, or a checkpoint's boundary)
        _stopped(optuna, study, pending, teller, retry=checkpoint is None)  # (else the flight's)
        raise SweepInterrupted(_result(trained, names, study, has_val), path) from None
    _stopped(optuna, study, [], teller, retry=False)
    result = _result(trained, names, study, has_val)
    if loop.requested is not None:
        raise SweepInterrupted(result, path)
    return result


@dataclasses.dataclass
class _Plans:
    """One plan per value of the hyperparameters that change the program, made when needed."""

    task: Task
    space: Mapping[str, Any]
    static: tuple[str, ...]
    numeric: tuple[str, ...]
    settings: tuple  # (seeds, seed, folds, optimizer, options, patience, mesh)
    made: dict = dataclasses.field(default_factory=dict)
    checked: set = dataclasses.field(default_factory=set)  # keys whose batch fits

    def __call__(self, key: tuple):
        if key not in self.made:
            seeds, seed, folds, optimizer, options, patience, mesh = self.settings
            fixed = dict(options or {}) | dict(zip(self.static, key))
            cells = [np.asarray([_first_value(self.space[n])]) for n in self.numeric]
            self.made[key] = make_plan(
                self.task, cells, self.numeric, seeds, seed, folds, optimizer, fixed, None,
                patience, mesh,
            )  # fmt: skip
        return self.made[key]

    def fitting(self, key: tuple, trials: int, epochs: int, batch: int):
        """The plan of ``key``, once ``trials`` of its trials are known to fit in memory.

        Once per program key, before anything trains: a batch is one program (all its
        trials' seeds and folds), so where a grid would be chunked a batch too large for
        the device is an error naming ``batch``, with the largest that fits.
        """
        plan = self(key)
        if key in self.checked:
            return plan
        per_trial = plan.seeds * plan.k
        fits = plan.largest_fitting(trials * per_trial, epochs)
        if fits is not None:
            use = (
                f"use batch <= {fits // per_trial}"
                if fits >= per_trial
                else "not even one trial's runs fit: fewer seeds or folds, or free memory"
            )
            raise ValueError(
                f"`tune(batch={batch})`: a batch trains as one program, and {trials} trials "
                f"x {per_trial} runs (seeds x folds) do not fit in the memory free for it; "
                f"{use}."
            )
        self.checked.add(key)
        return plan

    def key_of(self, params: Mapping[str, Any]) -> tuple:
        """The key of a trial's program: its values of the program-changing names."""
        return tuple(params[n] for n in self.static)

    def fingerprint(self, names, **more: Any) -> dict[str, str]:
        """The tuning's fingerprint (seed 0's initial parameters: any program's)."""
        seeds, seed, folds, optimizer, options, patience, _ = self.settings
        params0 = self(self.key_of({n: self.space[n].choices[0] for n in self.static})).params0
        space = repr(sorted(self.space.items()))
        return fingerprint(
            self.task, params0, names, [], optimizer, options, seeds=seeds, seed=seed,
            folds=folds, patience=patience, space=space, **more,
        )  # fmt: skip


def _report(progress: Callable[[int, int], None] | None, start: int, total: int, *k: int):
    """Calls ``progress`` with the trials' epochs trained: ``start`` and ``k`` more."""
    if progress is not None:
        progress(start + sum(k), total)


def _check_counts(**counts: Any) -> None:
    for name, v in counts.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"`tune({name}=...)` must be a positive int; got {v!r}.")


def _asker(study, space, ask_ahead: Any, prune: bool, checkpoint: Any) -> Serial:
    """The order of the asks (``_ask_ahead``).

    It orders whole batches: ``ask_ahead`` takes neither a pruner's freed slots nor a
    checkpoint's group.
    """
    if not isinstance(ask_ahead, bool):
        raise ValueError(f"`tune(ask_ahead=...)` must be True or False; got {ask_ahead!r}.")
    if ask_ahead and (prune or checkpoint is not None):
        raise ValueError(
            "`tune(ask_ahead=True)` asks whole batches ahead: it takes no pruner (the "
            "study's or `pruner`: its freed slots ask trial by trial) and no `checkpoint` "
            "(which saves one batch)."
        )
    return asking(study, space, ask_ahead)


def _refuse_grid_sampler(optuna, study) -> None:
    if isinstance(study.sampler, optuna.samplers.GridSampler):
        raise TypeError(
            "`tune(sampler=GridSampler(...))`: Optuna's grid sampler stops its study from "
            "inside `optimize` only; give `tune` the grid itself (a space of 1-D arrays, "
            "with `halving=` to stop the worst early)."
        )


def _first_value(dist: Any) -> float:
    """A value the distribution allows (its low end, or first choice): for checks."""
    if type(dist).__name__ == "CategoricalDistribution":
        return float(dist.choices[0])
    return float(dist.low)


@dataclasses.dataclass
class _Slots:
    """Continuous batching: ``batch`` slots, each training one trial at its own epoch.

    With a pruner the slots advance one epoch at a time; a trial that finishes or is
    pruned is told at once, and its slot takes the next asked trial from epoch 0 (its
    runs start afresh: ``reset``), so a pruned trial's slot is not left idle while the
    others finish. One compiled program throughout: the per-run epoch and reset are
    inputs.
    """

    plan: Any
    study: Any
    optuna: Any
    space: Any
    numeric: tuple
    epochs: int
    monitor: str
    sign: float
    more: Callable[[], bool]  # the study needs more trials (every worker's counted)
    finished: int = 0

    def run(self, trained: _Trained, pending: list, batch: int, budget: int, report, loop):
        """Trains ``budget`` trials through ``batch`` slots; ``pending`` tracks the asked."""
        per_cfg = self.plan.seeds * self.plan.k
        slot = [ask(self.study, self.space) for _ in range(batch)]
        pending[:] = slot
        asked = batch
        logs: list[list] = [[] for _ in range(batch)]  # per slot: (f, v) of each epoch
        ep = np.zeros(batch, np.int64)
        active = np.ones(batch, bool)
        n = batch * per_cfg
        idx = np.minimum(np.arange(self.plan.padded(n)), n - 1)
        carry: Any = None
        reset = None
        runs = lambda mask: np.repeat(mask, per_cfg)[idx]  # noqa: E731 (slots -> runs)
        while active.any():
            if loop.requested is not None:  # Ctrl-C, SIGTERM: unfinished trials failed
                live = [slot[i] for i in np.flatnonzero(active)]
                fail(self.optuna, self.study, live, retry=True)  # (queued where beating)
                pending.clear()
                return
            values = [np.repeat([t.params[m] for t in slot], per_cfg) for m in self.numeric]
            step = dataclasses.replace(self.plan, runs=values)
            carry, (f, v) = step.advance(idx, carry, runs(ep), 1, reset)
            reset = None
            score = _monitored(f, v, self.monitor)[:n].reshape(batch, per_cfg, -1).mean(1)[:, 0]
            freed = np.zeros(batch, bool)
            for i in np.flatnonzero(active):
                rows = slice(i * per_cfg, (i + 1) * per_cfg)
                logs[i].append(jax.tree.map(lambda a, r=rows: a[r], (f, v)))
                ep[i] += 1
                slot[i].report(_finite(score[i], self.sign), int(ep[i]))
            for i in np.flatnonzero(active):  # every value reported: now decide
                pruned = ep[i] < self.epochs and slot[i].should_prune()
                if ep[i] < self.epochs and not pruned:
                    continue
                self._record(trained, slot[i], logs[i], pruned, carry, i, per_cfg)
                _tell(self.study, self.optuna, trained, len(trained.trials) - 1,
                      self.monitor, self.sign)  # fmt: skip
                self.finished += 1
                freed[i] = True
                if asked < budget and loop.requested is None and self.more():
                    slot[i] = ask(self.study, self.space)
                    asked += 1
                    logs[i], ep[i] = [], 0
                else:
                    active[i] = False
            # epochs trained: each told trial's (a pruned one counts all), the others' so far
            report(self.finished * self.epochs + int(ep[active & ~freed].sum()))
            pending[:] = [t for t, a in zip(slot, active) if a]
            if (freed & active).any():  # new trials: their runs start afresh next epoch
                reset = runs(freed & active)
            if (freed & ~active).any():  # nothing left to ask: the slot stands still
                carry = carry._replace(stopped=carry.stopped | jnp.asarray(runs(freed & ~active)))

    def _record(self, trained: _Trained, trial, logs, pruned, carry, i, per_cfg) -> None:
        """A finished trial's runs into ``trained``: epochs it did not train repeat its last."""
        f = jax.tree.map(lambda *a: np.concatenate(a, axis=1), *[x[0] for x in logs])
        v = jax.tree.map(lambda *a: np.concatenate(a, axis=1), *[x[1] for x in logs])
        pad = self.epochs - len(logs)
        grow = lambda a: np.concatenate([a, np.repeat(a[:, -1:], pad, 1)], 1)  # noqa: E731
        f, v = jax.tree.map(grow, f), jax.tree.map(grow, v)
        kept = None
        if trained.kept is not None:  # this slot's runs only, sliced on the device
            rows = slice(i * per_cfg, (i + 1) * per_cfg)
            kept = jax.tree.map(lambda a: to_host(a[rows]), key_data((carry.params, carry.state)))
        ran = np.full(per_cfg, len(logs), np.int64)
        trained.add(trial, f, v, ran, pruned, self.plan, kept)


def _study(optuna, study, sampler, pruner, sign: float):
    """The study to ask: the user's (its direction checked), else a new in-memory one.

    A new study prunes only with the ``pruner`` given (Optuna's own default would be a
    ``MedianPruner``).
    """
    want = optuna.study.StudyDirection.MINIMIZE
    if sign < 0:
        want = optuna.study.StudyDirection.MAXIMIZE
    if study is None:
        pruner = pruner if pruner is not None else optuna.pruners.NopPruner()
        return optuna.create_study(sampler=sampler, pruner=pruner, direction=want)
    if sampler is not None or pruner is not None:
        raise TypeError(
            "`tune(study=..., sampler=/pruner=...)`: give them to the study "
            "(`optuna.create_study(sampler=..., pruner=...)` or `optuna.load_study`)."
        )
    if len(study.directions) != 1 or study.direction != want:
        raise ValueError(
            f"`tune(study=...)` has directions {[d.name for d in study.directions]}; the "
            f"monitored value should be {want.name.lower()}d."
        )
    return study


def _opened(optuna, study, sampler, pruner, sign: float, space, trials) -> tuple[Any, int]:
    """The study to ask (``_study``), checked against this call, and its finished trials.

    (Its stale trials failed first, and queued again: see ``_storage``.)
    """
    study = _study(optuna, study, sampler, pruner, sign)
    with answering(STUDY, "its storage does not answer"):
        _refuse_grid_sampler(optuna, study)
        check_study_space(optuna, study, space)
        return study, trials - _left(optuna, study, trials)


def _next_batch(optuna, study, trials: int, batch: int, teller: _Teller) -> tuple[int, list]:
    """The study's finished trials (trained ones not yet told too), and the next batch.

    None when the study has its trials (every worker's). Asked by ``teller.asker``: with
    ``ask_ahead``, the one after it begins in a thread (here, or once those trained are
    told).
    """
    teller.asker.settle()  # (the study the caller's alone: counted, stale trials failed)
    left = _left(optuna, study, trials) - len(teller.later)
    got = teller.asker.batch(batch, left) if left > 0 else []
    if not teller.later:
        teller.asker.begin()
    return trials - left, got


@dataclasses.dataclass
class _Teller:
    """Tells the study its trained trials' values, each group once it is trained.

    With ``ask_ahead``, once the next group is on the device (told while it trains), the
    next batch's asks begun after the tells (``_ask_ahead``'s order).
    """

    study: Any
    optuna: Any
    done: _Trained
    asker: Serial
    monitor: str
    sign: float
    ahead: bool
    later: list[int] = dataclasses.field(default_factory=list)  # rows of ``done``, untold

    def trained(self, size: int) -> None:
        """The last ``size`` trials of ``done`` trained: told now, or (ahead) later."""
        self.later.extend(range(len(self.done.trials) - size, len(self.done.trials)))
        if not self.ahead:
            self()

    def __call__(self, begin: bool = True) -> None:
        """Tells the trained trials not yet told; then (``begin``) the next asks begin."""
        if self.later:
            self.asker.settle()
            for i in self.later:
                _tell(self.study, self.optuna, self.done, i, self.monitor, self.sign)
            self.later.clear()
        if begin:
            self.asker.begin()

    def __enter__(self) -> _Teller:
        return self

    def __exit__(self, kind, err, tb) -> None:
        """The trials trained are told on the way out.

        After the last batch (heartbeats and the Ctrl-C handler still on), or before an
        error in flight goes on (the error is the one to see: one telling raises is
        dropped).
        """
        if kind is None:
            self(begin=False)
        else:
            with contextlib.suppress(Exception):
                self(begin=False)

    @property
    def meanwhile(self) -> Callable[[], None] | None:
        """What ``_train_group`` calls while a group trains (``None``: nothing)."""
        return self if self.ahead else None

    def untold(self) -> list:
        return [self.done.trials[i] for i in self.later]


def _stopped(optuna, study, pending: list, teller: _Teller, *, retry: bool) -> None:
    """Tells the trained trials' values, and ``FAIL`` those asked and not finished.

    ``pending`` are retried with ``retry``; those asked ahead (never trained) are not.
    """
    untold = teller.untold()
    pending = [t for t in pending if all(t is not u for u in untold)]  # (those are told)
    with answering(STUDY, "its storage stopped answering"):
        teller(begin=False)
        fail(optuna, study, pending, retry=retry)
        fail(optuna, study, teller.asker.unused(), retry=False)


def _left(optuna, study, trials: int) -> int:
    """Trials the study still needs finished, once stale ones are failed (and queued)."""
    fail_stale(optuna, study)
    return trials - finished(optuna, study)


def _train_group(
    plan, group, numeric, epochs, monitor, sign, prune, trained, flight=None, report=None,
    meanwhile=None,
):  # fmt: skip
    """Trains one program's trials (all seeds and folds of each) and records their runs.

    With a pruner, epoch by epoch, each epoch's value reported; with ``flight`` (a
    checkpoint), in up to 16 calls, each call's end a boundary of the checkpoint, and
    from its saved carries when the group is the one a stopped call left. With
    ``report``, epoch by epoch too, ``report(epochs trained)`` (the group's trials x the
    epochs) after each: the logs have come to the host, so those epochs ran. With
    ``meanwhile``, ``meanwhile()`` is called once the first call is on the device,
    before its logs are waited for (host work overlapped with the training).
    """
    per_cfg = plan.seeds * plan.k
    params = [t.params for t in group]  # (each ``Trial.params`` is a deep copy)
    values = [np.asarray([p[n] for p in params], np.float64) for n in numeric]
    plan = dataclasses.replace(plan, runs=[np.repeat(v, per_cfg) for v in values])
    n = len(group) * per_cfg
    idx = np.minimum(np.arange(plan.padded(n)), n - 1)  # padded to the mesh's devices
    step = 1 if prune or report else (epochs if flight is None else -(-epochs // 16))
    carry: Any = None
    first = 0
    logs: list = []
    stopped = np.zeros(len(group), bool)
    if flight is not None and flight.start is not None:  # resumed: on from the saved epoch
        carry, saved, stopped, first = flight.start
        flight.start = None
        logs.append(saved)
        if prune:  # the new trials are told the values their runs reached so far
            score = _monitored(*saved, monitor)[:n].reshape(len(group), per_cfg, -1).mean(1)
            for a, t in enumerate(group):
                for e in range(first):
                    t.report(_finite(score[a, e], sign), e + 1)
    while first < epochs:
        span = min(step, epochs - first)
        if meanwhile is None:
            carry, (f, v) = plan.advance(idx, carry, first, span)
        else:  # (the logs waited for once ``meanwhile`` ran)
            carry, logs_on_device = plan.advance(idx, carry, first, span, host=False)
            meanwhile()
            meanwhile = None
            f, v = jax.tree.map(to_host, logs_on_device)
        logs.append((f, v))
        first += span
        if report is not None:
            report(len(group) * first)
        if prune:
            _prune(group, _monitored(f, v, monitor)[:n], per_cfg, stopped, first, sign)
            if stopped.any() and first < epochs:  # frozen in the program from the next epoch
                halt = jnp.asarray(np.repeat(stopped, per_cfg)[idx])
                carry = carry._replace(stopped=carry.stopped | halt)
        if flight is not None and first < epochs:
            flight.boundary(group, carry, logs, stopped, first)
    f = jax.tree.map(lambda *a: np.concatenate(a, axis=1)[:n], *[x[0] for x in logs])
    v = jax.tree.map(lambda *a: np.concatenate(a, axis=1)[:n], *[x[1] for x in logs])
    ran = np.asarray(jax.device_get(carry.ran))[:n].reshape(len(group), per_cfg)
    f, v = (jax.tree.map(lambda a: a.reshape(len(group), per_cfg, -1), x) for x in (f, v))
    host = None
    if trained.kept is not None:  # the trained parameters, to the host once, at the end
        host = jax.tree.map(to_host, key_data((carry.params, carry.state)))
        host = jax.tree.map(lambda a: a[:n].reshape(len(group), per_cfg, *a.shape[1:]), host)
    for i, t in enumerate(group):
        kept = None if host is None else jax.tree.map(lambda a, i=i: a[i], host)
        pick = lambda x, i=i: jax.tree.map(lambda a: a[i], x)  # noqa: E731
        trained.add(t, pick(f), pick(v), ran[i], stopped[i], plan, kept)


def _finite(value: float, sign: float) -> float:
    """A value to report or tell: a non-finite one is the worst there is."""
    return float(value) if np.isfinite(value) else sign * np.inf


def _prune(group, monitored, per_cfg, stopped, epoch, sign) -> None:
    """Reports every live trial's value at ``epoch``, then asks the pruner about each."""
    score = monitored.reshape(len(group), per_cfg, -1).mean(1)[:, -1]
    alive = [int(a) for a in np.flatnonzero(~stopped)]
    for a in alive:  # every trial's value first: the pruner compares them all
        group[a].report(_finite(score[a], sign), epoch)
    for a in alive:
        stopped[a] = group[a].should_prune()


@dataclasses.dataclass
class _Flight:
    """The group of trials in training, for ``tune(sampler=..., checkpoint=...)``.

    A boundary saves the group's carries, logs so far, pruned flags and epoch, with the
    trials' numbers and values. The next call resumes the group only if none of its
    trials was told or retried since (each still ``RUNNING``, or failed by this worker's
    Ctrl-C): they are failed, queued again as retries of the same values, asked, and
    trained on from the saved epoch. Where another worker got there first (failed them
    as stale, or asked the queue first), the group is left to the retries.
    """

    loop: Loop
    start: Any = None  # (carry, (f, v), stopped, epoch) of the group to resume

    def boundary(self, group, carry, logs, stopped, epoch) -> None:
        """The group after ``epoch`` epochs; stops here when Ctrl-C/SIGTERM asked."""

        def arrays():
            f, v = (
                jax.tree.map(lambda *a: np.concatenate(a, axis=1).astype(np.float64), *x)
                for x in zip(*logs)
            )
            return {"carry": key_data(carry), "f": f, "v": v, "stopped": stopped.copy()}

        numbers = [t.number for t in group]
        position = {"numbers": numbers, "params": [t.params for t in group], "epoch": epoch}
        self.loop.boundary(arrays, lambda: position, last=self.loop.requested is not None)
        if self.loop.requested is not None:
            raise KeyboardInterrupt

    def resume(self, study, space, plan_for) -> list | None:
        """The stopped call's group as new trials, ``start`` set; ``None`` if none."""

        def like(position):
            params = position["params"]
            plan = plan_for(plan_for.key_of(params[0]))
            runs = plan.padded(len(params) * plan.seeds * plan.k)
            sds = jax.ShapeDtypeStruct
            run = stacked(plan.abstract_run(), runs)
            logged = ("loss", *plan.recipe.metrics)
            log = {m: sds((runs, position["epoch"]), np.float64) for m in logged}
            stopped = sds((len(params),), np.bool_)
            return {"carry": run, "f": log, "v": dict(log), "stopped": stopped}

        got = self.loop.load(like, host=True)
        if got is None:
            return None
        arrays, position = got
        group = _retried(study, position["numbers"], space)
        if group is None:  # its trials were told or retried elsewhere
            return None
        carry, logs = arrays["carry"], (arrays["f"], arrays["v"])
        self.start = (carry, logs, np.asarray(arrays["stopped"]), position["epoch"])
        return group


def _retried(study, numbers: list[int], space) -> list | None:
    """Trials ``numbers`` (a stopped flight's) failed, queued as retries and asked again.

    ``None`` where one was told or retried by another worker since, or where the asked
    trials are not these retries (another worker's were queued first): what this call
    failed is then queued for whoever asks next.
    """
    optuna = _optuna()
    state = optuna.trial.TrialState
    every = study.get_trials(deepcopy=False)
    retried = {n for t in every for n in t.system_attrs.get("retry_history", ())}
    old = [every[n] for n in numbers]
    if any(t.state not in (state.RUNNING, state.FAIL) or t.number in retried for t in old):
        return None
    told: list = []
    for t in old:
        if t.state == state.RUNNING:
            try:
                fail(optuna, study, [t], retry=False)
            except (ValueError, RuntimeError):  # failed as stale meanwhile: retried so
                queue_retries(study, told)
                return None
            told.append(t)
    for t in old:  # as Optuna's RetryFailedTrialCallback queues a stale trial
        history = [*t.system_attrs.get("retry_history", ()), t.number]
        attrs = {"failed_trial": history[0], **t.system_attrs, "retry_history": history}
        study.add_trial(optuna.create_trial(state=state.WAITING, params=t.params,
                        distributions=t.distributions, system_attrs=attrs))  # fmt: skip
    group = [ask(study, space) for _ in numbers]
    asked = [study._storage.get_trial_system_attrs(t._trial_id) for t in group]
    if [a.get("retry_history", [None])[-1] for a in asked] != numbers:
        fail(optuna, study, group, retry=True)
        return None
    return group


def _monitored(f: dict, v: dict, monitor: str) -> np.ndarray:
    """The monitored value of every run and epoch from an epoch chunk's logs."""
    log, key = (v, monitor[4:]) if monitor.startswith("val_") else (f, monitor)
    if key not in log:
        known = sorted({*f, *(f"val_{k}" for k in v)})
        raise ValueError(f"`tune(monitor={monitor!r})` is not recorded; the task logs {known}.")
    return np.asarray(log[key], np.float64)


def _tell(study, optuna, trained: _Trained, i: int, monitor: str, sign: float) -> None:
    """Trial ``i``'s score (the mean over seeds and folds of its final ``monitor``) told."""
    if trained.pruned[i]:  # Optuna takes its last reported value
        study.tell(trained.trials[i], state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        return
    f = {"loss": trained.loss[i]} | {k: m[i] for k, m in trained.metrics.items()}
    v = {"loss": trained.val[i]} | {
        k[4:]: m[i] for k, m in trained.metrics.items() if k.startswith("val_")
    }
    last = _monitored(f, v, monitor)[:, -1]
    value = _finite(last.mean(), sign)  # (any non-finite: its mean is)
    study.tell(trained.trials[i], value, skip_if_finished=True)  # (failed as stale: retried)


def _result(trained: _Trained, names, study, has_val: bool) -> TuneResult:
    """The trained trials as a ``TuneResult`` with one axis of trials, and the study."""
    if not trained.trials:
        empty = np.zeros((0, 1, 1))
        return TuneResult(
            configs={n: np.zeros(0) for n in names}, loss=empty,
            val_loss=empty if has_val else None, epochs_run=np.zeros((0, 1), np.int64),
            study=study, trial=np.zeros(0, np.int64), pruned=np.zeros(0, bool),
        )  # fmt: skip
    told = [t.params for t in trained.trials]  # (each a deep copy)
    configs = {n: np.asarray([p[n] for p in told]) for n in names}
    metrics = {
        k: np.stack(m) for k, m in trained.metrics.items() if has_val or not k.startswith("val_")
    }
    params = state = None
    if trained.kept:
        params, state = jax.tree.map(lambda *a: np.stack(a), *trained.kept)
        lead = (len(trained.trials), trained.loss[0].shape[0])
        params, state = with_keys((params, state), stacked(trained.like, *lead))
    return TuneResult(
        configs=configs,
        params=params,
        model_state=state,
        loss=np.stack(trained.loss),
        val_loss=np.stack(trained.val) if has_val else None,
        epochs_run=np.stack(trained.ran),
        metrics=metrics,
        study=study,
        trial=np.asarray([t.number for t in trained.trials], np.int64),
        pruned=np.asarray(trained.pruned),
    )
