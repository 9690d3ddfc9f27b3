"""The optimization loop behind ``run``, ``sweep`` and ``fit`` (its minibatch steps).

The carry, the step and the stopping rule are written here once (optimistix's
``iterative_solve`` is the model). ``advance`` is a ``lax.while_loop`` that stops
after ``n_steps`` steps or once the loss is within ``tol`` of ``min_loss``, or, for the
vmapped sweeps, a fixed-length ``lax.scan`` in which an iterate that met the rule stands
still: the same steps either way, so a sweep's cell equals the single run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class Carry(NamedTuple):
    """The loop's state between steps.

    Attributes:
      i: steps taken.
      x: the parameters.
      opt_state: the optimizer's state.
      f: ``loss(x)``.
      g: ``grad(loss)(x)``, consumed by the next step.
    """

    i: jax.Array
    x: Any
    opt_state: Any
    f: jax.Array
    g: Any


def start(loss: Callable, tx: optax.GradientTransformation, x0: Any) -> Carry:
    """The carry at ``x0``, before any step."""
    f, g = jax.value_and_grad(loss)(x0)
    return Carry(jnp.zeros([], jnp.int32), x0, tx.init(x0), f, g)


def apply(
    tx: optax.GradientTransformation, x: Any, opt_state: Any, g: Any, value: Any = None
) -> tuple[Any, Any]:
    """The update itself, shared by every loop: ``x <- x + tx.update(g, state, x)``.

    With ``value`` (the loss), a transformation that takes extra arguments is given
    ``value=`` (``optax.contrib``'s ``reduce_on_plateau``); others are not.
    """
    if value is not None and isinstance(tx, optax.GradientTransformationExtraArgs):
        updates, opt_state = tx.update(g, opt_state, x, value=value)
    else:
        updates, opt_state = tx.update(g, opt_state, x)
    return optax.apply_updates(x, updates), opt_state


def step(loss: Callable, tx: optax.GradientTransformation, c: Carry) -> Carry:
    """One optimizer step on a fixed objective, keeping the new point's loss and gradient."""
    x, opt_state = apply(tx, c.x, c.opt_state, c.g)
    f, g = jax.value_and_grad(loss)(x)
    return Carry(c.i + 1, x, opt_state, f, g)


def reached(
    c: Carry, tol: jax.typing.ArrayLike | None, min_loss: jax.typing.ArrayLike
) -> jax.Array:
    """The stopping rule: ``loss - min_loss <= tol`` (never, without ``tol``)."""
    if tol is None:
        return jnp.zeros([], bool)
    return c.f - min_loss <= tol


def advance(
    loss: Callable,
    tx: optax.GradientTransformation,
    c: Carry,
    n_steps: int,
    *,
    tol: jax.typing.ArrayLike | None = None,
    min_loss: jax.typing.ArrayLike = 0.0,
    record: Callable[[Carry], Any] | None = None,
    exit_early: bool = True,
) -> tuple[Carry, Any]:
    """Takes up to ``n_steps`` steps from ``c``, stopping once ``reached``.

    Args:
      loss: the objective, ``loss(x) -> scalar``.
      tx: the optimizer.
      c: where to start (from ``start`` or an earlier ``advance``).
      n_steps: the most steps to take (static).
      tol: stop once ``loss - min_loss <= tol``; ``None`` runs all ``n_steps``.
      min_loss: the minimum the tolerance is measured from.
      record: what to keep after each step, e.g. ``lambda c: c.f``; ``None`` keeps nothing.
      exit_early: with ``tol``, leave the loop once the rule is met (``lax.while_loop``);
        ``False`` runs a fixed-length ``lax.scan`` in which a stopped iterate stands still.
        The numbers are the same; the scan is faster under ``vmap`` (the sweeps, which
        stop between chunks instead), where a while loop reduces its condition over the
        whole batch at every step.

    Returns:
      The final carry and the history: ``record`` stacked over ``n_steps`` (entry k after
      step k + 1), where steps not taken repeat the final point; ``None`` without ``record``.
    """
    if tol is None or not exit_early:

        def scan_body(c, _):
            new = step(loss, tx, c)
            if tol is not None:
                done = reached(c, tol, min_loss)
                new = jax.tree.map(lambda a, b: jnp.where(done, a, b), c, new)
            return new, None if record is None else record(new)

        return jax.lax.scan(scan_body, c, length=n_steps)

    hist = None
    if record is not None:
        hist = jax.tree.map(
            lambda a: jnp.zeros((n_steps, *a.shape), a.dtype), jax.eval_shape(record, c)
        )

    def active(state):
        c, j, _ = state
        return (j < n_steps) & ~reached(c, tol, min_loss)

    def body(state):
        c, j, hist = state
        c = step(loss, tx, c)
        if record is not None:
            hist = jax.tree.map(lambda buf, a: buf.at[j].set(a), hist, record(c))
        return c, j + 1, hist

    c, taken, hist = jax.lax.while_loop(active, body, (c, jnp.zeros([], jnp.int32), hist))
    if record is not None:
        later = jnp.arange(n_steps, dtype=taken.dtype) >= taken
        hist = jax.tree.map(
            lambda buf, a: jnp.where(later.reshape((-1,) + (1,) * a.ndim), a[None], buf),
            hist,
            record(c),
        )
    return c, hist
