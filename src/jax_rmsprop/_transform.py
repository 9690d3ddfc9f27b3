r"""The RMSProp gradient transformation.

One fused transformation rather than a chain of optax building blocks: every
variant (eps inside or outside the root, centered, momentum, Nesterov, bias
correction, decoupled or coupled weight decay, learning rate before or after the
momentum trace) is a static branch of one per-leaf update, which XLA fuses into a
single loop over each parameter buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._validation import check_precision, check_range, concrete, is_zero

ArrayLike = jax.typing.ArrayLike
ScalarOrSchedule = ArrayLike | Callable[[jax.Array], ArrayLike]


class RMSPropState(NamedTuple):
    """State of :func:`rmsprop` and :func:`scale_by_rms`.

    Attributes:
      count: number of updates applied, ``int32``, saturating at its maximum.
        Drives learning-rate schedules and bias correction.
      nu: exponential moving average of the squared gradients, one array per
        parameter, in ``state_dtype``.
      mu: exponential moving average of the gradients (``centered=True``),
        else ``None``.
      trace: momentum buffer (``momentum`` given), else ``None``.
    """

    count: jax.Array
    nu: optax.Updates
    mu: optax.Updates | None
    trace: optax.Updates | None


def _as(x: ArrayLike, dtype) -> jax.Array:
    return jnp.asarray(x, dtype=dtype)


def _fill_like(p: jax.Array, value: ArrayLike, dtype) -> jax.Array:
    # Derived from ``p`` elementwise (not ``jnp.full_like``) so that under ``jit`` the state
    # inherits each parameter's sharding instead of landing on one device.
    # (optax's ``jax.jit(tx.init)`` replicates the state on every device of an Auto mesh.)
    zero = jnp.zeros((), dtype)
    return jnp.where(jnp.isfinite(p), zero * p.astype(dtype), zero) + _as(value, dtype)


def _eps_guards(eps: ArrayLike, dtype) -> bool:
    """Whether the update needs the underflow floor and the 0/0 guard (static).

    g^2 underflows only for |g| below ~sqrt(tiny); there an ``eps`` of at least
    sqrt(tiny) * 2^mantissa dominates the denominator and the plain formula is exact to
    an ulp (``dtype`` is the arithmetic's, float32 or float64; float32: eps >= ~1e-12;
    float64: eps >= ~1e-138). A smaller or traced ``eps`` (sweeps, ``inject_hyperparams``) takes the
    guarded form, which costs an extra root and division per element.
    """
    arr = concrete(eps)
    if arr is None:
        return True
    fi = jnp.finfo(dtype)
    return bool(np.min(arr) < np.sqrt(float(fi.tiny)) * 2.0**fi.nmant)


def _build(
    api: str,
    learning_rate: ScalarOrSchedule | None,
    decay: ArrayLike,
    eps: ArrayLike,
    *,
    eps_in_sqrt: bool,
    initial_scale: ArrayLike,
    centered: bool,
    momentum: ArrayLike | None,
    nesterov: bool,
    bias_correction: bool,
    weight_decay: ArrayLike,
    state_dtype: Any,
    coupled_weight_decay: bool = False,
    lr_after_momentum: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """Builds every RMSProp variant; the public constructors only choose conventions."""
    for name, value in [
        ("learning_rate", learning_rate),
        ("decay", decay),
        ("eps", eps),
        ("initial_scale", initial_scale),
        ("weight_decay", weight_decay),
        ("momentum", momentum),
    ]:
        check_precision(api, name, value)
    if learning_rate is not None and not callable(learning_rate):
        check_range(api, "learning_rate", learning_rate, low=0.0)
    check_range(api, "decay", decay, low=0.0, high=1.0)
    check_range(api, "eps", eps, low=0.0)
    check_range(api, "initial_scale", initial_scale, low=0.0)
    check_range(api, "weight_decay", weight_decay)
    if momentum is not None:
        check_range(api, "momentum", momentum, low=0.0, high=1.0, high_open=True)
    if nesterov and momentum is None:
        raise ValueError(f"`{api}(nesterov=True)` needs a `momentum` value; got momentum=None.")
    state_dtype = None if state_dtype is None else jnp.dtype(state_dtype)
    use_wd = not is_zero(weight_decay)

    def init_fn(params):
        def fill(value):
            return jax.tree.map(
                lambda p: _fill_like(p, value, state_dtype or jnp.result_type(p)), params
            )

        return RMSPropState(
            count=jnp.zeros([], jnp.int32),
            nu=fill(initial_scale),
            mu=fill(0.0) if centered else None,
            trace=fill(0.0) if momentum is not None else None,
        )

    def update_fn(updates, state, params=None):
        if jax.tree.structure(updates) != jax.tree.structure(state.nu):
            raise ValueError(
                f"`{api}` update: the gradient tree does not match the optimizer state.\n"
                f"  gradients: {jax.tree.structure(updates)}\n"
                f"  state.nu:  {jax.tree.structure(state.nu)}"
            )
        if use_wd and params is None:
            raise ValueError(
                f"`{api}(weight_decay=...)` needs the parameters: "
                "call update(grads, state, params)."
            )
        count_inc = optax.safe_increment(state.count)
        if callable(learning_rate):
            lr = learning_rate(state.count)
        else:
            lr = learning_rate
        # Derived hyperparameters are formed in their own precision (Python float64, or the
        # traced array's dtype) and only then cast to each leaf's compute dtype, exactly like
        # optax, so that ``1 - decay`` is not rounded twice.
        one_minus_decay = 1 - decay
        neg_lr = None if lr is None else -lr
        if bias_correction:
            # In at least float32: decay**count in bf16 would round to 1 and divide by zero.
            bc_dtype = jnp.promote_types(jnp.float32, jnp.result_type(decay))
            bc = 1 - _as(decay, bc_dtype) ** count_inc.astype(bc_dtype)

        def leaf(g, nu, mu, tr, p):
            out_dtype, store = g.dtype, nu.dtype
            # Arithmetic in at least float32: a float16 gradient above 256 squares to inf and
            # eps=1e-8 rounds to 0 there. The casts fuse into the same loop, so low-precision
            # storage still halves the bytes moved.
            dt = jnp.promote_types(store, jnp.float32)
            g, nu = g.astype(dt), nu.astype(dt)
            mu = None if mu is None else mu.astype(dt)
            tr = None if tr is None else tr.astype(dt)
            if maximize:
                g = -g
            if use_wd and coupled_weight_decay:
                g = g + _as(weight_decay, dt) * p.astype(dt)
            d = _as(decay, dt)
            omd = _as(one_minus_decay, dt)
            nu = omd * (g * g) + d * nu
            nu_hat = nu / bc.astype(dt) if bias_correction else nu
            if centered:
                mu = omd * g + d * mu
                mu_hat = mu / bc.astype(dt) if bias_correction else mu
                # nu - mu^2 >= 0 in exact arithmetic; clamp the rounding error (optax: NaN).
                v = jnp.maximum(nu_hat - mu_hat * mu_hat, 0)
            else:
                v = nu_hat
            s = v + _as(eps, dt) if eps_in_sqrt else v
            if eps_in_sqrt:
                scale = jax.lax.rsqrt(s)
            else:
                scale = 1 / (jnp.sqrt(s) + _as(eps, dt))
            if not _eps_guards(eps, dt):
                u = scale * g
            else:
                if not centered:
                    # sqrt(nu_hat) >= sqrt(1 - decay) |g| in exact arithmetic. When g^2
                    # underflows, nu_hat is 0 and the quotient would be g/0; the floor restores
                    # the finite answer. Only sub-normal ``s`` takes it: normal values are
                    # bit-identical to the plain formula.
                    floor = jnp.sqrt(omd) * jnp.abs(g)
                    root = jnp.maximum(jnp.sqrt(s), floor)
                    safe = 1 / root if eps_in_sqrt else 1 / (root + _as(eps, dt))
                    scale = jnp.where(s < jnp.finfo(dt).tiny, safe, scale)
                # A zero gradient moves nothing, even where the denominator is 0.
                u = jnp.where(g == 0, jnp.zeros((), dt), scale * g)
            if neg_lr is not None:
                if lr_after_momentum:
                    if tr is not None:
                        tr = _as(momentum, dt) * tr + u
                        u = tr
                    u = _as(neg_lr, dt) * u
                else:
                    u = _as(neg_lr, dt) * u
                    if tr is not None:
                        m = _as(momentum, dt)
                        tr = u + m * tr
                        u = u + m * tr if nesterov else tr
                if use_wd and not coupled_weight_decay:
                    u = u - _as(lr, dt) * _as(weight_decay, dt) * p.astype(dt)
            cast = lambda x: None if x is None else x.astype(store)  # noqa: E731
            return u.astype(out_dtype), cast(nu), cast(mu), cast(tr)

        leaves_g, treedef = jax.tree.flatten(updates)
        if not leaves_g:
            return updates, state._replace(count=count_inc)
        n = len(leaves_g)
        leaves_nu = treedef.flatten_up_to(state.nu)
        leaves_mu = treedef.flatten_up_to(state.mu) if centered else [None] * n
        leaves_tr = treedef.flatten_up_to(state.trace) if state.trace is not None else [None] * n
        leaves_p = treedef.flatten_up_to(params) if params is not None else [None] * n
        out = [leaf(*args) for args in zip(leaves_g, leaves_nu, leaves_mu, leaves_tr, leaves_p)]
        u, nu, mu, tr = (treedef.unflatten(col) for col in zip(*out))
        new_state = RMSPropState(
            count=count_inc,
            nu=nu,
            mu=mu if centered else None,
            trace=tr if state.trace is not None else None,
        )
        return u, new_state

    return optax.GradientTransformation(init_fn, update_fn)


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
) -> optax.GradientTransformation:
    r"""RMSProp (Hinton, 2012), exact in every convention and safe at the edges.

    For gradient :math:`g_t` and parameters :math:`\theta_t`, with
    :math:`\nu_0 = \text{initial\_scale}`, :math:`\mu_0 = 0`, :math:`m_0 = 0`:

    .. math::

      \nu_t &= \rho\,\nu_{t-1} + (1-\rho)\,g_t^2 \\
      \mu_t &= \rho\,\mu_{t-1} + (1-\rho)\,g_t \qquad\text{(centered)} \\
      \hat\nu_t &= \nu_t / (1-\rho^t), \;\hat\mu_t = \mu_t / (1-\rho^t)
          \qquad\text{(bias\_correction, else no division)} \\
      v_t &= \max(\hat\nu_t - \hat\mu_t^2,\ 0)\ \text{(centered) or}\ \hat\nu_t \\
      s_t &= \frac{g_t}{\sqrt{v_t} + \epsilon}
          \quad\text{or}\quad \frac{g_t}{\sqrt{v_t + \epsilon}}\ \text{(eps\_in\_sqrt)} \\
      u_t &= -\eta_t\, s_t \\
      m_t &= u_t + \beta\, m_{t-1}, \quad
          \Delta_t = m_t \ \text{or}\ u_t + \beta\, m_t\ \text{(nesterov)}
          \qquad\text{(momentum } \beta\text{, else } \Delta_t = u_t) \\
      \Delta_t &\mathrel{+}= -\eta_t\,\lambda\,\theta_t
          \qquad\text{(weight\_decay } \lambda\text{, decoupled)}

    where :math:`\rho` = ``decay``, :math:`\eta_t` = ``learning_rate`` (a schedule is
    evaluated at the step count ``t - 1``) and :math:`\Delta_t` is the update returned,
    to be added to the parameters (``optax.apply_updates``).

    With the same keywords it follows the same trajectory as ``optax.rmsprop``
    (the learning rate enters before the momentum trace), with two differences
    where optax returns NaN: the centered variance is clamped at 0, and a zero
    gradient gives a zero update even with ``eps=0``. A gradient whose square
    underflows still gives the finite update :math:`\le \eta/\sqrt{1-\rho}`.

    .. warning::
      The default ``eps_in_sqrt=False`` follows Hinton's lecture, PyTorch and the
      seed articles: :math:`\sqrt{v} + \epsilon`. ``optax.rmsprop`` defaults to
      ``eps_in_sqrt=True``. :mod:`jax_rmsprop.compat` reproduces PyTorch, Keras 3
      and TF1 with their own argument names and defaults.

    Args:
      learning_rate: step size :math:`\eta`, a scalar or an optax schedule.
      decay: :math:`\rho \in [0, 1]`, decay of the moving averages.
      eps: :math:`\epsilon \ge 0`, added to the root (or inside it).
      eps_in_sqrt: put ``eps`` inside the square root.
      initial_scale: :math:`\nu_0 \ge 0` (PyTorch 0, TF1 1).
      centered: divide by the root of the variance estimate instead of the second moment.
      momentum: :math:`\beta \in [0, 1)` of a momentum trace on the scaled update,
        or ``None`` for no trace (and no buffer).
      nesterov: Nesterov momentum (needs ``momentum``).
      bias_correction: divide the moving averages by :math:`1-\rho^t`.
      weight_decay: decoupled weight decay :math:`\lambda`, multiplied by the learning
        rate and applied outside the momentum trace (as Keras 3 and AdamW); needs
        ``params`` in ``update``.
      state_dtype: dtype in which the state is stored (default: each param's dtype;
        ``jnp.float32`` is recommended for bf16/f16 params, whose 8 or 11 significant bits
        cannot follow a slow moving average). The arithmetic is in float32 or wider
        whatever the storage. Updates come back in the gradients' dtype.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`RMSPropState`.

    Raises:
      ValueError: for a concrete negative or NaN ``learning_rate``, ``decay`` outside
        [0, 1], negative ``eps`` or ``initial_scale``, ``momentum`` outside [0, 1),
        or ``nesterov`` without ``momentum``. Traced values (under ``jit``/``vmap``)
        are not range-checked. Any hyperparameter array in bfloat16 or float16 (traced
        or not) is refused: ``optax.inject_hyperparams`` casts to the params' dtype
        unless given ``hyperparam_dtype=jnp.float32``, and 0.999 is 1.0 in bfloat16.

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
    return _build(
        "rmsprop",
        learning_rate,
        decay,
        eps,
        eps_in_sqrt=eps_in_sqrt,
        initial_scale=initial_scale,
        centered=centered,
        momentum=momentum,
        nesterov=nesterov,
        bias_correction=bias_correction,
        weight_decay=weight_decay,
        state_dtype=state_dtype,
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
) -> optax.GradientTransformation:
    r"""Rescales updates by the root of their moving mean square (no learning rate, no sign).

    Returns :math:`s_t` of :func:`rmsprop`: :math:`g_t / (\sqrt{v_t} + \epsilon)`
    (or :math:`g_t/\sqrt{v_t+\epsilon}`), to be chained with e.g.
    ``optax.scale_by_learning_rate``. Arguments as in :func:`rmsprop`.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`RMSPropState`
      (``trace`` is ``None``).
    """
    return _build(
        "scale_by_rms",
        None,
        decay,
        eps,
        eps_in_sqrt=eps_in_sqrt,
        initial_scale=initial_scale,
        centered=centered,
        momentum=None,
        nesterov=False,
        bias_correction=bias_correction,
        weight_decay=0.0,
        state_dtype=state_dtype,
    )
