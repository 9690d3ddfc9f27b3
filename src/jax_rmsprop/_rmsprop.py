"""The public constructors: ``rmsprop`` and ``scale_by_rms`` (``compat`` has the others).

Each checks its arguments by its own names and builds the transformation with
``transform``; ``describe_hyperparameters`` reads a made transformation's settings back
for messages and checkpoint fingerprints.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._conventions import ArrayLike, Convention, Hyperparams, ScalarOrSchedule, Variant, derive
from ._quantized import MIN_QUANTIZED_SIZE, StateFormat
from ._traced import Init, Update
from ._validation import (
    ANY,
    LEARNING_RATE,
    NONNEGATIVE,
    UNIT,
    UNIT_HALF_OPEN,
    check,
    check_average_moves,
    is_zero,
)

_DEFAULT = Convention()


def transform(
    api: str,
    hp: Hyperparams,
    convention: Convention = _DEFAULT,
    *,
    centered: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    state_dtype: Any = None,
    state_bits: int | None = None,
    min_quantized_size: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Every RMSProp variant; the public constructors check their arguments and call it.

    ``api`` is the public constructor's name, for error messages.
    """
    if nesterov and hp.momentum is None:
        raise ValueError(f"`{api}(nesterov=True)` needs a `momentum` value; got momentum=None.")
    variant = Variant(
        convention,
        centered,
        nesterov,
        bias_correction,
        None if state_dtype is None else jnp.dtype(state_dtype),
        _state_format(api, state_bits, min_quantized_size),
    )
    if centered and variant.state_format is not None and variant.state_format.bits == 4:
        raise ValueError(
            f"`{api}(centered=True)` needs state_bits=8 or None: the centered variance "
            "nu - mu^2 cancels, and 4-bit state (one mantissa bit) cannot resolve it."
        )
    return optax.GradientTransformationExtraArgs(
        Init(variant, hp), Update(api, variant, hp, derive(hp))
    )


def _state_format(api: str, bits: Any, min_size: Any) -> StateFormat | None:
    """The checked ``state_bits`` and ``min_quantized_size`` of constructor ``api``.

    Both decide the program, so they must be concrete: ``optax.inject_hyperparams``
    turns numbers into arrays, and needs them in its ``static_args`` unless they are
    concrete there. ``min_quantized_size`` is not read without ``state_bits``.
    """
    if bits is None:
        return None
    return StateFormat(
        _static_int(api, "state_bits", bits, "None, 8 or 4", (8, 4)),
        _static_int(
            api,
            "min_quantized_size",
            MIN_QUANTIZED_SIZE if min_size is None else min_size,
            "an integer >= 0",
            None,
        ),
    )


def _static_int(api: str, name: str, value: Any, what: str, allowed: Any) -> int:
    """``value`` as a Python int (a concrete integer scalar), else ``ValueError``."""
    arr = None
    if not isinstance(value, bool | float) and not isinstance(value, jax.core.Tracer):
        arr = np.asarray(value)
    if arr is None or arr.ndim != 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"`{api}({name}=...)` must be {what}; got {value!r}.")
    out = int(arr)
    if (allowed is not None and out not in allowed) or out < 0:
        raise ValueError(f"`{api}({name}=...)` must be {what}; got {value!r}.")
    return out


def describe_hyperparameters(tx: Any) -> dict[str, str]:
    """This library's RMSProp in ``tx`` by its settings, for messages and fingerprints.

    ``{"optimizer": "rmsprop", "learning_rate": "0.01", ...}`` for a transformation made
    here; ``{}`` for any other (its functions say nothing of its numbers).
    """
    update = getattr(tx, "update", None)
    if not isinstance(update, Update):
        return {}
    v = update.variant
    out = {"optimizer": update.api}
    out |= {f: _setting(getattr(update.hp, f)) for f in update.hp._fields}
    out |= {"centered": str(v.centered), "nesterov": str(v.nesterov)}
    if v.state_format is not None:  # (absent for state_bits=None: older fingerprints hold)
        out["state_bits"] = str(v.state_format.bits)
        out["min_quantized_size"] = str(v.state_format.min_size)
        if v.state_format.bits == 4:  # (the pairs of codes a byte: changed 2026-12-08)
            out["state_layout"] = "block-halves"
    return out


def _setting(value: Any) -> str:
    """One hyperparameter as stable text.

    A schedule by its name (its address changes from run to run; its values are covered
    by the first-update digest), anything else by repr.
    """
    if callable(value):
        return f"a schedule ({getattr(value, '__qualname__', type(value).__name__)})"
    return repr(value)


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ArrayLike = 0.9,
    eps: ArrayLike = 1e-8,
    *,
    eps_in_sqrt: bool = False,
    initial_scale: ArrayLike = 0.0,
    centered: bool = False,
    momentum: ArrayLike | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    weight_decay: ArrayLike = 0.0,
    state_dtype: Any = None,
    state_bits: int | None = None,
    min_quantized_size: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""RMSProp (Hinton, 2012), exact in every convention and safe at the edges.

    For gradient $g_t$ and parameters $\theta_t$, with
    $\nu_0 = \text{initial\_scale}$, $\mu_0 = 0$, $m_0 = 0$:

    $$
    \begin{aligned}
    \nu_t &= \rho\,\nu_{t-1} + (1-\rho)\,|g_t|^2 \\
    \mu_t &= \rho\,\mu_{t-1} + (1-\rho)\,g_t \qquad\text{(centered)} \\
    \hat\nu_t &= \nu_t / (1-\rho^t), \;\hat\mu_t = \mu_t / (1-\rho^t)
    \qquad\text{(bias\_correction, else no division)} \\
    v_t &= \max(\hat\nu_t - |\hat\mu_t|^2,\ 0)\ \text{(centered) or}\ \hat\nu_t \\
    s_t &= \frac{g_t}{\sqrt{v_t} + \epsilon}
    \quad\text{or}\quad \frac{g_t}{\sqrt{v_t + \epsilon}}\ \text{(eps\_in\_sqrt)} \\
    u_t &= -\eta_t\, s_t \\
    m_t &= u_t + \beta\, m_{t-1}, \quad
    \Delta_t = m_t \ \text{or}\ u_t + \beta\, m_t\ \text{(nesterov)}
    \qquad\text{(momentum } \beta\text{, else } \Delta_t = u_t) \\
    \Delta_t &\mathrel{+}= -\eta_t\,\lambda\,\theta_t
    \qquad\text{(weight\_decay } \lambda\text{, decoupled)}
    \end{aligned}
    $$

    where $\rho$ = ``decay``, $\eta_t$ = ``learning_rate`` (a schedule is
    evaluated at the step count ``t - 1``) and $\Delta_t$ is the update returned,
    to be added to the parameters (``optax.apply_updates``).

    With the same keywords it follows the same trajectory as ``optax.rmsprop``
    (the learning rate enters before the momentum trace), complex parameters included
    ($\nu$ is real and follows $|g|^2$), with two differences where optax
    returns NaN: the centered variance is clamped at 0, and a zero gradient gives a zero
    update even with ``eps=0``. A gradient whose square underflows still gives the finite
    update $\le \eta/\sqrt{1-\rho}$. ``update`` accepts and ignores extra keyword
    arguments (``optax.GradientTransformationExtraArgs``), and ``init`` on abstract
    leaves (``jax.ShapeDtypeStruct``) returns the abstract state.

    Warning:
      The default ``eps_in_sqrt=False`` follows Hinton's lecture, PyTorch and the
      seed articles: $\sqrt{v} + \epsilon$. ``optax.rmsprop`` defaults to
      ``eps_in_sqrt=True``. [`compat`][jax_rmsprop.compat] reproduces PyTorch, Keras 3
      and TF1 with their own argument names and defaults.

    Args:
      learning_rate: step size $\eta$, a scalar or an optax schedule (not ``None``,
        which would step up the gradient; the unscaled transform is
        [`scale_by_rms`][jax_rmsprop.scale_by_rms]).
      decay: $\rho \in [0, 1]$, decay of the moving averages. ``decay=1`` freezes
        $\nu$ at ``initial_scale`` (SGD with step $\eta/(\sqrt{\nu_0}+\epsilon)$); it
        is refused with ``initial_scale=0``, where every update would be $g/\epsilon$.
      eps: $\epsilon \ge 0$, added to the root (or inside it).
      eps_in_sqrt: put ``eps`` inside the square root.
      initial_scale: $\nu_0 \ge 0$ (PyTorch 0, TF1 1).
      centered: divide by the root of the variance estimate instead of the second moment.
      momentum: $\beta \in [0, 1)$ of a momentum trace on the scaled update,
        or ``None`` for no trace (and no buffer).
      nesterov: Nesterov momentum (needs ``momentum``).
      bias_correction: divide the moving averages by $1-\rho^t$.
      weight_decay: decoupled weight decay $\lambda$, multiplied by the learning
        rate and applied outside the momentum trace (as Keras 3 and AdamW); needs
        ``params`` in ``update``.
      state_dtype: dtype in which the state is stored (default: each param's dtype).
        The arithmetic is in float32 or wider whatever the storage, and a bfloat16 or
        float16 state is rounded to it stochastically (counter-based bits,
        deterministic given the step): rounded to nearest, its 8 or 11 significant bits
        could not follow a slow moving average (an increment below half an ulp is
        lost). Updates come back in the gradients' dtype.
      state_bits: ``8`` or ``4`` to store $\nu$, the momentum trace and the centered
        $\mu$ block-wise quantized ([`QuantizedState`][jax_rmsprop.QuantizedState]:
        about 1.03 or 0.52 bytes per element instead of 4); ``None`` (default) stores
        them in ``state_dtype``. Each step's update is computed from this step's
        float32 moments; only the stored state is rounded (stochastically). Real
        parameters only.
      min_quantized_size: leaves with fewer elements than this (``None``: 4096, as
        bitsandbytes) keep their state in ``state_dtype`` when ``state_bits`` is set.
        (``None`` rather than a number so that ``optax.inject_hyperparams`` leaves it.)

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state
      [`RMSPropState`][jax_rmsprop.RMSPropState].

    Raises:
      ValueError: for a concrete negative or NaN ``learning_rate`` (or ``None``),
        ``decay`` outside [0, 1] (or 1 with ``initial_scale=0``), negative ``eps`` or
        ``initial_scale``, ``momentum`` outside [0, 1), ``nesterov`` without
        ``momentum``, or ``state_bits`` other than None, 8 or 4.
        Traced values (under ``jit``/``vmap``)
        are not range-checked. Any hyperparameter array in bfloat16 or float16 (traced
        or not) is refused: ``optax.inject_hyperparams`` casts to the params' dtype
        unless given ``hyperparam_dtype=jnp.float32``, and 0.999 is 1.0 in bfloat16.
        In ``update``: a complex gradient for a real parameter, or the reverse.
      TypeError: for a hyperparameter given as text (``rmsprop("0.01")``).

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jax_rmsprop
      >>> tx = optax.chain(jax_rmsprop.rmsprop(0.1, decay=0.9, eps=1e-6))
      >>> params = jnp.array([5.0, 4.0])
      >>> state = tx.init(params)
      >>> grads = jax.grad(lambda x: jnp.sum(x**2))(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(optax.apply_updates(params, updates).round(6))  # 5 - 0.1 * 10 / sqrt(10)
      [4.683772 3.683772]

    References:
      Hinton, Srivastava, Swersky, *Neural Networks for Machine Learning*, lecture 6e, 2012.
      Graves, *Generating Sequences With Recurrent Neural Networks*, 2013 (centered).
    """
    check(
        "rmsprop",
        learning_rate=(learning_rate, LEARNING_RATE),
        decay=(decay, UNIT),
        eps=(eps, NONNEGATIVE),
        initial_scale=(initial_scale, NONNEGATIVE),
        momentum=(momentum, UNIT_HALF_OPEN),
        weight_decay=(weight_decay, ANY),
    )
    check_average_moves("rmsprop", decay, initial_scale)
    hp = Hyperparams(
        learning_rate,
        decay,
        eps,
        initial_scale,
        momentum,
        None if is_zero(weight_decay) else weight_decay,
    )
    return transform(
        "rmsprop",
        hp,
        Convention(eps_in_sqrt=eps_in_sqrt),
        centered=centered,
        nesterov=nesterov,
        bias_correction=bias_correction,
        state_dtype=state_dtype,
        state_bits=state_bits,
        min_quantized_size=min_quantized_size,
    )


def scale_by_rms(
    decay: ArrayLike = 0.9,
    eps: ArrayLike = 1e-8,
    *,
    eps_in_sqrt: bool = False,
    initial_scale: ArrayLike = 0.0,
    centered: bool = False,
    bias_correction: bool = False,
    state_dtype: Any = None,
    state_bits: int | None = None,
    min_quantized_size: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by the root of their moving mean square (no learning rate, no sign).

    Returns $s_t$ of [`rmsprop`][jax_rmsprop.rmsprop]: $g_t / (\sqrt{v_t} + \epsilon)$
    (or $g_t/\sqrt{v_t+\epsilon}$), to be chained with e.g.
    ``optax.scale_by_learning_rate``. Arguments as in [`rmsprop`][jax_rmsprop.rmsprop].

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state
      [`RMSPropState`][jax_rmsprop.RMSPropState]
      (``trace`` is ``None``).
    """
    check(
        "scale_by_rms",
        decay=(decay, UNIT),
        eps=(eps, NONNEGATIVE),
        initial_scale=(initial_scale, NONNEGATIVE),
    )
    check_average_moves("scale_by_rms", decay, initial_scale)
    return transform(
        "scale_by_rms",
        Hyperparams(None, decay, eps, initial_scale),
        Convention(eps_in_sqrt=eps_in_sqrt),
        centered=centered,
        bias_correction=bias_correction,
        state_dtype=state_dtype,
        state_bits=state_bits,
        min_quantized_size=min_quantized_size,
    )
