"""Whole optimization runs compiled into one XLA program."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.tree_util import Partial

from .problems import Problem


class Trajectory(NamedTuple):
    """The result of :func:`run`.

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


class _Carry(NamedTuple):
    i: jax.Array
    x: Any
    opt_state: Any
    f: jax.Array
    g: Any


def _start(loss, tx, x0) -> _Carry:
    f, g = jax.value_and_grad(loss)(x0)
    return _Carry(jnp.zeros([], jnp.int32), x0, tx.init(x0), f, g)


def _step(loss, tx, c: _Carry) -> _Carry:
    updates, opt_state = tx.update(c.g, c.opt_state, c.x)
    x = optax.apply_updates(c.x, updates)
    f, g = jax.value_and_grad(loss)(x)
    return _Carry(c.i + 1, x, opt_state, f, g)


def _optimize(loss, tx, x0, steps: int, tol, min_loss, path: bool):
    """The traced body shared by :func:`run` and the sweeps (which ``vmap`` it)."""
    c0 = _start(loss, tx, x0)
    if tol is None:

        def body(c, _):
            c = _step(loss, tx, c)
            return c, (c.x, c.f) if path else c.f

        c, ys = jax.lax.scan(body, c0, length=steps)
        xs, fs = ys if path else (None, ys)
        converged = jnp.zeros([], bool)
    else:
        n = steps + 1
        xs0 = jax.tree.map(lambda a: jnp.zeros((n, *a.shape), a.dtype), x0) if path else None
        fs0 = jnp.zeros((n - 1,), c0.f.dtype)

        def cond(state):
            c, _, _ = state
            return (c.i < steps) & ~(c.f - min_loss <= tol)

        def body(state):
            c, xs, fs = state
            c = _step(loss, tx, c)
            fs = fs.at[c.i - 1].set(c.f)
            if path:
                xs = jax.tree.map(lambda buf, a: buf.at[c.i - 1].set(a), xs, c.x)
            return c, xs, fs

        c, xs, fs = jax.lax.while_loop(cond, body, (c0, xs0, fs0))
        # Steps not taken repeat the final point, as if the optimizer stood still.
        taken = jnp.arange(n - 1) < c.i
        fs = jnp.where(taken, fs, c.f)
        if path:
            xs = jax.tree.map(
                lambda buf, a: jnp.where(taken.reshape((-1,) + (1,) * a.ndim), buf[:-1], a),
                xs,
                c.x,
            )
        converged = c.f - min_loss <= tol
    losses = jnp.concatenate([c0.f[None], fs])
    params = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), x0, xs) if path else c.x
    return Trajectory(params, losses, c.i, converged)


@functools.partial(jax.jit, static_argnames=("tx", "steps", "path", "has_tol"))
def _run_compiled(loss, tx, x0, steps, tol, min_loss, path, has_tol):
    return _optimize(loss, tx, x0, steps, tol if has_tol else None, min_loss, path)


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

    ``lax.scan`` for a fixed number of steps; with ``tol``, ``lax.while_loop`` that stops
    once ``loss(x) - min_loss <= tol`` (``min_loss`` is the problem's, or 0 for a plain
    loss function). Each step is ``x <- optax.apply_updates(x, tx.update(grad(x), s, x))``,
    the same numbers as a Python loop over ``tx.update``.

    Args:
      problem_or_loss: a :class:`~jax_rmsprop.problems.Problem`, or a loss function
        ``loss(x) -> scalar`` (then ``x0`` is required).
      tx: the optimizer. The program is compiled once per ``tx`` object and shapes.
      steps: the maximum number of steps.
      x0: starting point (default: the problem's); any pytree of arrays.
      tol: stop once the loss is within ``tol`` of the minimum.
      path: return the whole parameter path (memory ``steps * x0.size``) or only the end.

    Returns:
      A :class:`Trajectory`.
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
    return _run_compiled(
        loss, tx, x0, steps, 0.0 if tol is None else tol, min_loss, path, tol is not None
    )
