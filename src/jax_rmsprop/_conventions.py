"""What an RMSProp variant is made of: its state, its convention, its numbers.

- ``Convention``: what differs between frameworks' RMSProp (eps inside or outside
  the root, learning rate before or after the momentum trace, coupled or decoupled weight
  decay, maximize, complex numbers as pairs of reals). A frozen, static value.
- ``Variant``: a convention and the switches (centered, Nesterov, bias correction, the
  state's dtype): everything that decides the program.
- ``Hyperparams``: the numbers (learning rate, decay, eps, initial scale, momentum,
  weight decay); each may be a traced array, so ``vmap`` sweeps need no wrapper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import optax

ArrayLike = jax.typing.ArrayLike
ScalarOrSchedule = ArrayLike | Callable[[jax.Array], ArrayLike]


class RMSPropState(NamedTuple):
    """State of [`rmsprop`][jax_rmsprop.rmsprop] and [`scale_by_rms`][jax_rmsprop.scale_by_rms].

    Attributes:
      count: number of updates applied, ``int32``, saturating at its maximum.
        Drives learning-rate schedules and bias correction.
      nu: exponential moving average of the squared gradients $|g|^2$, one array
        per parameter, in ``state_dtype`` (real for complex parameters).
      mu: exponential moving average of the gradients (``centered=True``),
        else ``None``.
      trace: momentum buffer (``momentum`` given), else ``None``.
    """

    # (``count`` shadows ``tuple.count``, as in optax's states.)
    count: jax.Array  # type: ignore[assignment]
    nu: optax.Updates
    mu: optax.Updates | None
    trace: optax.Updates | None


@dataclasses.dataclass(frozen=True)
class Convention:
    r"""How a framework's RMSProp differs from ``rmsprop``'s defaults (all static).

    Attributes:
      eps_in_sqrt: $g/\sqrt{v+\epsilon}$ instead of $g/(\sqrt v+\epsilon)$.
      lr_after_momentum: the trace accumulates the scaled gradient and the learning rate
        multiplies the trace (PyTorch), instead of the trace accumulating
        $-\eta s$ (optax, Keras, TF1).
      weight_decay: ``"decoupled"``: $\Delta \mathrel{+}= -\eta\lambda\theta$
        outside the trace (Keras 3, AdamW); ``"coupled"``: $g \mathrel{+}=
        \lambda\theta$ before the moments (PyTorch).
      maximize: ascend ($g \to -g$).
      complex_as_real: a complex parameter is its real and imaginary parts, each with its
        own second moment (PyTorch's ``view_as_real``), instead of one moment of
        $|g|^2$ (optax).
    """

    eps_in_sqrt: bool = False
    lr_after_momentum: bool = False
    weight_decay: Literal["decoupled", "coupled"] = "decoupled"
    maximize: bool = False
    complex_as_real: bool = False


class Hyperparams(NamedTuple):
    """The numbers of an RMSProp variant; any of them may be a traced array.

    ``learning_rate=None`` leaves the update unscaled (``scale_by_rms``);
    ``momentum=None`` keeps no trace; ``weight_decay=None`` applies none.
    """

    learning_rate: ScalarOrSchedule | None
    decay: ArrayLike = 0.9
    eps: ArrayLike = 1e-8
    initial_scale: ArrayLike = 0.0
    momentum: ArrayLike | None = None
    weight_decay: ArrayLike | None = None


@dataclasses.dataclass(frozen=True)
class Variant:
    """The static structure of one transformation: a convention and the variant's switches."""

    convention: Convention
    centered: bool
    nesterov: bool
    bias_correction: bool
    state_dtype: Any
    state_format: Any = None  # _quantized.StateFormat, or None: the state as state_dtype


class Derived(NamedTuple):
    """``1 - decay`` and ``-learning_rate``, formed once from ``Hyperparams``.

    Formed in the numbers' own precision (Python double for Python numbers, as optax
    does) when the optimizer is made, so that they can travel as traced leaves under
    ``jit`` without being rounded again (a traced float32 ``decay`` gives
    ``1 - decay`` = 0.100000024 where optax has 0.1).
    """

    one_minus_decay: Any
    neg_lr: Any  # None: a schedule (negated at each step) or no learning rate


def derive(hp: Hyperparams) -> Derived:
    """``Derived`` for ``hp``."""
    lr: Any = hp.learning_rate
    return Derived(1 - hp.decay, None if lr is None or callable(lr) else -lr)
