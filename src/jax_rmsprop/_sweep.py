"""Hyperparameter sweeps: the whole grid as one ``vmap``-ed, compiled program."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.tree_util import Partial

from . import _loop as loop
from . import _resume
from ._host import device_copy, to_host
from ._resumable import Loop, resumable
from ._rmsprop import rmsprop
from ._space import check_traceable, make_tx, shard_runs
from ._space import grid as grid_cells
from ._sweep_progress import SweepInterrupted
from .problems import Problem, Task


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The outcome of [`sweep`][jax_rmsprop.sweep]; every array is shaped like the grid.

    Attributes:
      configs: hyperparameter name -> array of its value in each cell.
      final_loss: loss after the last step taken.
      steps_to_tol: steps taken to reach ``tol``, or -1 where it was not reached
        (always -1 without ``tol``).
      diverged: final loss not finite, or above the starting loss.
    """

    configs: dict[str, np.ndarray]
    final_loss: np.ndarray
    steps_to_tol: np.ndarray
    diverged: np.ndarray

    def best(self, k: int = 5) -> list[dict[str, float]]:
        """The best ``k`` configurations.

        Ranked by: not diverged, then fewest steps to ``tol`` (converged first), then
        lowest final loss.
        """
        bad = self.diverged | ~np.isfinite(self.final_loss)
        loss = np.where(bad, np.inf, self.final_loss)
        steps = np.where(self.steps_to_tol < 0, np.inf, self.steps_to_tol.astype(np.float64))
        order = np.lexsort((loss.ravel(), steps.ravel(), bad.ravel()))[:k]
        rows = []
        for i in order:
            row = {name: float(v.ravel()[i]) for name, v in self.configs.items()}
            row["final_loss"] = float(self.final_loss.ravel()[i])
            row["steps_to_tol"] = int(self.steps_to_tol.ravel()[i])
            row["diverged"] = bool(self.diverged.ravel()[i])
            rows.append(row)
        return rows


def _constrain(tree, mesh: Mesh | None):
    """Shards the leading (config) axis of every leaf over all of the mesh's axes."""
    if mesh is None:
        return tree
    spec = lambda a: PartitionSpec(mesh.axis_names, *([None] * (a.ndim - 1)))  # noqa: E731
    return jax.tree.map(
        lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec(a))), tree
    )


@functools.partial(jax.jit, static_argnames=("optimizer", "names", "options", "mesh"))
def _start_all(loss, x0, values, optimizer, names, options, mesh):
    def one(*vals):
        return loop.start(loss, make_tx(optimizer, names, options, vals), x0)

    return _constrain(jax.vmap(one)(*_constrain(values, mesh)), mesh)


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "names", "options", "n_steps", "mesh"),
    donate_argnames=("carry",),
)
def _advance_all(loss, carry, values, tol, min_loss, optimizer, names, options, n_steps, mesh):
    def one(c: loop.Carry, *vals):
        tx = make_tx(optimizer, names, options, vals)
        return loop.advance(loss, tx, c, n_steps, tol=tol, min_loss=min_loss, exit_early=False)[0]

    return _constrain(jax.vmap(one)(carry, *values), mesh)


def _advance_in_chunks(
    loss, carry, values, steps, chunk, tol, min_loss, progress, static, done_steps, run: Loop
):
    """Every configuration ``steps`` steps, ``chunk`` per call; stops once all met ``tol``.

    Goes on from ``done_steps``; gives the checkpoint (if any) the carry after each chunk.
    Ctrl-C or SIGTERM stops it after the chunk in flight (a second Ctrl-C, or one raised
    by ``progress``, at once). Returns the carry (``None`` if a chunk was cut mid-call:
    its input was donated), the steps done, and the signal that stopped it or ``None``.
    """
    stop = None
    compiled = False
    try:
        while done_steps < steps:
            k = min(chunk, steps - done_steps)
            carry = _advance_all(loss, carry, values, tol, min_loss, n_steps=k, **static)
            if progress is not None and not compiled:  # the program is compiled, and runs
                compiled = True
                progress(done_steps, steps)
            done_steps += k
            if progress is not None:  # the device runs ahead: count what it has done
                jax.block_until_ready(carry)
            last = done_steps >= steps
            if tol is not None and bool(to_host(jnp.all(loop.reached(carry, tol, min_loss)))):
                last = True
            # (a copy: the next chunk donates the carry)
            run.boundary(
                functools.partial(device_copy, carry),
                functools.partial(dict, steps=done_steps),
                last,
            )
            if progress is not None:
                progress(done_steps, steps)
            if last:
                break
            if run.requested is not None:
                stop = run.requested
                break
    except KeyboardInterrupt:
        stop = "SIGINT"
    if stop is not None:
        try:
            jax.block_until_ready(carry)
        except RuntimeError:  # cut mid-call: the donated input is gone
            carry = None
        if carry is not None:  # keep the last whole chunk
            run.boundary(
                functools.partial(device_copy, carry),
                functools.partial(dict, steps=done_steps),
                True,
            )
    return carry, done_steps, stop


def _outcome(carry, n, shape, names, cells, tol, min_loss, f0) -> SweepResult:
    """The sweep's result from its carry (after all the steps, or where it stopped)."""
    final = to_host(carry.f)[:n]
    taken = to_host(carry.i)[:n]
    if tol is not None:
        steps_to_tol = np.where(final - min_loss <= tol, taken, -1)
    else:
        steps_to_tol = np.full(n, -1)
    diverged = ~np.isfinite(final) | (final > f0[:n])
    return SweepResult(
        configs={name: c.reshape(shape) for name, c in zip(names, cells)},
        final_loss=final.reshape(shape),
        steps_to_tol=steps_to_tol.reshape(shape),
        diverged=diverged.reshape(shape),
    )


def _fingerprint(problem: Problem, names, cells, **settings) -> dict[str, str]:
    """What decides a problem sweep's numbers, as text (see ``_resume``)."""
    return _resume.fingerprint(
        texts={"problem": f"{problem.name}: {_resume.name_of(problem.loss)}"},
        digests={"x0": problem.x0},
        grid=(names, cells),
        settings=settings,
    )


def sweep(
    problem: Problem,
    grid: Mapping[str, Any],
    steps: int,
    *,
    tol: float | None = None,
    optimizer: Callable[..., optax.GradientTransformation] = rmsprop,
    options: Mapping[str, Any] | None = None,
    mesh: Mesh | None = None,
    chunk_steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> SweepResult:
    """Runs ``optimizer`` on ``problem`` for every point of the Cartesian product of ``grid``.

    The whole grid is one ``vmap``-ed, jitted program: the optimizer is rebuilt from traced
    hyperparameters inside it ([`rmsprop`][jax_rmsprop.rmsprop] needs no
    ``inject_hyperparams``). Repeated calls with the same shapes and static arguments reuse
    the compiled program. Training on
    data (a [`Task`][jax_rmsprop.Task]) is [`tune`][jax_rmsprop.tune]'s.

    Args:
      problem: the ``Problem`` to minimize.
      grid: hyperparameter name (a keyword of ``optimizer``) -> 1-D array of values.
      steps: steps per configuration.
      tol: a configuration stops (and counts ``steps_to_tol``) once
        ``loss - problem.min_loss <= tol``.
      optimizer: factory called as ``optimizer(**config, **options)``.
      options: fixed keyword arguments for ``optimizer`` (static: ``eps``, ``centered``...).
      mesh: shard the configuration axis over all devices of this ``jax.sharding.Mesh``.
      chunk_steps: steps per compiled chunk (default: all at once, or 20 chunks with
        ``progress`` or ``checkpoint``); between chunks ``progress`` is called and, with
        ``tol``, the sweep stops early once every configuration has converged.
      progress: called as ``progress(steps_done, steps)`` once the program is compiled
        and running (``steps_done``: where it starts, 0 unless resumed), then after each
        chunk has run (waited for: the count is the device's, not the dispatches'); the
        CLI draws its progress bar with it.
      checkpoint: a directory: the sweep's carry is saved there (``sweep.npz``,
        atomically, in the background) after each chunk of ``chunk_steps`` steps, and a
        call that finds it goes on from there, ending with the same numbers, bit for bit,
        as a sweep never interrupted. A checkpoint of a different call raises
        [`CheckpointMismatch`][jax_rmsprop.CheckpointMismatch] saying what differs.

    Returns:
      A [`SweepResult`][jax_rmsprop.SweepResult].
    """
    if isinstance(problem, Task):
        raise TypeError(
            "`sweep(problem=...)` got a Task: sweeps run closed-form Problems; train a Task "
            "with `jax_rmsprop.tune(task, space, epochs, ...)`."
        )
    if not isinstance(problem, Problem):
        raise TypeError(f"`sweep(problem=...)` must be a Problem; got {problem!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`sweep(steps=...)` must be a positive int; got {steps!r}.")
    names, cells, shape = grid_cells(grid, "sweep")
    check_traceable(optimizer, names, options, [c[0] for c in cells], problem.x0, "sweep")
    dtype = jax.tree.leaves(problem.x0)[0].dtype
    n = cells[0].size
    pad = 0 if mesh is None else (-n) % mesh.size
    values = tuple(jnp.asarray(np.pad(c, (0, pad), mode="edge"), dtype) for c in cells)
    values = shard_runs(values, mesh)
    loss = problem.loss if isinstance(problem.loss, Partial) else Partial(problem.loss)
    static = dict(
        optimizer=optimizer, names=names, options=tuple(sorted((options or {}).items())), mesh=mesh
    )
    min_loss = problem.min_loss or 0.0
    chunk = chunk_steps or (max(1, -(-steps // 20)) if progress or checkpoint else steps)

    carry = _start_all(loss, problem.x0, values, **static)
    f0 = to_host(carry.f)
    done_steps = 0
    settings: dict[str, Any] = dict(steps=steps, tol=tol, options=sorted((options or {}).items()))
    fingerprint = lambda: _fingerprint(  # noqa: E731
        problem, names, cells, optimizer=_resume.name_of(optimizer), **settings
    )
    with resumable("sweep", checkpoint, "sweep", fingerprint) as run:
        if (got := run.load(lambda _: carry)) is not None:
            carry, done_steps = got[0], got[1]["steps"]
        carry, done, stop = _advance_in_chunks(
            loss, carry, values, steps, chunk, tol, min_loss, progress, static, done_steps, run
        )
    if stop is not None:
        partial = None
        if carry is not None:
            partial = _outcome(carry, n, shape, names, cells, tol, min_loss, f0)
        raise SweepInterrupted(partial, run.path, done)
    return _outcome(carry, n, shape, names, cells, tol, min_loss, f0)
