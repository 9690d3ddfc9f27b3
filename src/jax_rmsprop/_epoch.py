"""The epoch kernel shared by ``fit`` and training sweeps: batching, one epoch, evaluation.

An epoch is a ``lax.scan`` over the full minibatches (the data stay on the device; a
batch is a gather by index from the epoch's permutation) and one more step on the last,
partial batch. Each step computes the batch's loss, metrics and new model state through
the model protocol (``Model``) and hands the loss value to the optimizer
(``tx.update(grads, state, params, value=loss)``), so value-driven transformations such
as ``optax.contrib.reduce_on_plateau`` work.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from . import _loop as loop
from ._jax_compat import reshard
from ._model import Model


def batches(perm: jax.Array, batch_size: int, drop_last: bool):
    """The full batches' indices ``(k, batch_size)`` and the partial batch's (or None)."""
    full = perm.shape[0] // batch_size
    rest = perm[full * batch_size :]
    head = perm[: full * batch_size].reshape(full, batch_size)
    return head, (None if drop_last or rest.shape[0] == 0 else rest)


def take(data: Any, idx: jax.Array, sharding=None) -> Any:
    """Examples ``idx`` of ``data``, their axis spread by ``sharding`` when given."""
    batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
    if sharding is None:
        return batch
    if len(idx) % sharding.mesh.size:  # the last, partial batch: every device takes it all
        return batch
    explicit = jax.sharding.AxisType.Explicit in sharding.mesh.axis_types
    split = reshard if explicit else jax.lax.with_sharding_constraint
    return jax.tree.map(lambda a: split(a, _leading(sharding, a.ndim)), batch)


def _leading(sharding: NamedSharding, ndim: int) -> NamedSharding:
    """``sharding``'s split of the leading axis, for an array of rank ``ndim``."""
    spec = PartitionSpec(sharding.spec[0], *([None] * (ndim - 1)))
    return NamedSharding(sharding.mesh, spec)


def order(data: Any, rows: jax.Array | None, key=None, epoch=None) -> jax.Array:
    """The examples' indices in visiting order.

    All of ``data``, or only ``rows`` of it (a fold); permuted by ``fold_in(key, epoch)``
    when a key is given.
    """
    n = jax.tree.leaves(data)[0].shape[0] if rows is None else rows.shape[0]
    perm = (
        jnp.arange(n) if key is None else jax.random.permutation(jax.random.fold_in(key, epoch), n)
    )
    return perm if rows is None else rows[perm]


def step_key(rng: jax.Array | None, epoch, step) -> jax.Array | None:
    """The model's key for ``step`` of ``epoch``: ``fold_in(fold_in(rng, epoch), step)``."""
    if rng is None:
        return None
    return jax.random.fold_in(jax.random.fold_in(rng, epoch), step)


def train_epoch(
    model: Model,
    tx: optax.GradientTransformation,
    params,
    state,
    opt_state,
    data,
    key,
    epoch,
    batch_size: int,
    drop_last: bool = False,
    rows=None,
    sharding=None,
    rng=None,
    keep_finite: bool = False,
):
    """One epoch (traced): ``(params, state, opt_state, logs)``.

    With ``keep_finite``, an epoch whose loss or new parameters are not finite returns
    the parameters and states it started from (the last finite ones), and ``logs`` holds
    ``"finite"``, whether it did not.

    ``logs`` maps ``"loss"`` and each metric to its epoch mean, the batches' values
    weighted by their sizes (as Keras reports them). ``rows`` restricts the epoch to those
    examples of ``data`` (cross-validation folds); ``sharding`` spreads each batch's
    examples over devices (data parallel); ``rng`` is the model's key (dropout).
    """
    perm = order(data, rows, key, epoch)

    def train(carry, xs):
        params, state, opt_state = carry
        idx, i = xs
        batch = take(data, idx, sharding)
        (f, (state, metrics)), g = model.value_and_grad(
            params, state, batch, step_key(rng, epoch, i)
        )
        params, opt_state = loop.apply(tx, params, opt_state, g, f)
        return (params, state, opt_state), {"loss": f, **metrics}

    head, rest = batches(perm, batch_size, drop_last)
    carry, logs = jax.lax.scan(train, (params, state, opt_state), (head, jnp.arange(head.shape[0])))
    last = None
    if rest is not None:
        carry, last = train(carry, (rest, head.shape[0]))
    logs = _weighted_means(logs, batch_size, last, rest)
    if keep_finite:
        finite = jnp.isfinite(logs["loss"])
        for leaf in jax.tree.leaves(carry[0]):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        start = (params, state, opt_state)
        carry = jax.tree.map(lambda new, old: jnp.where(finite, new, old), carry, start)
        logs["finite"] = finite
    return (*carry, logs)


def evaluate(model: Model, params, state, data, batch_size: int, rows=None, sharding=None):
    """The loss and metrics on ``data`` (or its ``rows``), traced, in evaluation mode.

    In batches of ``batch_size``, weighted by size.
    """
    idx = order(data, rows)
    head, rest = batches(idx, batch_size, drop_last=False)

    def one(i):
        f, (_, metrics) = model.apply(params, state, take(data, i, sharding), None, False)
        return {"loss": f, **metrics}

    return _weighted_means(
        jax.lax.map(one, head), batch_size, None if rest is None else one(rest), rest
    )


def _weighted_means(full: dict, batch_size: int, last: dict | None, rest) -> dict:
    """Each log's mean over the examples.

    The full batches' values (stacked) weighted by ``batch_size``, and the partial
    batch's (``last``, of ``rest``'s size) by its size.
    """
    totals = {k: jnp.sum(v) * batch_size for k, v in full.items()}
    count = next(iter(full.values())).shape[0] * batch_size
    if last is not None:
        totals = {k: t + last[k] * rest.shape[0] for k, t in totals.items()}
        count = count + rest.shape[0]
    return {k: t / count for k, t in totals.items()}
