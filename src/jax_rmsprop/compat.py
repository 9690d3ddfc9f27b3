r"""Other frameworks' RMSProp, with their own argument names, defaults and conventions.

Each constructor returns an ``optax.GradientTransformation`` that follows the
framework's trajectory (tests compare against recorded PyTorch and Keras 3 runs):

=============  ===============  ======================  ==============  ==============
convention     PyTorch          Keras 3                 TF1             ``rmsprop``
=============  ===============  ======================  ==============  ==============
eps            outside root     inside root             inside root     outside (opt.)
lr vs momentum after the trace  before the trace        before          before
initial nu     0                0                       1               0 (opt.)
weight decay   coupled (+λθ     decoupled (θ -= ηλθ)    none            decoupled
               to the grad)
=============  ===============  ======================  ==============  ==============
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from ._transform import ArrayLike, ScalarOrSchedule, _build
from ._validation import check_range, is_zero


def _momentum_or_none(momentum: ArrayLike) -> ArrayLike | None:
    # The frameworks keep no momentum buffer for momentum == 0; a traced value keeps one.
    return None if is_zero(momentum) else momentum


def torch_rmsprop(
    lr: ScalarOrSchedule = 1e-2,
    alpha: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    momentum: ArrayLike = 0.0,
    centered: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""``torch.optim.RMSprop``.

    .. math::

      g &\leftarrow \pm g + \lambda\theta, \quad
      v \leftarrow \alpha v + (1-\alpha) g^2, \quad
      \bar g \leftarrow \alpha \bar g + (1-\alpha) g\ \text{(centered)} \\
      b &\leftarrow \beta b + \frac{g}{\sqrt{v - \bar g^2} + \epsilon}, \quad
      \theta \leftarrow \theta - \eta\, b

    The learning rate multiplies the momentum buffer (not its input) and weight decay
    is added to the gradient. Unlike PyTorch, the centered variance is clamped at 0.
    """
    return _build(
        "torch_rmsprop",
        lr,
        alpha,
        eps,
        eps_in_sqrt=False,
        initial_scale=0.0,
        centered=centered,
        momentum=_momentum_or_none(momentum),
        nesterov=False,
        bias_correction=False,
        weight_decay=weight_decay,
        state_dtype=None,
        coupled_weight_decay=True,
        lr_after_momentum=True,
        maximize=maximize,
    )


def keras_rmsprop(
    learning_rate: ScalarOrSchedule = 1e-3,
    rho: ArrayLike = 0.9,
    momentum: ArrayLike = 0.0,
    epsilon: ArrayLike = 1e-7,
    centered: bool = False,
    weight_decay: ArrayLike | None = None,
) -> optax.GradientTransformation:
    r"""``keras.optimizers.RMSprop`` (Keras 3).

    .. math::

      v \leftarrow \rho v + (1-\rho) g^2, \quad
      m \leftarrow \beta m + \frac{\eta g}{\sqrt{v - \bar g^2 + \epsilon}}, \quad
      \theta \leftarrow \theta - \eta\lambda\theta - m

    ``epsilon`` is inside the root; weight decay is decoupled and scaled by the
    learning rate. A callable ``learning_rate`` is evaluated at the iteration count.
    Keras keeps the learning rate in a float32 variable, so it is rounded to float32
    here too: with float64 parameters that rounding is visible (~1e-8 relative).
    """
    if callable(learning_rate):
        schedule = learning_rate

        def learning_rate(count):
            return jnp.asarray(schedule(count), jnp.float32)
    else:
        check_range("keras_rmsprop", "learning_rate", learning_rate, low=0.0)
        learning_rate = jnp.asarray(learning_rate, jnp.float32)
    return _build(
        "keras_rmsprop",
        learning_rate,
        rho,
        epsilon,
        eps_in_sqrt=True,
        initial_scale=0.0,
        centered=centered,
        momentum=_momentum_or_none(momentum),
        nesterov=False,
        bias_correction=False,
        weight_decay=0.0 if weight_decay is None else weight_decay,
        state_dtype=None,
    )


def tf1_rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ArrayLike = 0.9,
    momentum: ArrayLike = 0.0,
    epsilon: ArrayLike = 1e-10,
    centered: bool = False,
) -> optax.GradientTransformation:
    r"""``tf.compat.v1.train.RMSPropOptimizer``.

    .. math::

      ms \leftarrow \rho\, ms + (1-\rho) g^2\ (ms_0 = 1), \quad
      mom \leftarrow \beta\, mom + \frac{\eta g}{\sqrt{ms - mg^2 + \epsilon}}, \quad
      \theta \leftarrow \theta - mom
    """
    return _build(
        "tf1_rmsprop",
        learning_rate,
        decay,
        epsilon,
        eps_in_sqrt=True,
        initial_scale=1.0,
        centered=centered,
        momentum=_momentum_or_none(momentum),
        nesterov=False,
        bias_correction=False,
        weight_decay=0.0,
        state_dtype=None,
    )
