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
import weakref
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
            state = _like(split_params(model)[2], state)
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
        state = _like(split_params(model)[2], state)
        return (loss, (state, metrics)), _like(grads, params)

    def _nnx_loss(self, model, batch):
        return _split_metrics(self.loss(model, batch), "loss(model, batch)")


def _like(state: Any, template: Any) -> Any:
    """An ``nnx.State`` as ``template`` holds it: a State, or a plain dict of arrays."""
    from flax import nnx

    return state if isinstance(template, nnx.State) else nnx.to_pure_dict(state)


def pure_states(tree: Any) -> Any:
    """``tree`` with each ``nnx.State`` in it a plain dict (itself when it holds none)."""
    nnx = _nnx_or_none()
    if nnx is None:
        return tree
    is_state = lambda x: isinstance(x, nnx.State)  # noqa: E731
    if not any(map(is_state, jax.tree.leaves(tree, is_leaf=is_state))):
        return tree
    return jax.tree.map(lambda x: nnx.to_pure_dict(x) if is_state(x) else x, tree, is_leaf=is_state)


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

    An NNX module is split into its ``nnx.Param`` leaves and the rest, each a plain dict
    of arrays (``nnx.to_pure_dict``; Flax is replacing ``nnx.State`` by dicts, and an
    ``nnx.Variable`` is a Python object that every compiled call would flatten and
    rebuild, ~5 us each); ``state`` (not ``None``) selects the functional form; otherwise
    the loss is pure.
    """
    if is_nnx_module(model):
        if state is not None:
            raise ValueError(
                "`fit(state=...)` is for the functional form; an NNX module keeps its own "
                "state (pass the module alone)."
            )
        from flax import nnx

        variables, leaves, treedef = _flatten(model)
        layout = _layout(model, variables, leaves, treedef)
        if layout is not None:
            if len(_SPLIT) > 64:  # (entries of fits that raised before writing back)
                _SPLIT.clear()
            _SPLIT[id(model)] = (weakref.ref(model), layout, variables)
            return layout.model(loss, model), *layout.states(leaves)
        graph, params, rest = split_params(model)
        pure = nnx.to_pure_dict
        return _nnx_model(loss, model, graph), pure(params), pure(rest)
    if state is not None:
        return Model(FUNCTIONAL, loss), model, state
    return Model(PURE, loss), model, None


class _Layout:
    """Where an NNX module's arrays go in ``nnx.split(module, nnx.Param, ...)``'s states.

    Those states as plain dicts, for every module whose pytree structure
    (``jax.tree.flatten``: its classes, static attributes, each ``Variable``'s type and
    metadata) is one already split: ``nnx.split`` walks the graph in Python (~0.4 ms for
    a four-layer model, and ``nnx.update`` as much), while a flatten and two unflattens
    take ~0.07 ms: ``fit``'s fixed cost per call.
    """

    def __init__(self, parts: tuple, at: tuple):
        self.defs = tuple(jax.tree.structure(p) for p in parts)  # the two states'
        self.at = at  # each state's leaves' positions among the module's leaves
        self.models: dict[Callable, Model] = {}

    def model(self, loss: Callable, module: Any) -> Model:
        if loss not in self.models:
            if len(self.models) > 64:  # (a new loss function per call)
                self.models.clear()
            self.models[loss] = _nnx_model(loss, module, split_params(module)[0])
        return self.models[loss]

    def states(self, leaves: list) -> tuple[Any, Any]:
        """The ``nnx.Param`` state and the rest's, from the module's leaves."""
        return tuple(  # type: ignore[return-value]
            jax.tree.unflatten(d, [leaves[i] for i in at]) for d, at in zip(self.defs, self.at)
        )

    def write(self, variables: list, params: Any, state: Any) -> bool:
        """Sets the module's Variables (as split) to the states' arrays.

        ``False`` if the states are not of this layout. (``nnx.update`` sets a Variable
        the same way.)
        """
        parts = [jax.tree.flatten(p) for p in (params, state)]
        if [d for _, d in parts] != list(self.defs):
            return False
        values: list = [None] * len(variables)
        for (leaves, _), at in zip(parts, self.at):
            for i, a in zip(at, leaves):
                values[i] = a
        for v, a in zip(variables, values):
            v.set_raw_value(a, _unsafe_bypass_check=True)
        return True


_LAYOUTS: dict[Any, _Layout | None] = {}
# the layout each live module was last split with (write_back's, without flattening again)
_SPLIT: dict[int, tuple[weakref.ref, _Layout, list]] = {}


_IS_VARIABLE: dict[type, bool] = {}


def _flatten(module: Any) -> tuple[list, list, Any]:
    """``(the Variables met, leaves, treedef)`` of ``jax.tree.flatten(module)``, in one walk."""
    from flax import nnx

    variables: list = []

    def seen(x: Any) -> bool:  # (never a leaf: records the Variables on the way)
        # isinstance through nnx.Variable's metaclass is slow: once per type (but for
        # tracers, which it answers by their abstract value)
        kind = type(x)
        if (is_variable := _IS_VARIABLE.get(kind)) is None:
            is_variable = isinstance(x, nnx.Variable)
            if not isinstance(x, jax.core.Tracer):
                _IS_VARIABLE[kind] = is_variable
        if is_variable:
            variables.append(x)
        return False

    leaves, treedef = jax.tree.flatten(module, is_leaf=seen)
    return variables, leaves, treedef


def _layout(module: Any, variables: list, leaves: list, treedef: Any) -> _Layout | None:
    """The module's layout, found by its structure; ``None`` where ``nnx.split`` must do.

    Not for a module whose leaves are not one array per ``Variable`` (a ``pytree=False``
    module, Variables holding pytrees), nor for one where an array appears twice (shared
    Variables, which ``nnx.split`` keeps once).
    """
    if len({id(a) for a in leaves}) != len(leaves):
        return None
    if treedef not in _LAYOUTS:
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        _LAYOUTS[treedef] = _new_layout(module, variables, leaves)
    return _LAYOUTS[treedef]


def _new_layout(module: Any, variables: list, leaves: list) -> _Layout | None:
    """The layout from one ``nnx.split`` of ``module`` (its Variables and leaves given)."""
    if len(variables) != len(leaves) or not all(
        v.get_raw_value() is a and isinstance(a, jax.Array) for v, a in zip(variables, leaves)
    ):
        return None
    from flax import nnx

    parts = tuple(nnx.to_pure_dict(p) for p in split_params(module)[1:])
    where = {id(a): i for i, a in enumerate(leaves)}
    at = tuple(tuple(where.get(id(a), -1) for a in jax.tree.leaves(p)) for p in parts)
    if sorted(i for part in at for i in part) != list(range(len(leaves))):
        return None
    return _Layout(parts, at)


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
        ref, layout, variables = _SPLIT.pop(id(model), (lambda: None, None, []))
        if layout is None or ref() is not model or not layout.write(variables, params, state):
            from flax import nnx

            nnx.update(model, params, state)
        return model
    return params
