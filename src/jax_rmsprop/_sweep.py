"""Hyperparameter sweeps: the whole grid as one ``vmap``-ed, compiled program."""

from __future__ import annotations

import dataclasses
import functools
import io
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.tree_util import Partial

from ._run import _Carry, _start, _step
from ._transform import rmsprop
from .problems import Problem


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The outcome of :func:`sweep`; every array is shaped like the grid.

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

    def to_table(self, k: int = 10) -> str:
        """The best ``k`` rows as an aligned text table."""
        rows = self.best(k)
        if not rows:
            return "(empty sweep)"
        cols = list(rows[0])
        cells = [[_fmt(r[c]) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    def to_csv(self) -> str:
        """Every cell as CSV text, one row per configuration."""
        out = io.StringIO()
        names = list(self.configs)
        out.write(",".join([*names, "final_loss", "steps_to_tol", "diverged"]) + "\n")
        flat = [self.configs[n].ravel() for n in names]
        for i in range(self.final_loss.size):
            vals = [repr(float(a[i])) for a in flat]
            vals += [
                repr(float(self.final_loss.ravel()[i])),
                str(int(self.steps_to_tol.ravel()[i])),
                str(bool(self.diverged.ravel()[i])).lower(),
            ]
            out.write(",".join(vals) + "\n")
        return out.getvalue()


def _fmt(v) -> str:
    return str(v) if isinstance(v, bool | int) else f"{v:.4g}"


def _constrain(tree, mesh: Mesh | None):
    """Shards the leading (config) axis of every leaf over all of the mesh's axes."""
    if mesh is None:
        return tree
    spec = lambda a: PartitionSpec(mesh.axis_names, *([None] * (a.ndim - 1)))  # noqa: E731
    return jax.tree.map(
        lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec(a))), tree
    )


def _make_tx(optimizer, names, options, values) -> optax.GradientTransformation:
    return optimizer(**dict(zip(names, values)), **dict(options))


@functools.partial(jax.jit, static_argnames=("optimizer", "names", "options", "mesh"))
def _start_all(loss, x0, values, optimizer, names, options, mesh):
    def one(*vals):
        return _start(loss, _make_tx(optimizer, names, options, vals), x0)

    return _constrain(jax.vmap(one)(*_constrain(values, mesh)), mesh)


@functools.partial(
    jax.jit,
    static_argnames=("optimizer", "names", "options", "n_steps", "has_tol", "mesh"),
    donate_argnames=("carry",),
)
def _advance_all(
    loss, carry, values, tol, min_loss, optimizer, names, options, n_steps, has_tol, mesh
):
    def one(c: _Carry, *vals):
        tx = _make_tx(optimizer, names, options, vals)

        def body(c, _):
            new = _step(loss, tx, c)
            if has_tol:
                # Converged configs stand still (the step is computed and discarded: vmap).
                done = c.f - min_loss <= tol
                new = jax.tree.map(lambda a, b: jnp.where(done, a, b), c, new)
            return new, None

        return jax.lax.scan(body, c, length=n_steps)[0]

    return _constrain(jax.vmap(one)(carry, *values), mesh)


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
    progress: bool = False,
) -> SweepResult:
    """Runs ``optimizer`` on ``problem`` for every point of the Cartesian product of ``grid``.

    The whole grid is one ``vmap``-ed, jitted program: the optimizer is rebuilt from traced
    hyperparameters inside it (``rmsprop`` needs no ``inject_hyperparams``). Repeated calls
    with the same shapes and static arguments reuse the compiled program.

    Args:
      problem: the :class:`~jax_rmsprop.problems.Problem` to minimize.
      grid: hyperparameter name (a keyword of ``optimizer``) -> 1-D array of values.
      steps: steps per configuration.
      tol: a configuration stops (and counts ``steps_to_tol``) once
        ``loss - problem.min_loss <= tol``.
      optimizer: factory called as ``optimizer(**config, **options)``.
      options: fixed keyword arguments for ``optimizer`` (static: ``eps``, ``centered``...).
      mesh: shard the configuration axis over all devices of this ``jax.sharding.Mesh``.
      chunk_steps: steps per compiled chunk (default: all at once, or 20 chunks with
        ``progress``); between chunks the progress bar moves and, with ``tol``, the sweep
        stops early once every configuration has converged.
      progress: show a progress bar (tqdm if installed, else a line on stderr).

    Returns:
      A :class:`SweepResult`.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`sweep(problem=...)` must be a Problem; got {problem!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`sweep(steps=...)` must be a positive int; got {steps!r}.")
    if not grid:
        raise ValueError("`sweep(grid=...)` needs at least one hyperparameter.")
    names = tuple(grid)
    axes = [np.asarray(grid[n]) for n in names]
    for name, a in zip(names, axes):
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"`sweep(grid={{{name!r}: ...}})` must be a non-empty 1-D array.")
    shape = tuple(a.size for a in axes)
    dtype = problem.x0.dtype
    cells = [m.ravel() for m in np.meshgrid(*axes, indexing="ij")]
    n = cells[0].size
    pad = 0 if mesh is None else (-n) % mesh.size
    values = tuple(jnp.asarray(np.pad(c, (0, pad), mode="edge"), dtype) for c in cells)
    if mesh is not None:
        sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
        values = tuple(jax.device_put(v, sharding) for v in values)
    loss = problem.loss if isinstance(problem.loss, Partial) else Partial(problem.loss)
    static = dict(
        optimizer=optimizer, names=names, options=tuple(sorted((options or {}).items())), mesh=mesh
    )
    min_loss = problem.min_loss or 0.0
    chunk = chunk_steps or (max(1, -(-steps // 20)) if progress else steps)

    carry = _start_all(loss, problem.x0, values, **static)
    f0 = np.asarray(carry.f)
    bar = _Progress(steps, enabled=progress)
    done_steps = 0
    while done_steps < steps:
        k = min(chunk, steps - done_steps)
        carry = _advance_all(
            loss, carry, values, tol or 0.0, min_loss, n_steps=k, has_tol=tol is not None, **static
        )
        done_steps += k
        bar.update(k)
        if tol is not None and bool(jnp.all(carry.f - min_loss <= tol)):
            break
    bar.close()

    final = np.asarray(carry.f)[:n]
    taken = np.asarray(carry.i)[:n]
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


class _Progress:
    """tqdm when it is installed, else a carriage-return line on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.bar = total, 0, None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, unit="step", desc="sweep")
            except ImportError:
                pass

    def update(self, k: int) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.enabled:
            print(f"\rsweep: {self.done}/{self.total} steps", end="", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)
