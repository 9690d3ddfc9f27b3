"""Population-based training (Jaderberg et al. 2017) inside one compiled program.

A population of ``population`` runs trains with traced hyperparameters; every
``interval`` epochs the worst ``quantile`` of them copy the parameters and optimizer state
of members of the best ``quantile`` (a gather on the device: the weights never visit the
host) and explore: each hyperparameter of the copy is multiplied by 0.8 or 1.2 (kept
inside its distribution's bounds) or, with probability ``resample``, drawn afresh. The
hyperparameters are inputs of the program, so the new values train in the same compiled
program: one compile for the whole run.

Every member's lineage (whose state it continued at each interval) and hyperparameter
schedule are recorded; ``PBTResult.replay(task)`` retrains a member with ``fit``, segment
by segment, and ends where the member ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from ._inputs import direction
from ._model import is_nnx_module
from ._plan import logged_names, make_plan, model_key, seed_keys
from ._rmsprop import rmsprop
from ._space import check_space, draw
from .problems import Task


@dataclasses.dataclass(frozen=True)
class PBTResult:
    """A population-based training: what every member trained, and from whom.

    Attributes:
      schedule: hyperparameter name -> ``(intervals, population)``: the value each member
        trained with in each interval.
      parent: ``(intervals, population)``: the member whose state each member started the
        interval from (itself, unless it was exploited at the interval's start).
      loss, val_loss: ``(population, epochs)``: each member's epoch logs (a member that
        copied another continues that one's run from then on).
      metrics: every metric of the task's loss and its ``val_`` twin, likewise.
      score: ``(population,)``: the final monitored value (lower is better: negated
        for accuracy-like monitors).
      best: the member with the best final score.
      interval: epochs between exploit steps.
      optimizer, options: what each member's optimizer was built with.
    """

    schedule: dict[str, np.ndarray]
    parent: np.ndarray
    loss: np.ndarray
    val_loss: np.ndarray | None
    metrics: dict[str, np.ndarray]
    score: np.ndarray
    best: int
    interval: int
    seed: int
    optimizer: Callable[..., optax.GradientTransformation] = rmsprop
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def lineage(self, member: int | None = None) -> list[tuple[int, int, dict[str, float], int]]:
        """``member``'s history (default: the best) as ``(start, end, hyperparameters, slot)``.

        One entry per interval: the epochs ``[start, end)`` trained with those
        hyperparameters in population slot ``slot`` (the member's ancestors).
        """
        slot = self.best if member is None else int(member)
        chain = []
        for j in range(self.parent.shape[0] - 1, -1, -1):
            chain.append(slot)
            slot = int(self.parent[j, slot])
        chain.reverse()
        epochs = self.loss.shape[1]
        return [
            (
                j * self.interval,
                min((j + 1) * self.interval, epochs),
                {n: float(v[j, s]) for n, v in self.schedule.items()},
                s,
            )
            for j, s in enumerate(chain)
        ]

    def replay(self, task: Task, member: int | None = None) -> Any:
        """``member`` (default: the best) retrained with ``fit``, interval by interval.

        Starts from ``task.init`` with the run's initialisation key, and trains each
        interval with that interval's hyperparameters, continuing the parameters and
        optimizer state (``fit(initial_epoch=..., opt_state=...)``). Returns the last
        [`History`][jax_rmsprop.History], whose losses equal the member's last interval.
        """
        from ._fit import fit

        init_key, shuffle_key = seed_keys(self.seed, 0)
        made = task.init(init_key)
        params, state = made if task.model_state else (made, None)
        rng = model_key(self.seed, 0) if task.model_state else None
        opt_state, hist = None, None
        for start, end, hyper, _ in self.lineage(member):
            tx = self.optimizer(**hyper, **self.options)
            hist = fit(
                task.loss, params, tx, task.data, epochs=end, initial_epoch=start,
                batch_size=task.batch_size, key=shuffle_key, validation=task.validation,
                opt_state=opt_state, state=state, rng=rng, check_finite=task.check_finite,
            )  # fmt: skip
            opt_state = hist.opt_state
            if not is_nnx_module(params):  # an NNX module is trained in place
                params, state = hist.params, hist.state
        return hist


def _checked(task, space, epochs, population, interval, quantile, resample) -> tuple:
    """``pbt``'s arguments checked, each error naming its argument; the space's names."""
    if not isinstance(task, Task):
        raise TypeError(f"`pbt(task=...)` must be a Task; got {task!r}.")
    for name, v in (("epochs", epochs), ("population", population), ("interval", interval)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"`pbt({name}=...)` must be a positive int; got {v!r}.")
    if population < 2:
        raise ValueError(f"`pbt(population=...)` needs at least 2 members; got {population}.")
    if not 0 < quantile <= 0.5:
        raise ValueError(f"`pbt(quantile=...)` must be in (0, 0.5]; got {quantile!r}.")
    if not 0 <= resample <= 1:
        raise ValueError(f"`pbt(resample=...)` must be in [0, 1]; got {resample!r}.")
    names = check_space(space, "pbt", distributions=True)
    if any(type(d).__name__ == "CategoricalDistribution" for d in space.values()):
        raise ValueError(
            "`pbt(space=...)` explores by perturbing numbers: give Float/IntDistributions "
            "(fix categorical options with `options=`)."
        )
    return names


def pbt(
    task: Task,
    space: Mapping[str, Any],
    epochs: int,
    *,
    population: int = 32,
    interval: int = 1,
    quantile: float = 0.25,
    resample: float = 0.0,
    seed: int = 0,
    optimizer: Callable[..., optax.GradientTransformation] = rmsprop,
    options: Mapping[str, Any] | None = None,
    monitor: str | None = None,
    mesh: Mesh | None = None,
) -> PBTResult:
    """Population-based training of ``task``: ``population`` runs, exploit and explore.

    Args:
      task: the [`Task`][jax_rmsprop.Task] to train; every member starts from the same
        initialisation and
        shuffles with the same key (seed 0 of ``seed``, as [`tune`][jax_rmsprop.tune]'s seed 0).
      space: hyperparameter name -> an Optuna ``FloatDistribution`` (or
        ``IntDistribution``): the initial values are drawn from it, and explored values
        stay inside its bounds.
      epochs: epochs per member.
      population: members trained together, as one vmapped program.
      interval: epochs between exploit/explore steps.
      quantile: the fraction of the population that is replaced (the worst) and that
        is copied (the best) at each step.
      resample: the probability that an explored hyperparameter is drawn afresh from its
        distribution instead of perturbed by x0.8 or x1.2.
      seed: the root of the training keys and of the draws.
      optimizer: factory called as ``optimizer(**config, **options)``.
      options: fixed keyword arguments for ``optimizer``.
      monitor: what ranks the members: ``"val_loss"`` (default with validation data,
        else ``"loss"``) or a metric of the task's loss (accuracy-like: higher is better).
      mesh: shard the population over all devices of this ``jax.sharding.Mesh``.

    Returns:
      A [`PBTResult`][jax_rmsprop.PBTResult].

    Raises:
      ValueError: for bad arguments, named; for a population too large for the memory
        free for its program (with the largest that fits).
    """
    names = _checked(task, space, epochs, population, interval, quantile, resample)
    rng = np.random.default_rng([seed, 1])
    _, cells, _ = draw(space, population, seed, call="pbt")
    values = np.stack(cells).astype(np.float64)  # (names, population)
    plan = make_plan(task, list(values), names, 1, seed, None, optimizer, options, None, None, mesh)
    if (fits := plan.largest_fitting(population, min(interval, epochs))) is not None:
        raise ValueError(
            f"`pbt(population={population})`: the population trains as one program, and it "
            f"does not fit in the memory free for it; use population <= {fits}."
        )
    has_val = task.validation is not None
    monitor = monitor or ("val_loss" if has_val else "loss")
    sign = direction(monitor, "auto", "pbt")
    idx = np.arange(population)
    n_int = -(-epochs // interval)
    schedule = np.empty((n_int, *values.shape))
    parent = np.tile(idx, (n_int, 1))
    logs: list = []
    carry: Any = None
    for j in range(n_int):
        if j > 0:  # exploit and explore, from the scores of the interval that ended
            score = sign * _last(logs[-1], monitor)
            src = _exploit(score, quantile, rng)
            parent[j] = src
            carry = jax.tree.map(lambda a: a[src], carry)  # noqa: B023 (on the device)
            values = _explore(values, src, space, names, resample, rng)
        schedule[j] = values
        first, n = j * interval, min(interval, epochs - j * interval)
        step = dataclasses.replace(plan, runs=list(values))
        carry, log = step.advance(idx, carry, first, n)
        logs.append(log)
    f = jax.tree.map(lambda *a: np.concatenate(a, axis=1), *[x[0] for x in logs])
    v = jax.tree.map(lambda *a: np.concatenate(a, axis=1), *[x[1] for x in logs])
    score = sign * _last((f, v), monitor)
    score = np.where(np.isfinite(score), score, np.inf)
    return PBTResult(
        schedule={n: schedule[:, i] for i, n in enumerate(names)},
        parent=parent,
        loss=f["loss"],
        val_loss=v["loss"] if has_val else None,
        metrics=_metrics(f, v, plan.recipe.metrics, has_val),
        score=score,
        best=int(np.argmin(score)),
        interval=interval,
        seed=seed,
        optimizer=optimizer,
        options=dict(options or {}),
    )


def _metrics(f: dict, v: dict, metrics: tuple, has_val: bool) -> dict:
    """Each logged metric and its ``val_`` twin (with validation data), ``(members, epochs)``."""
    out = {}
    for name in logged_names(metrics):
        if has_val or not name.startswith("val_"):
            out[name] = v[name[4:]] if name.startswith("val_") else f[name]
    return out


def _last(log: tuple[dict, dict], monitor: str) -> np.ndarray:
    f, v = log
    source, key = (v, monitor[4:]) if monitor.startswith("val_") else (f, monitor)
    if key not in source:
        known = sorted({*f, *(f"val_{k}" for k in v)})
        raise ValueError(f"`pbt(monitor={monitor!r})` is not recorded; the task logs {known}.")
    return np.asarray(source[key], np.float64)[:, -1]


def _exploit(score: np.ndarray, quantile: float, rng: np.random.Generator) -> np.ndarray:
    """Each member's source: itself, or for the worst ``quantile`` a random top member.

    Non-finite scores rank last (a diverged member is always replaced).
    """
    p = score.size
    k = max(1, int(round(quantile * p)))
    order = np.argsort(np.where(np.isfinite(score), score, np.inf), kind="stable")
    src = np.arange(p)
    src[order[-k:]] = rng.choice(order[:k], size=k)
    return src


def _explore(values, src, space, names, resample: float, rng) -> np.ndarray:
    """The copies' hyperparameters: the source's, x0.8 or x1.2 (or redrawn), in bounds."""
    out = values.copy()
    moved = np.flatnonzero(src != np.arange(src.size))
    for i, name in enumerate(names):
        dist = space[name]
        new = values[i, src[moved]] * rng.choice([0.8, 1.2], size=moved.size)
        fresh = draw({name: dist}, max(1, moved.size), int(rng.integers(2**31)), call="pbt")[1][0]
        new = np.where(rng.random(moved.size) < resample, fresh[: moved.size], new)
        new = np.clip(new, dist.low, dist.high)
        if type(dist).__name__ == "IntDistribution":
            new = np.round(new)
        out[i, moved] = new
    return out
