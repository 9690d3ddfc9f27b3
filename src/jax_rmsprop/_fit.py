"""Training on data: ``fit``, with Keras's ``Model.fit`` semantics, an epoch per program.

Each epoch is one compiled program (the epoch kernel, ``_epoch``): a ``lax.scan`` over
the minibatches with the data on the device. The epochs are a Python loop, so each one's
logs can be reported, checked for early stopping and checkpointed as it ends.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _epoch as kernel
from . import _inputs, _resume
from . import _model as models
from ._compile import training_jit
from ._host import device_copy, fetch, to_host
from ._progress import Bar
from ._resumable import Loop, resumable
from ._rmsprop import describe_hyperparameters
from ._signals import FitInterrupted
from ._traced import device_scalar, jit_traced
from .checkpoint import is_key


class History(NamedTuple):
    """The result of [`fit`][jax_rmsprop.fit].

    Attributes:
      params: the trained parameters; for a Flax NNX module, the module itself, trained
        in place.
      opt_state: the optimizer state after the last step (to continue training).
      loss: shape ``(epochs run,)``: each epoch's training loss, the mean of its minibatch
        losses (each taken before its step) weighted by batch size, as Keras reports it.
      val_loss: shape ``(epochs run,)``: the loss on ``validation`` after each epoch, or
        ``None`` without ``validation``.
      history: Keras's ``History.history``: ``"loss"``, each metric, and with validation
        ``"val_loss"`` and ``"val_<metric>"``, one value per epoch run (training metrics
        are batch-size-weighted epoch means; validation ones in evaluation mode).
      state: the model state of the functional form after training (``None`` otherwise).
      epoch: the epochs run, counted from 0 as Keras's ``History.epoch``
        (``initial_epoch`` to the last).
      best_epoch: with ``patience``, the epoch whose monitored value was best.
      stopped_epoch: the epoch after which early stopping ended the run, or ``None``.
    """

    params: Any
    opt_state: Any
    loss: np.ndarray
    val_loss: np.ndarray | None
    history: dict[str, np.ndarray]
    state: Any = None
    epoch: tuple[int, ...] = ()
    best_epoch: int | None = None
    stopped_epoch: int | None = None


_epoch = jit_traced(
    kernel.train_epoch,
    static_argnames=("model", "batch_size", "drop_last", "sharding", "keep_finite"),
    donate_argnames=("params", "state", "opt_state"),
    jit=training_jit,
)
_evaluate = jax.jit(kernel.evaluate, static_argnames=("model", "batch_size", "sharding"))


def _first_epoch(
    model, tx, params, state, opt_state, data, key, epoch, batch_size, drop_last=False,
    rows=None, sharding=None, rng=None, keep_finite=False,
):  # fmt: skip
    """The epoch of a one-epoch call, on the caller's own arrays.

    Nothing is donated, so nothing needs copying first (``_start``: a program and a copy
    of every array per call, the fixed cost of a loop of one-epoch calls); ``tx.init``
    runs inside when ``opt_state`` is ``None``.
    """
    opt_state = tx.init(params) if opt_state is None else opt_state
    return kernel.train_epoch(
        model, tx, params, state, opt_state, data, key, epoch, batch_size, drop_last, rows,
        sharding, rng, keep_finite,
    )  # fmt: skip


_one_epoch = jit_traced(
    _first_epoch,
    static_argnames=("model", "batch_size", "drop_last", "sharding", "keep_finite"),
    jit=training_jit,
)


@jit_traced
def _start(tx, params, state, opt_state):
    """Fresh copies of the parameters, model state and optimizer state (one program).

    The epochs donate theirs; ``tx.init(params)`` without an ``opt_state``.
    """
    copy = functools.partial(jax.tree.map, jnp.copy)
    return copy(params), copy(state), tx.init(params) if opt_state is None else copy(opt_state)


@dataclasses.dataclass
class _EarlyStopping:
    """Keras's ``EarlyStopping(monitor, patience, mode, restore_best_weights)``, on the host.

    An epoch improves when its monitored value is below (``min``) or above (``max``) the
    best so far; after ``patience`` epochs without improvement the run stops, and with
    ``restore`` the best epoch's parameters and model state replace the last ones (as in
    Keras, only when the run stops early).
    """

    monitor: str
    patience: int
    sign: float  # +1: lower is better; -1: higher is better
    restore: bool
    best: float = math.inf
    best_epoch: int | None = None
    wait: int = 0
    kept: Any = None

    def update(self, epoch: int, logs: dict[str, float], weights: Callable[[], Any]) -> bool:
        """Takes the epoch's logs; returns whether training stops after it."""
        if self.restore and self.kept is None:
            self.kept = weights()
        self.wait += 1
        value = self.sign * logs[self.monitor]
        if value < self.best:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore:
                self.kept = weights()
            return False
        return self.wait >= self.patience and epoch > 0


def fit(
    loss: Callable[..., Any],
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
    state: Any = None,
    rng: jax.Array | None = None,
    initial_epoch: int = 0,
    patience: int | None = None,
    monitor: str = "val_loss",
    mode: str = "auto",
    restore_best: bool = False,
    verbose: int = 0,
    terminate_on_nan: bool = True,
    check_finite: bool = True,
    callback: Callable[[int, float, float | None], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    mesh: Mesh | None = None,
) -> History:
    r"""Trains a model on ``data`` with minibatches, as ``keras.Model.fit`` does.

    Each epoch visits every example once, in order (Keras's ``shuffle=False``) or, with
    ``key``, in a fresh permutation drawn from ``jax.random.fold_in(key, epoch)``
    (deterministic per key). Each step is ``params <- params + tx.update(grad, state,
    params, value=loss)`` on one minibatch (the loss value reaches transformations that
    take it, such as ``optax.contrib.reduce_on_plateau``); the last, smaller batch is
    trained on unless ``drop_last``. An epoch is one compiled program; a second call with
    the same ``loss`` function, ``tx`` and shapes reuses it (one program serves one-epoch
    calls, which read the caller's arrays without copying them, another longer calls).

    Three kinds of model:

    - **parameters and a pure loss**: ``loss(params, batch)`` returns a scalar, or
      ``(scalar, metrics)`` with ``metrics`` a dict of per-batch scalars (accuracy...);
    - **a Flax NNX module** as ``params``: ``loss(model, batch)`` returns the same. The
      module's ``nnx.Param`` leaves are trained; it runs in training mode during the
      steps (dropout on, batch statistics used and their running averages updated, its
      RNG streams advancing inside the compiled epoch) and in evaluation mode for
      validation; it is trained in place (``History.params`` is the module);
    - **the functional form** with model ``state`` (Equinox ``eqx.nn.State``, Flax
      ``batch_stats``, ``()`` for none): ``loss(params, state, batch, *, key, training)``
      returns ``(scalar, new_state)`` or ``(scalar, new_state, metrics)``; ``key`` is
      ``fold_in(fold_in(rng, epoch), step)`` (``None`` without ``rng``) and ``training``
      is ``False`` for validation, whose new state is discarded.

    Args:
      loss: the loss of one batch (the mean over its examples), in one of the forms above.
      params: any pytree of arrays, or a Flax NNX module.
      tx: any optax transformation. This library's own ([`rmsprop`][jax_rmsprop.rmsprop],
        [`compat`][jax_rmsprop.compat]) pass
        their numbers but ``eps`` as inputs of the compiled epoch: other learning rates
        or decays reuse it; a chain compiles once per object.
      data: a pytree of arrays sharing their leading (example) axis, e.g. ``(x, y)``.
      epochs: the epoch to stop at, as Keras's: epochs ``initial_epoch .. epochs - 1`` run.
      batch_size: examples per step.
      key: a ``jax.random`` key to shuffle with; ``None`` keeps the order.
      validation: data of the same structure, evaluated after each epoch (in batches of
        ``batch_size``, weighted like the training loss).
      drop_last: skip the last, partial batch of each epoch.
      opt_state: the optimizer state to start from (default ``tx.init(params)``). An NNX
        module's arrays train as plain dicts (``nnx.to_pure_dict``), and so does its
        ``History.opt_state``; one made with ``tx.init(nnx.state(model, nnx.Param))`` is
        taken too.
      state: the functional form's model state (see above).
      rng: the functional form's key for the model's randomness (dropout).
      initial_epoch: the epoch to start at, to continue a run: ``fit(epochs=2)`` then
        ``fit(epochs=4, initial_epoch=2, opt_state=...)`` equals ``fit(epochs=4)`` bit for
        bit, shuffling and dropout included.
      patience: stop after this many epochs without improvement of ``monitor`` (Keras's
        ``EarlyStopping``); ``None`` trains every epoch.
      monitor: ``"val_loss"``, ``"loss"``, or any metric, ``val_`` prefixed for validation.
      mode: ``"min"``, ``"max"``, or ``"auto"`` (``max`` for accuracy-like names).
      restore_best: when early stopping ends the run, return the best epoch's parameters
        and model state (Keras's ``restore_best_weights``; the optimizer state is the
        last one).
      verbose: as Keras's: 1 draws a progress bar over the epochs with the latest logs
        (tqdm when installed, else a line on stderr), 2 prints one line per epoch with
        its logs, 0 (default) nothing.
      terminate_on_nan: stop after an epoch whose loss (or new parameters) is NaN or
        infinite, as Keras's ``TerminateOnNaN`` does, warning which epoch, and return the
        last finite parameters and states (those that epoch started from; keeping them
        costs a copy of the parameters and states during each epoch). ``False`` trains on.
      check_finite: refuse ``data`` and ``validation`` holding NaN or infinity, naming the
        array and its first such row (default). ``False`` trains on them as given: for a
        loss that masks missing values itself (``jnp.where(jnp.isnan(y), 0, ...)``).
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
      A [`History`][jax_rmsprop.History].

    Raises:
      FitInterrupted: on Ctrl-C or SIGTERM, after the epoch in flight (saved to
        ``checkpoint``, so the same call resumes from the next epoch); it carries the
        finished epochs' [`History`][jax_rmsprop.History]. A second Ctrl-C stops at once.
      ValueError: before anything compiles, for arrays of ``data`` (or ``validation``)
        whose leading axes differ, NaN or infinity in them (unless
        ``check_finite=False``), a ``loss`` whose signature cannot take the call of its
        model form (``loss(params, batch)``...), ``batch_size`` < 1 or larger than the
        data, ``epochs`` < 1, ``initial_epoch`` outside ``[0, epochs)``, a ``loss`` that
        does not return a scalar (or scalar metrics), a ``monitor`` that is not logged;
        for a ``checkpoint`` of another call.
      TypeError: for a ``tx`` that is not a transformation (``tx=rmsprop``, not called).
    """
    user_model = params
    model, params, state = models.split(loss, params, state)
    _inputs.check_loss(model)
    _inputs.check_tx(tx)
    _inputs.check_data(data, validation, epochs, batch_size, check_finite=check_finite)
    dtype, names = _inputs.loss_output(model, params, state, data, batch_size)
    stopper = _early_stopping(
        epochs, initial_epoch, patience, monitor, mode, restore_best, names, validation
    )
    if opt_state is not None:
        opt_state = _check_opt_state(tx, params, opt_state)
    sharding, (params, state, opt_state, data, validation, key, rng) = _place(
        mesh, batch_size, (params, state, opt_state, data, validation, key, rng)
    )
    fresh = epochs - initial_epoch == 1 and checkpoint is None  # (then: _one_epoch)
    if not fresh:
        params, state, opt_state = _start(tx, params, state, opt_state)
    run = _Run(
        model, tx, data, validation, key, rng, int(batch_size), bool(drop_last), sharding,
        bool(terminate_on_nan), fresh,
    )  # fmt: skip
    logs = _Logs(names, validation is not None, dtype)
    carry = (params, state, opt_state)
    first = initial_epoch
    fingerprint = lambda: _fingerprint(run, params, state, opt_state, initial_epoch, stopper)  # noqa: E731
    with resumable("fit", checkpoint, "fit", fingerprint) as loop:
        if (got := loop.load(lambda _: _saved(carry, stopper))) is not None:
            carry, first = _resumed(got, logs, stopper, initial_epoch, epochs, loop.path)
            if verbose:
                print(f"resumed from epoch {first} ({loop.path})", flush=True)
        try:
            carry, stopped, why, last_finite = _epochs(
                run, carry, first, epochs, logs, stopper, loop, verbose, callback
            )
        except KeyboardInterrupt:  # a second Ctrl-C: the epoch in flight is lost
            raise FitInterrupted(None, loop.path, "SIGINT") from None
    hist = _history(
        user_model, model, carry, logs, stopper, stopped, why, last_finite, initial_epoch
    )
    if loop.requested is not None:
        raise FitInterrupted(hist, loop.path, loop.requested)
    return hist


def _history(user_model, model, carry, logs, stopper, stopped, why, last_finite, initial_epoch):
    """The ``History`` of a fit's epochs; an NNX module takes its trained arrays.

    The module takes the last carry while the device may still compute it (a non-finite
    last epoch returns the parameters it started from: the same carry); only then is the
    last epoch's finiteness waited for.
    """
    params, state, opt_state = carry
    restoring = stopped is not None and stopper is not None and stopper.restore
    trained = None if restoring else models.write_back(user_model, params, state)
    # the call's one wait for the device (collectives complete here at the latest)
    values, last_finite = fetch((logs.values, last_finite))
    history = {k: np.asarray(v, logs.dtype) for k, v in values.items()}
    if last_finite is not None and not bool(last_finite):
        stopped, why = initial_epoch + len(logs) - 1, "non-finite"
    if why == "non-finite":
        warnings.warn(
            f"fit: epoch {stopped} gave a non-finite loss or parameters (its loss: "
            f"{float(history['loss'][-1]):.4g}); stopped, returning the parameters that "
            "epoch started from (terminate_on_nan=False trains on).",
            RuntimeWarning,
            stacklevel=3,
        )
    elif restoring:
        params, state = stopper.kept
    return History(
        models.write_back(user_model, params, state) if trained is None else trained,
        opt_state,
        history["loss"],
        history.get("val_loss"),
        history,
        state if model.kind == models.FUNCTIONAL else None,
        tuple(range(initial_epoch, initial_epoch + len(history["loss"]))),
        None if stopper is None else stopper.best_epoch,
        stopped,
    )


class _Run(NamedTuple):
    """What stays fixed across a fit's epochs."""

    model: models.Model
    tx: optax.GradientTransformation
    data: Any
    validation: Any
    key: Any
    rng: Any
    batch_size: int
    drop_last: bool
    sharding: NamedSharding | None
    keep_finite: bool
    fresh: bool  # one epoch, on the caller's arrays (``_one_epoch``: nothing donated)


class _Logs:
    """Each logged quantity's values so far (device scalars, or floats from a checkpoint)."""

    def __init__(self, metrics: tuple[str, ...], validation: bool, dtype: Any):
        train = ["loss", *metrics]
        self.names = train + ([f"val_{n}" for n in train] if validation else [])
        self.values: dict[str, list] = {n: [] for n in self.names}
        self.dtype = dtype

    def add(self, train: dict, val: dict | None) -> None:
        for k, v in train.items():
            self.values[k].append(v)
        for k, v in (val or {}).items():
            self.values[f"val_{k}"].append(v)

    def last(self) -> dict[str, Any]:
        """The last epoch's values, on the device (``fetch`` brings them)."""
        return {k: v[-1] for k, v in self.values.items()}

    def __len__(self) -> int:
        return len(self.values["loss"])


def _check_opt_state(tx, params, opt_state) -> Any:
    """``opt_state``, which must have the structure of ``tx.init(params)``.

    Another optimizer's state would fail deep inside the update. One made for an NNX
    module's ``nnx.State`` (``tx.init(nnx.state(model, nnx.Param))``) is taken as the
    plain dicts ``fit`` trains the module's arrays in.
    """
    want: Any = jax.tree.structure(jax.eval_shape(tx.init, params))
    got: Any = jax.tree.structure(opt_state)
    if got != want and (pure := models.pure_states(opt_state)) is not opt_state:
        opt_state, got = pure, jax.tree.structure(pure)
    if got != want:
        short = lambda t: (str(t)[:120] + "...") if len(str(t)) > 120 else str(t)  # noqa: E731
        raise ValueError(
            f"`fit(opt_state=...)` does not match `tx.init(params)`: it is {short(got)}, "
            f"this optimizer's is {short(want)} (a state of another optimizer or model?)."
        )
    return opt_state


def _early_stopping(epochs, initial_epoch, patience, monitor, mode, restore, names, validation):
    """The checks of ``fit``'s epoch controls; an ``_EarlyStopping`` with ``patience``."""
    if not isinstance(initial_epoch, int | np.integer) or not 0 <= initial_epoch < epochs:
        raise ValueError(
            f"`fit(initial_epoch=...)` must be an int in [0, epochs={epochs}) (Keras's meaning: "
            f"`epochs` is the epoch to stop at); got {initial_epoch!r}."
        )
    if patience is None:
        if restore:
            raise ValueError("`fit(restore_best=True)` needs `patience` (early stopping).")
        return None
    if not isinstance(patience, int | np.integer) or patience < 0:
        raise ValueError(f"`fit(patience=...)` must be an int >= 0; got {patience!r}.")
    logged = ["loss", *names] + (
        ["val_loss", *[f"val_{n}" for n in names]] if validation is not None else []
    )
    if monitor not in logged:
        raise ValueError(
            f"`fit(monitor={monitor!r})` is not logged; this fit logs {logged}"
            + ("" if validation is not None else " (val_ ones need `validation`)")
            + "."
        )
    return _EarlyStopping(monitor, int(patience), _inputs.direction(monitor, mode), bool(restore))


def _epochs(run: _Run, carry, first, epochs, logs, stopper, loop: Loop, verbose, callback):
    """Trains epochs ``first .. epochs - 1``: the carry, the epoch stopped at and why, ...

    ... and whether the last epoch was finite (a device scalar not waited for; ``None``
    when known). A signal (``loop.requested``) stops it after the epoch in flight, which is saved.
    """
    bar = Bar(epochs, "epoch", "fit") if verbose == 1 else None
    try:
        return _train(run, carry, first, epochs, logs, stopper, loop, verbose, callback, bar)
    finally:
        if bar is not None:
            bar.close()


def _report(verbose: int, epoch: int, epochs: int, last: dict, bar: Bar | None) -> None:
    """Keras's ``verbose``: 1 a bar over the epochs with the latest logs, 2 a line each."""
    text = " - ".join(f"{k}: {v:.4g}" for k, v in last.items())
    if bar is not None:
        bar(epoch + 1, epochs, text)
    else:
        print(f"Epoch {epoch + 1}/{epochs} - {text}", flush=True)


def _train(run: _Run, carry, first, epochs, logs, stopper, loop: Loop, verbose, callback, bar):
    """``_epochs``' loop."""
    stopped = None
    offset = first - len(logs)  # epoch e's logs are at index e - offset
    finite: list = []  # with keep_finite: whether each epoch of this call kept finite
    for epoch in range(first, epochs):
        params, state, opt_state, train = (_one_epoch if run.fresh else _epoch)(
            run.model,
            run.tx,
            *carry,
            run.data,
            run.key,
            device_scalar(epoch),  # (made once per value; jit converts a Python int per call)
            run.batch_size,
            run.drop_last,
            sharding=run.sharding,
            rng=run.rng,
            keep_finite=run.keep_finite,
        )
        carry = (params, state, opt_state)
        finite.append(train.pop("finite", True))
        val = None
        if run.validation is not None:
            val = _evaluate(
                run.model, params, state, run.validation, run.batch_size, sharding=run.sharding
            )
        logs.add(train, val)
        # one wait per epoch at most: this epoch's logs if the host acts on them, and
        # the previous epoch's finiteness (done by now: it does not stall the device)
        wanted = stopper is not None or verbose or callback is not None
        previous = finite[epoch - 1 - first] if epoch > first else True
        last: dict[str, float] = {}
        if wanted or isinstance(previous, jax.Array):
            got, previous = fetch((logs.last() if wanted else {}, previous))
            last = {k: float(v) for k, v in got.items()}
        if stopper is not None and stopper.update(
            epoch, last, functools.partial(device_copy, carry[:2])
        ):
            stopped = epoch
        if verbose:
            _report(verbose, epoch, epochs, last, bar)
        if callback is not None:
            callback(epoch, float(last["loss"]), None if val is None else float(last["val_loss"]))
        ends = stopped is not None or loop.requested is not None or epoch == epochs - 1
        # written in the background while the next epoch runs
        loop.boundary(
            functools.partial(_saved_copy, carry, stopper), _position(logs, stopper), ends
        )
        if not bool(previous):
            # the epochs from the previous on returned the parameters they started from
            bad = epoch - 1
            for values in logs.values.values():
                del values[bad - offset + 1 :]
            return carry, bad, "non-finite", None
        if ends:
            break
    why = None if stopped is None else "early stopping"
    return carry, stopped, why, finite[-1] if finite else None


def _saved_copy(carry, stopper) -> tuple:
    """``_saved`` of a copy of ``carry`` (the next epoch donates it)."""
    return _saved(device_copy(carry), stopper)


def _saved(carry, stopper) -> tuple:
    """The arrays of a checkpoint: the carry, and the best weights kept for ``restore_best``."""
    return carry, None if stopper is None or not stopper.restore else (stopper.kept or carry[:2])


def _position(logs: _Logs, stopper) -> Callable[[], dict]:
    """The checkpoint's position, computed in the writer thread.

    The logs so far (floats: JSON round-trips them exactly) and the early-stopping counters.
    """
    values = {k: list(v) for k, v in logs.values.items()}
    early = None if stopper is None else [stopper.best, stopper.best_epoch, stopper.wait]

    def position() -> dict:
        return {
            "logs": {k: [float(to_host(x)) for x in v] for k, v in values.items()},
            "early": early,
        }

    return position


def _resumed(got, logs: _Logs, stopper, initial_epoch, epochs, path):
    """Restores a checkpoint's logs and early-stopping counters.

    Returns the carry and the epoch to continue from.
    """
    (carry, kept), position = got
    for k in logs.names:
        logs.values[k] = list(position["logs"][k])
    if len(logs) > epochs - initial_epoch:
        raise ValueError(
            f"`fit(checkpoint=...)`: {path} holds {len(logs)} epochs, more than "
            f"epochs={epochs} (from initial_epoch={initial_epoch})."
        )
    if stopper is not None:
        stopper.best, stopper.best_epoch, stopper.wait = position["early"]
        stopper.kept = kept
    return carry, initial_epoch + len(logs)


def _on_device(a: Any) -> jax.Array:
    return a if isinstance(a, jax.Array) else jnp.asarray(a)


def _place(mesh: Mesh | None, batch_size: int, tree: tuple) -> tuple[Any, tuple]:
    """``(batch sharding, tree)`` for one device or for ``mesh`` (data parallel).

    One device: the data as arrays. A mesh: every array replicated, each batch split
    over the devices.
    """
    if mesh is None:
        params, state, opt_state, data, validation, key, rng = tree
        data, validation = (
            None if d is None else jax.tree.map(_on_device, d) for d in (data, validation)
        )
        return None, (params, state, opt_state, data, validation, key, rng)
    if batch_size % mesh.size:
        raise ValueError(
            f"`fit(batch_size={batch_size})` must be a multiple of the mesh's {mesh.size} "
            "devices, to split every batch evenly (data parallel)."
        )
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names)), _replicate(mesh, tree)


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
        if is_key(a):  # a typed key travels as its data
            impl = jax.random.key_impl(a)
            return jax.random.wrap_key_data(put(jax.random.key_data(a)), impl=impl)
        if isinstance(a, jax.Array) and a.is_fully_addressable:
            a = np.asarray(a)
        return jax.device_put(a, everywhere)

    return jax.tree.map(put, tree)


@jit_traced
def _probe(tx, params, opt_state):
    """``tx``'s update from a gradient of ones (and a loss value of 0).

    It identifies the optimizer in a fingerprint.
    """
    ones = jax.tree.map(jnp.ones_like, params)
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx.update(ones, opt_state, params, value=jnp.zeros(()))[0]
    return tx.update(ones, opt_state, params)[0]


def _fingerprint(run: _Run, params, state, opt_state, initial_epoch, stopper) -> dict:
    """What decides a fit's numbers, as text: a resumed call must match it exactly.

    The optimizer is known by its initial state and by its first update from a gradient
    of ones (two optimizers that agree on both are taken as the same).
    """
    early = (
        "None"
        if stopper is None
        else (
            f"{stopper.monitor} patience={stopper.patience} sign={stopper.sign} "
            f"restore={stopper.restore}"
        )
    )
    return _resume.fingerprint(
        functions={"loss": run.model.loss},
        layouts={"params": params, "model state": state, "optimizer state": opt_state},
        digests={
            "initial params": params,
            "initial model state": state,
            "initial optimizer state": opt_state,
            "optimizer (first update from ones)": _probe(run.tx, params, opt_state),
            "key": run.key,
            "rng": run.rng,
        },
        texts={
            "model": run.model.kind,
            # this library's optimizers by name, so that a mismatch says which number changed
            **{f"optimizer {k}": v for k, v in describe_hyperparameters(run.tx).items()},
            "drop_last": str(run.drop_last),
            "initial_epoch": str(int(initial_epoch)),
            "early stopping": early,
        },
        data=(run.data, run.validation, run.batch_size),
    )
