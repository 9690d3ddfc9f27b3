r"""Other frameworks' RMSProp, with their own argument names, defaults and conventions.

Each constructor returns an ``optax.GradientTransformation`` that follows the
framework's trajectory (tests compare against recorded PyTorch and Keras 3 runs):

|                | PyTorch                | Keras 3            | TF1            | `rmsprop`      |
|----------------|------------------------|--------------------|----------------|----------------|
| eps            | outside the root       | inside the root    | inside         | outside (opt.) |
| lr vs momentum | after the trace        | before the trace   | before         | before         |
| initial ν      | 0                      | 0                  | 1              | 0 (opt.)       |
| weight decay λ | coupled: g += λθ       | decoupled: θ -= ηλθ | none          | decoupled      |
| complex params | a moment per real part | one of abs(g)² † | one of abs(g)² † | one of abs(g)² |

† optax's rule; Keras and TF1 themselves square the complex gradient ($g^2$).

Each constructor checks its arguments by its framework's names and ranges (PyTorch
2.13's ``torch.optim.RMSprop`` checks; Keras 3 and TF1 check nothing at construction,
so the ranges are their documented ones: ``rho``, ``momentum`` in [0, 1], ``epsilon`` >
0 for Keras) and raises ``ValueError`` naming the caller's argument.

Each also takes ``state_bits`` and ``min_quantized_size`` (keyword only): the state in 8
or 4 bits, as in [`rmsprop`][jax_rmsprop.rmsprop].
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from ._conventions import ArrayLike, Convention, Hyperparams, ScalarOrSchedule
from ._rmsprop import transform
from ._validation import ANY, NONNEGATIVE, POSITIVE, UNIT, check, is_zero


def _nonzero_or_none(value: ArrayLike | None) -> ArrayLike | None:
    # The frameworks keep no momentum buffer for momentum == 0 (and skip weight decay
    # for 0); a traced value keeps both.
    return None if value is None or is_zero(value) else value


def torch_rmsprop(
    lr: ScalarOrSchedule = 1e-2,
    alpha: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    momentum: ArrayLike = 0.0,
    centered: bool = False,
    maximize: bool = False,
    *,
    state_bits: int | None = None,
    min_quantized_size: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.RMSprop``.

    $$
    \begin{aligned}
    g &\leftarrow \pm g + \lambda\theta, \quad
    v \leftarrow \alpha v + (1-\alpha) g^2, \quad
    \bar g \leftarrow \alpha \bar g + (1-\alpha) g\ \text{(centered)} \\
    b &\leftarrow \beta b + \frac{g}{\sqrt{v - \bar g^2} + \epsilon}, \quad
    \theta \leftarrow \theta - \eta\, b
    \end{aligned}
    $$

    The learning rate multiplies the momentum buffer (not its input) and weight decay
    is added to the gradient. Unlike PyTorch, the centered variance is clamped at 0.
    A complex parameter is treated as PyTorch does (``torch.view_as_real``): its real
    and imaginary parts are two real parameters, each with its own moments.

    Raises:
      ValueError: as PyTorch does, for a negative (or NaN) ``lr``, ``alpha``, ``eps``,
        ``weight_decay`` or ``momentum``.
    """
    check(
        "torch_rmsprop",
        lr=(lr, NONNEGATIVE),
        alpha=(alpha, NONNEGATIVE),
        eps=(eps, NONNEGATIVE),
        weight_decay=(weight_decay, NONNEGATIVE),
        momentum=(momentum, NONNEGATIVE),
    )
    hp = Hyperparams(
        lr,
        alpha,
        eps,
        momentum=_nonzero_or_none(momentum),
        weight_decay=_nonzero_or_none(weight_decay),
    )
    conv = Convention(
        lr_after_momentum=True,
        weight_decay="coupled",
        maximize=maximize,
        complex_as_real=True,
    )
    return transform(
        "torch_rmsprop",
        hp,
        conv,
        centered=centered,
        state_bits=state_bits,
        min_quantized_size=min_quantized_size,
    )


def keras_rmsprop(
    learning_rate: ScalarOrSchedule = 1e-3,
    rho: ArrayLike = 0.9,
    momentum: ArrayLike = 0.0,
    epsilon: ArrayLike = 1e-7,
    centered: bool = False,
    weight_decay: ArrayLike | None = None,
    *,
    state_bits: int | None = None,
    min_quantized_size: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``keras.optimizers.RMSprop`` (Keras 3).

    $$
    v \leftarrow \rho v + (1-\rho) g^2, \quad
    m \leftarrow \beta m + \frac{\eta g}{\sqrt{v - \bar g^2 + \epsilon}}, \quad
    \theta \leftarrow \theta - \eta\lambda\theta - m
    $$

    ``epsilon`` is inside the root; weight decay is decoupled and scaled by the
    learning rate. A callable ``learning_rate`` is evaluated at the iteration count.
    Keras keeps the learning rate in a float32 variable, so it is rounded to float32
    here too: with float64 parameters that rounding is visible (~1e-8 relative).
    Complex parameters follow optax's rule (one moment of $|g|^2$); Keras itself
    squares the complex gradient.

    Raises:
      ValueError: for ``rho`` or ``momentum`` outside [0, 1], ``epsilon`` <= 0 (Keras's
        documented ranges; Keras 3.15 checks nothing and returns NaN later), or a
        negative ``learning_rate``.
    """
    check(
        "keras_rmsprop",
        learning_rate=(learning_rate, NONNEGATIVE),
        rho=(rho, UNIT),
        momentum=(momentum, UNIT),
        epsilon=(epsilon, POSITIVE),
        weight_decay=(weight_decay, ANY),
    )
    if callable(learning_rate):
        schedule = learning_rate

        def learning_rate(count):
            return jnp.asarray(schedule(count), jnp.float32)
    else:
        learning_rate = jnp.asarray(learning_rate, jnp.float32)
    hp = Hyperparams(
        learning_rate,
        rho,
        epsilon,
        momentum=_nonzero_or_none(momentum),
        weight_decay=_nonzero_or_none(weight_decay),
    )
    return transform(
        "keras_rmsprop",
        hp,
        Convention(eps_in_sqrt=True),
        centered=centered,
        state_bits=state_bits,
        min_quantized_size=min_quantized_size,
    )


def tf1_rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ArrayLike = 0.9,
    momentum: ArrayLike = 0.0,
    epsilon: ArrayLike = 1e-10,
    centered: bool = False,
    *,
    state_bits: int | None = None,
    min_quantized_size: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``tf.compat.v1.train.RMSPropOptimizer``.

    $$
    ms \leftarrow \rho\, ms + (1-\rho) g^2\ (ms_0 = 1), \quad
    mom \leftarrow \beta\, mom + \frac{\eta g}{\sqrt{ms - mg^2 + \epsilon}}, \quad
    \theta \leftarrow \theta - mom
    $$

    Complex parameters follow optax's rule (one moment of $|g|^2$).

    Raises:
      ValueError: for a negative ``learning_rate`` or ``epsilon``, or ``decay`` or
        ``momentum`` outside [0, 1] (TF1 checks nothing at construction).
    """
    check(
        "tf1_rmsprop",
        learning_rate=(learning_rate, NONNEGATIVE),
        decay=(decay, UNIT),
        momentum=(momentum, UNIT),
        epsilon=(epsilon, NONNEGATIVE),
    )
    hp = Hyperparams(
        learning_rate, decay, epsilon, initial_scale=1.0, momentum=_nonzero_or_none(momentum)
    )
    return transform(
        "tf1_rmsprop",
        hp,
        Convention(eps_in_sqrt=True),
        centered=centered,
        state_bits=state_bits,
        min_quantized_size=min_quantized_size,
    )
