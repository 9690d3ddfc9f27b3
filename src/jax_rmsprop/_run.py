"""Whole optimization runs compiled into one XLA program."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.tree_util import Partial

from . import _loop as loop
from ._traced import jit_traced
from .problems import Problem


class Trajectory(NamedTuple):
    """The result of [`run`][jax_rmsprop.run].

    Attributes:
      params: the parameter path, shape ``(steps + 1, *x0.shape)`` (``path=True``), or the
        final parameters. After convergence to ``tol`` the path stays at the final point.
      losses: ``loss(params[i])`` for ``i = 0 .. steps``, shape ``(steps + 1,)``;
        after convergence it repeats the final loss.
      steps: number of optimizer steps taken (``steps``, or fewer once ``tol`` is met).
      converged: whether ``loss - min_loss <= tol`` was reached (False without ``tol``).
    """

    params: Any
    losses: jax.Array
    steps: jax.Array
    converged: jax.Array


@functools.partial(jit_traced, static_argnames=("steps", "path"))
def _run_compiled(loss, tx, x0, steps, tol, min_loss, path):
    c0 = loop.start(loss, tx, x0)
    record = (lambda c: (c.x, c.f)) if path else (lambda c: c.f)
    c, hist = loop.advance(loss, tx, c0, steps, tol=tol, min_loss=min_loss, record=record)
    xs, fs = hist if path else (None, hist)
    losses = jnp.concatenate([c0.f[None], fs])
    params = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), x0, xs) if path else c.x
    return Trajectory(params, losses, c.i, loop.reached(c, tol, min_loss))


def run(
    problem_or_loss: Problem | Any,
    tx: optax.GradientTransformation,
    steps: int,
    *,
    x0: Any = None,
    tol: float | None = None,
    path: bool = True,
) -> Trajectory:
    """Runs ``steps`` optimizer steps as one compiled XLA program.

    One ``lax.while_loop`` (the package's single loop, shared with the sweeps) that stops
    after ``steps`` steps or once ``loss(x) - min_loss <= tol`` (``min_loss`` is the
    problem's, or 0 for a plain loss function). Each step is
    ``x <- optax.apply_updates(x, tx.update(grad(x), s, x))``, the same numbers as a
    Python loop over ``tx.update``.

    Args:
      problem_or_loss: a ``Problem``, or a loss function
        ``loss(x) -> scalar`` (then ``x0`` is required).
      tx: the optimizer. The program is compiled once per shapes and ``tx``'s
        structure: this library's optimizers pass their numbers (but ``eps``) as traced
        values, so a loop over learning rates, decays or momenta compiles once; any other
        transformation (an optax chain) compiles once per object.
      steps: the maximum number of steps.
      x0: starting point (default: the problem's); any pytree of arrays.
      tol: stop once the loss is within ``tol`` of the minimum.
      path: return the whole parameter path (memory ``steps * x0.size``) or only the end.

    Returns:
      A [`Trajectory`][jax_rmsprop.Trajectory].
    """
    if isinstance(problem_or_loss, Problem):
        loss, min_loss = problem_or_loss.loss, problem_or_loss.min_loss or 0.0
        x0 = problem_or_loss.x0 if x0 is None else x0
    elif callable(problem_or_loss):
        loss, min_loss = problem_or_loss, 0.0
        if x0 is None:
            raise ValueError("`run(x0=...)` is required when a plain loss function is given.")
    else:
        raise ValueError(
            f"`run(problem_or_loss=...)` must be a Problem or a callable; got {problem_or_loss!r}."
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`run(steps=...)` must be a positive int; got {steps!r}.")
    if tol is not None and not tol >= 0:
        raise ValueError(f"`run(tol=...)` must be >= 0; got {tol!r}.")
    if not isinstance(loss, Partial):
        loss = Partial(loss)
    x0 = jax.tree.map(jnp.asarray, x0)
    return _run_compiled(loss, tx, x0, steps, tol, min_loss, path)
