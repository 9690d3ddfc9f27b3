"""Training on data: :func:`fit`, with Keras's ``Model.fit`` semantics, an epoch per program.

Each epoch is one compiled program: a ``lax.scan`` over the full minibatches (the data
stay on the device; a batch is a gather by index from the epoch's permutation) and one
more step on the last, partial batch. The epochs are a Python loop, so the loss of each
one can be reported as it ends.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.tree_util import Partial

from . import _faults, _resume
from . import _loop as loop
from .checkpoint import _host


class History(NamedTuple):
    """The result of :func:`fit`.

    Attributes:
      params: the trained parameters.
      opt_state: the optimizer state after the last step (to continue training).
      loss: shape ``(epochs,)``: each epoch's training loss, the mean of its minibatch
        losses (each taken before its step) weighted by batch size, as Keras reports it.
      val_loss: shape ``(epochs,)``: the loss on ``validation`` after each epoch, or
        ``None`` without ``validation``.
    """

    params: Any
    opt_state: Any
    loss: np.ndarray
    val_loss: np.ndarray | None


def _batches(perm: jax.Array, batch_size: int, drop_last: bool):
    """The full batches' indices ``(k, batch_size)`` and the partial batch's (or None)."""
    full = perm.shape[0] // batch_size
    rest = perm[full * batch_size :]
    head = perm[: full * batch_size].reshape(full, batch_size)
    return head, (None if drop_last or rest.shape[0] == 0 else rest)


def _take(data: Any, idx: jax.Array, sharding=None) -> Any:
    """Examples ``idx`` of ``data``, their axis spread by ``sharding`` when given."""
    batch = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
    if sharding is None:
        return batch
    if len(idx) % sharding.mesh.size:  # the last, partial batch: every device takes it all
        return batch
    explicit = jax.sharding.AxisType.Explicit in sharding.mesh.axis_types
    split = jax.sharding.reshard if explicit else jax.lax.with_sharding_constraint
    return jax.tree.map(lambda a: split(a, _leading(sharding, a.ndim)), batch)


def _leading(sharding: NamedSharding, ndim: int) -> NamedSharding:
    """``sharding``'s split of the leading axis, for an array of rank ``ndim``."""
    spec = PartitionSpec(sharding.spec[0], *([None] * (ndim - 1)))
    return NamedSharding(sharding.mesh, spec)


def _order(data: Any, rows: jax.Array | None, key=None, epoch=None) -> jax.Array:
    """The examples' indices in visiting order.

    All of ``data``, or only ``rows`` of it (a fold); permuted by ``fold_in(key, epoch)``
    when a key is given.
    """
    n = jax.tree.leaves(data)[0].shape[0] if rows is None else rows.shape[0]
    perm = (
        jnp.arange(n) if key is None else jax.random.permutation(jax.random.fold_in(key, epoch), n)
    )
    return perm if rows is None else rows[perm]


def train_epoch(
    loss,
    tx,
    params,
    opt_state,
    data,
    key,
    epoch,
    batch_size,
    drop_last=False,
    rows=None,
    batches=None,
):
    """One epoch (traced): ``(params, opt_state, mean loss)``; shared by fit and sweeps.

    ``rows`` restricts the epoch to those examples of ``data`` (cross-validation folds);
    ``batches`` (a sharding) spreads each batch's examples over devices (data parallel).
    """
    perm = _order(data, rows, key, epoch)

    def train(carry, idx):
        params, opt_state = carry
        f, g = jax.value_and_grad(loss)(params, _take(data, idx, batches))
        return loop.apply(tx, params, opt_state, g), f

    head, rest = _batches(perm, batch_size, drop_last)
    (params, opt_state), fs = jax.lax.scan(train, (params, opt_state), head)
    total, count = jnp.sum(fs) * batch_size, head.size
    if rest is not None:
        (params, opt_state), f = train((params, opt_state), rest)
        total, count = total + f * rest.shape[0], count + rest.shape[0]
    return params, opt_state, total / count


_epoch = jax.jit(
    train_epoch,
    static_argnames=("tx", "batch_size", "drop_last", "batches"),
    donate_argnames=("params", "opt_state"),
)


@functools.partial(jax.jit, static_argnames=("tx",))
def _start(tx, params, opt_state):
    """Fresh copies of the parameters (the epochs donate theirs) and the optimizer state."""
    copy = functools.partial(jax.tree.map, jnp.copy)
    return copy(params), tx.init(params) if opt_state is None else copy(opt_state)


def evaluate(loss, params, data, batch_size, rows=None, batches=None):
    """The loss on ``data`` (or its ``rows``), traced, in batches weighted by size."""
    order = _order(data, rows)
    n = order.shape[0]
    head, rest = _batches(order, batch_size, drop_last=False)
    fs = jax.lax.map(lambda idx: loss(params, _take(data, idx, batches)), head)
    total = jnp.sum(fs) * batch_size
    if rest is not None:
        total = total + loss(params, _take(data, rest, batches)) * rest.shape[0]
    return total / n


_evaluate = jax.jit(evaluate, static_argnames=("batch_size", "batches"))


def _length(name: str, data: Any, call: str = "fit") -> int:
    """The common leading axis of ``data``'s leaves; ``ValueError`` naming ``name`` if none."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"`{call}({name}=...)` needs at least one array.")
    sizes = {jax.tree_util.keystr(p) or "<root>": np.shape(a)[:1] for p, a in leaves}
    if len(set(sizes.values())) != 1 or () in sizes.values():
        raise ValueError(
            f"`{call}({name}=...)`: every array needs the same leading (example) axis; got "
            + ", ".join(f"{k}: {v[0] if v else 'a scalar'}" for k, v in sizes.items())
        )
    return int(next(iter(sizes.values()))[0])


def _check(loss, params, data, validation, epochs, batch_size, call="fit") -> int:
    """Every check of :func:`fit`'s arguments, before anything compiles; returns len(data).

    ``call`` names the arguments' owner in the errors (``fit``, or ``Task`` for a sweep).
    """
    n = _length("data", data, call)
    if validation is not None:
        _length("validation", validation, call)
        want: Any = jax.tree.structure(data)  # (Any: PyTreeDef is opaque to mypy)
        if jax.tree.structure(validation) != want:
            raise ValueError(f"`{call}(validation=...)` must have the structure of `data`.")
    if not isinstance(epochs, int | np.integer) or epochs < 1:
        raise ValueError(f"`fit(epochs=...)` must be a positive int; got {epochs!r}.")
    if not isinstance(batch_size, int | np.integer) or not 1 <= batch_size <= n:
        raise ValueError(
            f"`{call}(batch_size=...)` must be an int in [1, {n}] (the number of examples); "
            f"got {batch_size!r}."
        )
    out = _loss_out(loss, _signature(params), _signature(data, rows=int(batch_size)))
    shape = getattr(out, "shape", type(out).__name__)
    if shape != ():
        raise ValueError(f"`{call}(loss=...)` must return a scalar for one batch; got {shape}.")
    return n


def _signature(tree: Any, rows: int | None = None) -> tuple:
    """A hashable description of ``tree``: structure, and each leaf's shape and dtype.

    With ``rows``, the leading axis is replaced by it (the signature of one batch).
    """
    leaves, treedef = jax.tree.flatten(tree)

    def describe(a):
        shape = tuple(np.shape(a))
        dtype = np.dtype(a.dtype) if hasattr(a, "dtype") else np.result_type(a)
        return (shape if rows is None else (rows, *shape[1:])), dtype

    return treedef, tuple(describe(a) for a in leaves)


@functools.lru_cache(maxsize=64)
def _loss_out(loss: Callable, params_sig: tuple, batch_sig: tuple) -> Any:
    """What ``loss`` returns for these abstract arguments (traced once per signature)."""

    def abstract(sig):
        treedef, leaves = sig
        return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])

    return jax.eval_shape(loss, abstract(params_sig), abstract(batch_sig))


def fit(
    loss: Callable[[Any, Any], jax.Array],
    params: Any,
    tx: optax.GradientTransformation,
    data: Any,
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array | None = None,
    validation: Any = None,
    drop_last: bool = False,
    opt_state: Any = None,
    callback: Callable[[int, float, float | None], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
) -> History:
    """Trains ``params`` on ``data`` with minibatches, as ``keras.Model.fit`` does.

    Each epoch visits every example once, in order (Keras's ``shuffle=False``) or, with
    ``key``, in a fresh permutation drawn from ``jax.random.fold_in(key, epoch)``
    (deterministic per key). Each step is ``params <- params + tx.update(grad, state,
    params)`` on one minibatch; the last, smaller batch is trained on unless
    ``drop_last``. An epoch is one compiled program; a second call with the same
    ``loss`` function, ``tx`` and shapes reuses it.

    Args:
      loss: ``loss(params, batch) -> scalar``, the mean over the batch's examples.
      params: any pytree of arrays (a dict, :class:`~jax_rmsprop.Flat`, Flax NNX
        ``nnx.state(model, nnx.Param)``, Equinox arrays).
      tx: any optax transformation.
      data: a pytree of arrays sharing their leading (example) axis, e.g. ``(x, y)``.
      epochs: passes over the data.
      batch_size: examples per step.
      key: a ``jax.random`` key to shuffle with; ``None`` keeps the order.
      validation: data of the same structure, evaluated after each epoch (in batches of
        ``batch_size``, weighted like the training loss).
      drop_last: skip the last, partial batch of each epoch.
      opt_state: the optimizer state to start from (default ``tx.init(params)``).
      callback: called as ``callback(epoch, loss, val_loss)`` after each epoch (it
        waits for the epoch to finish).
      checkpoint: a directory: the state after each epoch is saved there
        (``fit.npz``, atomically), and a call that finds it continues from it, so that a
        run killed at any point and started again ends bit for bit as one never
        interrupted. A checkpoint written by a different call (another loss, optimizer,
        initial parameters or state, data, batch size, key...) raises ``ValueError``
        saying what differs; one already past ``epochs`` too.
      mesh: data parallel over this ``jax.sharding.Mesh`` (its devices may span
        processes): each batch's examples are split over all of its devices, the
        parameters and optimizer state are replicated (leaves already sharded on this
        mesh keep their sharding), and XLA sums the gradients across devices. Equal to
        one device's training up to float reduction order. ``batch_size`` must be a
        multiple of the mesh's devices; the last, partial batch (if it does not divide)
        is computed whole on every device.

    Returns:
      A :class:`History`.

    Raises:
      ValueError: before anything compiles, for arrays of ``data`` (or ``validation``)
        whose leading axes differ, ``batch_size`` < 1 or larger than the data, ``epochs``
        < 1, or a ``loss`` that does not return a scalar; for a ``checkpoint`` of another
        call.
    """
    _check(loss, params, data, validation, epochs, batch_size)
    loss_fn = loss if isinstance(loss, Partial) else Partial(loss)
    batches = None
    if mesh is not None:
        if batch_size % mesh.size:
            raise ValueError(
                f"`fit(batch_size={batch_size})` must be a multiple of the mesh's {mesh.size} "
                "devices, to split every batch evenly (data parallel)."
            )
        batches = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
        params, opt_state, data, validation, key = _replicate(
            mesh, (params, opt_state, data, validation, key)
        )
    params, opt_state = _start(tx, params, opt_state)
    resume = None
    if checkpoint is not None:
        print_ = _fingerprint(loss_fn, tx, params, opt_state, data, validation, batch_size, key)
        resume = _resume.Resume(checkpoint, "fit", print_ | {"drop_last": str(bool(drop_last))})
    if mesh is None:
        data = jax.tree.map(jnp.asarray, data)
        validation = None if validation is None else jax.tree.map(jnp.asarray, validation)
    losses: list[Any] = []
    val_losses: list[Any] = []
    if resume is not None and (got := resume.load(lambda _: (params, opt_state))) is not None:
        (params, opt_state), position = got
        # the losses' dtype (the same signature as the check's: traced once)
        dtype = _loss_out(loss, _signature(params), _signature(data, rows=int(batch_size))).dtype
        losses = [jnp.asarray(f, dtype) for f in position["loss"]]
        val_losses = [jnp.asarray(f, dtype) for f in position["val_loss"]]
        if len(losses) > epochs:
            raise ValueError(
                f"`fit(checkpoint=...)`: {resume.path} holds {len(losses)} epochs, more than "
                f"epochs={epochs}."
            )
    try:
        for epoch in range(len(losses), epochs):
            params, opt_state, f = _epoch(
                loss_fn,
                tx,
                params,
                opt_state,
                data,
                key,
                epoch,
                batch_size,
                bool(drop_last),
                batches=batches,
            )
            losses.append(f)
            if validation is not None:
                val_losses.append(
                    _evaluate(loss_fn, params, validation, batch_size, batches=batches)
                )
            if resume is not None and (resume.ready() or epoch == epochs - 1):
                # written in the background while the next epoch runs
                resume.save(_copy((params, opt_state)), _position(list(losses), list(val_losses)))
            if callback is not None:
                callback(epoch, float(f), float(val_losses[-1]) if val_losses else None)
        if resume is not None:
            resume.flush()
        # (collectives complete here at the latest: the losses come to the host)
        return History(
            params,
            opt_state,
            np.array([_host(f) for f in losses]),
            np.array([_host(f) for f in val_losses]) if val_losses else None,
        )
    except jax.errors.JaxRuntimeError as err:  # another process died?
        raise _faults.translate(err, "fit", None if resume is None else resume.path) from err


def _replicate(mesh: Mesh, tree: Any) -> Any:
    """Every array of ``tree`` on all of ``mesh``'s devices, but those sharded on it already.

    Values go through the host, so that each process places its own (equal) copy on a
    mesh that spans processes.
    """
    everywhere = NamedSharding(mesh, PartitionSpec())

    def put(a):
        sharding = getattr(a, "sharding", None)
        if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
            return a
        if _resume._is_key(a):  # a typed key travels as its data
            impl = jax.random.key_impl(a)
            return jax.random.wrap_key_data(put(jax.random.key_data(a)), impl=impl)
        if isinstance(a, jax.Array) and a.is_fully_addressable:
            a = np.asarray(a)
        return jax.device_put(a, everywhere)

    return jax.tree.map(put, tree)


@functools.partial(jax.jit, static_argnames=("tx",))
def _probe(tx, params, opt_state):
    """``tx``'s update from a gradient of ones: identifies the optimizer in a fingerprint."""
    return tx.update(jax.tree.map(jnp.ones_like, params), opt_state, params)[0]


_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))  # the epochs donate theirs


def _position(losses: list, val_losses: list) -> Callable[[], dict]:
    """The checkpoint's position: the losses so far (floats: JSON round-trips them exactly)."""
    return lambda: {"loss": [float(f) for f in losses], "val_loss": [float(f) for f in val_losses]}


def _fingerprint(loss, tx, params, opt_state, data, validation, batch_size, key) -> dict:
    """What decides a fit's numbers, as text: a resumed call must match it exactly.

    The optimizer is known by its initial state and by its first update from a gradient
    of ones (two optimizers that agree on both are taken as the same).
    """
    key_text = "None" if key is None else _resume.digest(key)
    return {
        "loss": _resume.name_of(loss),
        "params": _resume.describe(params),
        "initial params": _resume.digest(params),
        "optimizer state": _resume.describe(opt_state),
        "initial optimizer state": _resume.digest(opt_state),
        "optimizer (first update from ones)": _resume.digest(_probe(tx, params, opt_state)),
        "key": key_text,
    } | _resume.data_entries(data, validation, batch_size)
