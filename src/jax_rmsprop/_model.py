"""What ``fit`` and training sweeps train: the model protocol, written once.

Three forms of model reach the epoch kernel (``_epoch``) as one thing, a
``Model`` (static: it is hashed into the compiled epoch) plus two pytrees, the
trainable ``params`` and the model ``state`` that is not trained (batch-norm statistics,
random-number streams):

- a pure loss: ``loss(params, batch)``; no state;
- the functional form, for Equinox and any library: ``loss(params, state, batch, *, key,
  training)`` returns ``(loss, state)`` or ``(loss, state, metrics)``;
- a Flax NNX module: ``loss(model, batch)``; the module is split once into its
  ``nnx.Param`` leaves and the rest, and merged back inside each step, in training mode
  (dropout on, batch statistics used and their averages updated) for the steps and in
  evaluation mode for validation.

Every form may return metrics: the pure and NNX losses as ``(loss, metrics)``, with
``metrics`` a dict of per-batch scalars.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

PURE, FUNCTIONAL, NNX = "pure", "functional", "nnx"


def is_nnx_module(obj: Any) -> bool:
    """Whether ``obj`` is a Flax NNX module (without importing flax when it is absent)."""
    nnx = _nnx_or_none()
    return nnx is not None and isinstance(obj, nnx.Module)


def _nnx_or_none():
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax is optional
        return None
    return nnx


@dataclasses.dataclass(frozen=True)
class Model:
    """How one batch's loss, metrics and new model state are computed (static, hashable).

    Attributes:
      kind: ``"pure"``, ``"functional"`` or ``"nnx"``.
      loss: the user's loss function.
      train_def: an NNX module's graph in training mode (``None`` for the other forms).
      eval_def: its graph in evaluation mode.
    """

    kind: str
    loss: Callable
    train_def: Any = None
    eval_def: Any = None

    def __post_init__(self):
        # hashed at every compiled call (a static argument): an NNX graph hashes slowly
        object.__setattr__(self, "_hash", hash((self.kind, self.loss, self.train_def)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def apply(self, params, state, batch, key, training: bool):
        """``(loss, (state, metrics))`` of one batch."""
        if self.kind == PURE:
            loss, metrics = _split_metrics(self.loss(params, batch), "loss(params, batch)")
            return loss, (state, metrics)
        if self.kind == FUNCTIONAL:
            out = self.loss(params, state, batch, key=key, training=training)
            return _functional_out(out, state, training)
        from flax import nnx

        model = nnx.merge(self.train_def if training else self.eval_def, params, state)
        loss, metrics = self._nnx_loss(model, batch)
        if training:
            state = split_params(model)[2]
        return loss, (state, metrics)

    def value_and_grad(self, params, state, batch, key):
        """``((loss, (state, metrics)), grads)`` of one training step.

        An NNX module is merged first and differentiated with ``nnx.value_and_grad``
        (mutations of its batch statistics and RNG counters inside a plain ``jax.grad`` of
        a merged module are refused by Flax), then split again for its new state.
        """
        if self.kind != NNX:
            return jax.value_and_grad(self.apply, has_aux=True)(params, state, batch, key, True)
        from flax import nnx

        model = nnx.merge(self.train_def, params, state)
        (loss, metrics), grads = nnx.value_and_grad(self._nnx_loss, has_aux=True)(model, batch)
        state = split_params(model)[2]
        return (loss, (state, metrics)), grads

    def _nnx_loss(self, model, batch):
        return _split_metrics(self.loss(model, batch), "loss(model, batch)")


def split_params(module: Any) -> tuple[Any, Any, Any]:
    """An NNX module's ``(graph, nnx.Param state, the rest of its state)``."""
    from flax import nnx

    parts: Any = nnx.split(module, nnx.Param, ...)
    return parts[0], parts[1], parts[2]


def _split_metrics(out: Any, call: str) -> tuple[Any, dict]:
    """A loss's output as ``(scalar, metrics)``: a bare scalar has no metrics."""
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Mapping):
            raise TypeError(
                f"`{call}` must return a scalar or (scalar, metrics) with metrics a dict of "
                f"scalars; got a tuple of {len(out)}."
            )
        return out[0], dict(out[1])
    return out, {}


def _functional_out(out: Any, state: Any, training: bool) -> tuple[Any, tuple[Any, dict]]:
    """``(loss, (state, metrics))`` from a functional loss's ``(loss, state[, metrics])``."""
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise TypeError(
            "`loss(params, state, batch, key=..., training=...)` must return (loss, state) "
            "or (loss, state, metrics)."
        )
    metrics = dict(out[2]) if len(out) == 3 else {}
    new_state = out[1] if training else state  # evaluation leaves the model state alone
    return out[0], (new_state, metrics)


def split(loss: Callable, model: Any, state: Any) -> tuple[Model, Any, Any]:
    """``(Model, params, state)`` for what the user passed as ``params`` (and ``state``).

    An NNX module is split into its ``nnx.Param`` leaves and the rest; ``state`` (not
    ``None``) selects the functional form; otherwise the loss is pure.
    """
    if is_nnx_module(model):
        if state is not None:
            raise ValueError(
                "`fit(state=...)` is for the functional form; an NNX module keeps its own "
                "state (pass the module alone)."
            )
        graph, params, rest = split_params(model)
        return _nnx_model(loss, model, graph), params, rest
    if state is not None:
        return Model(FUNCTIONAL, loss), model, state
    return Model(PURE, loss), model, None


_MODELS: dict[tuple[Callable, int, int], Model] = {}


def _nnx_model(loss: Callable, model: Any, graph: Any) -> Model:
    """The ``Model`` of an NNX module with graph ``graph``.

    Cached: the same object for every call with an equal graph, so that the compiled
    epoch's cache finds it at once.

    Its training and evaluation graphs are ``nnx.view``s with ``deterministic`` and
    ``use_running_average`` set as ``Module.train()`` and ``Module.eval()`` set them,
    leaving the user's module as it is.
    """
    # keyed by the module object and its graph's hash: comparing two NNX graphs for
    # equality takes longer than a small model's epoch
    key = (loss, id(model), hash(graph))
    if key not in _MODELS:
        from flax import nnx

        modes = []
        for on in (False, True):
            view = nnx.view(
                model, deterministic=on, use_running_average=on, raise_if_not_found=False
            )
            modes.append(split_params(view)[0])
        if len(_MODELS) > 64:
            _MODELS.clear()
        _MODELS[key] = Model(NNX, loss, modes[0], modes[1])
    return _MODELS[key]


def write_back(model: Any, params: Any, state: Any) -> Any:
    """What the user gets back: an NNX module updated in place, else the params."""
    if is_nnx_module(model):
        from flax import nnx

        nnx.update(model, params, state)
        return model
    return params
