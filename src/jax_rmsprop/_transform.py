r"""The RMSProp gradient transformation, built from a few readable parts.

- ``Convention``: what differs between frameworks' RMSProp (eps inside or outside
  the root, learning rate before or after the momentum trace, coupled or decoupled weight
  decay, maximize, complex numbers as pairs of reals). A frozen, static value.
- ``Hyperparams``: the numbers (learning rate, decay, eps, initial scale, momentum,
  weight decay); each may be a traced array, so ``vmap`` sweeps need no wrapper.
- Module-level steps, each readable alone: ``_moments`` (the moving averages and the
  variance estimate), ``_precondition`` (the division by the root, with its eps
  guards decided once per dtype), ``_learning_rate_and_momentum`` and the weight
  decay in ``_leaf``.

It is one fused transformation rather than optax's chain of building blocks, but not
for speed: XLA fuses optax's chain into the same loop over each buffer. The reasons are
one state (``RMSPropState``, so checkpoints, sweeps and shardings see one object),
one place for every framework's convention, and float32-or-wider arithmetic over
low-precision storage (the state is cast once per step, not once per chained stage).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._validation import (
    ANY,
    NONNEGATIVE,
    UNIT,
    UNIT_HALF_OPEN,
    check,
    concrete,
    is_zero,
)

ArrayLike = jax.typing.ArrayLike
ScalarOrSchedule = ArrayLike | Callable[[jax.Array], ArrayLike]


class RMSPropState(NamedTuple):
    """State of ``rmsprop`` and ``scale_by_rms``.

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


class _Scalars(NamedTuple):
    """One step's hyperparameters, in one arithmetic dtype (or uncast)."""

    decay: Any
    one_minus_decay: Any
    eps: Any
    guard: bool  # the eps guards are compiled in (see _needs_guard)
    bias: Any  # 1 - decay^t (bias correction), else None
    neg_lr: Any  # None: no learning rate (scale_by_rms)
    lr: Any
    momentum: Any  # None: no trace
    weight_decay: Any  # None: no weight decay


def _wide(dtype: Any) -> Any:
    """``dtype``, or float32 (complex64) if it is narrower: the arithmetic's dtype.

    Written out rather than ``jnp.promote_types``, which refuses float32 with float64
    under ``jax_numpy_dtype_promotion="strict"``.
    """
    dtype = jnp.dtype(dtype)
    if jnp.finfo(dtype).bits >= 32:
        return dtype
    return jnp.dtype(jnp.complex64 if jnp.issubdtype(dtype, jnp.complexfloating) else jnp.float32)


def _complex_of(dtype: Any) -> Any:
    """The complex dtype with ``dtype``'s precision (at least complex64)."""
    return jnp.dtype(jnp.complex128 if jnp.finfo(dtype).bits == 64 else jnp.complex64)


def _needs_guard(eps: ArrayLike, dtype: Any) -> bool:
    """Whether the update needs the underflow floor and the 0/0 guard (static).

    g^2 underflows only for |g| below ~sqrt(tiny); there an ``eps`` of at least
    sqrt(tiny) * 2^mantissa dominates the denominator and the plain formula is exact to
    an ulp (float32: eps >= ~1e-12; float64: eps >= ~1e-138). A smaller or traced ``eps``
    (sweeps, ``inject_hyperparams``) takes the guarded form, which costs an extra root and
    division per element.
    """
    arr = concrete(eps)
    if arr is None:
        return True
    fi = jnp.finfo(dtype)
    return bool(np.min(arr) < np.sqrt(float(fi.tiny)) * 2.0**fi.nmant)


def _step_scalars(hp: Hyperparams, count: jax.Array, bias_correction: bool) -> _Scalars:
    """This step's hyperparameters, uncast.

    Derived values are formed in their own precision (Python float64, or the traced
    array's dtype) and only then cast to each leaf's dtype, exactly like optax, so that
    ``1 - decay`` is not rounded twice.
    """
    lr: Any = hp.learning_rate(count) if callable(hp.learning_rate) else hp.learning_rate
    bias = None
    if bias_correction:
        # In at least float32: decay**count in bf16 would round to 1 and divide by zero.
        dt = _wide(jnp.result_type(hp.decay))
        bias = 1 - jnp.asarray(hp.decay, dt) ** optax.safe_increment(count).astype(dt)
    return _Scalars(
        decay=hp.decay,
        one_minus_decay=1 - hp.decay,
        eps=hp.eps,
        guard=False,
        bias=bias,
        neg_lr=None if lr is None else -lr,
        lr=lr,
        momentum=hp.momentum,
        weight_decay=hp.weight_decay,
    )


def _cast(s: _Scalars, dtype: Any) -> _Scalars:
    """``s`` in ``dtype``, with the eps guard decided for that dtype."""

    def cast(x):
        return None if x is None else jnp.asarray(x, dtype=dtype)

    return _Scalars(
        decay=cast(s.decay),
        one_minus_decay=cast(s.one_minus_decay),
        eps=cast(s.eps),
        guard=_needs_guard(s.eps, dtype),
        bias=cast(s.bias),
        neg_lr=cast(s.neg_lr),
        lr=cast(s.lr),
        momentum=cast(s.momentum),
        weight_decay=cast(s.weight_decay),
    )


def _moments(g, nu, mu, real: _Scalars, arith: _Scalars):
    """The moving averages and the variance estimate $v_t$.

    ``nu`` follows $|g|^2$ and is stored real; ``mu`` (centered) follows $g$. For a
    complex ``g`` the arithmetic is optax's: its ``nu`` is complex with a zero imaginary
    part, so the average, the variance and the root are taken in the complex dtype
    (the same operations, hence the same roundings: complex64 is bit-identical to
    ``optax.rmsprop``) and only the real part is kept.
    """
    cplx = jnp.iscomplexobj(g)
    g2 = jnp.real(jnp.conj(g) * g) if cplx else g * g
    if cplx:
        # nu >= 0, so min(nu, 0) is 0; written so because XLA folds a constant zero
        # imaginary part away and contracts the rest into a real FMA, which optax's
        # complex state (whose imaginary part XLA cannot know) never gets.
        nu = jax.lax.complex(nu, jnp.minimum(nu, jnp.zeros((), nu.dtype)))
        nu = (real.one_minus_decay * g2).astype(g.dtype) + arith.decay * nu
    else:
        nu = real.one_minus_decay * g2 + real.decay * nu
    nu_hat = nu if real.bias is None else nu / (arith.bias if cplx else real.bias)
    if mu is None:
        return (jnp.real(nu) if cplx else nu), None, nu_hat
    mu = arith.one_minus_decay * g + arith.decay * mu
    mu_hat = mu if arith.bias is None else mu / arith.bias
    mu2 = jnp.real(jnp.conj(mu_hat) * mu_hat) if cplx else mu_hat * mu_hat
    # nu - |mu|^2 >= 0 in exact arithmetic; clamp the rounding error (optax: NaN).
    var = nu_hat - mu2.astype(nu_hat.dtype)
    var = jnp.where(jnp.real(var) < 0, jnp.zeros((), var.dtype), var)
    return (jnp.real(nu) if cplx else nu), mu, var


def _precondition(g, v, real: _Scalars, eps_in_sqrt: bool, centered: bool):
    r"""$s_t = g_t/(\sqrt{v_t}+\epsilon)$ or $g_t/\sqrt{v_t+\epsilon}$.

    ``v`` is complex (with a zero imaginary part) for a complex ``g``: see ``_moments``.
    """
    eps = real.eps.astype(v.dtype)
    s = v + eps if eps_in_sqrt else v
    scale = jax.lax.rsqrt(s) if eps_in_sqrt else 1 / (jnp.sqrt(s) + eps)
    if not real.guard:
        return scale.astype(g.dtype) * g
    if not centered:
        # sqrt(nu_hat) >= sqrt(1 - decay) |g| in exact arithmetic. When |g|^2 underflows,
        # nu_hat is 0 and the quotient would be g/0; the floor restores the finite answer.
        # Only sub-normal ``s`` takes it: normal values are bit-identical to the plain formula.
        s_re = jnp.real(s)
        floor = jnp.sqrt(real.one_minus_decay) * jnp.abs(g)
        root = jnp.maximum(jnp.sqrt(s_re), floor)
        safe = 1 / root if eps_in_sqrt else 1 / (root + real.eps)
        scale = jnp.where(s_re < jnp.finfo(s_re.dtype).tiny, safe.astype(scale.dtype), scale)
    # A zero gradient moves nothing, even where the denominator is 0.
    return jnp.where(g == 0, jnp.zeros((), g.dtype), scale.astype(g.dtype) * g)


def _learning_rate_and_momentum(s, tr, arith: _Scalars, lr_after: bool, nesterov: bool):
    r"""$u_t = -\eta s_t$ and the momentum trace, in the convention's order."""
    if arith.neg_lr is None:
        return s, tr
    if lr_after:
        if tr is not None:
            tr = arith.momentum * tr + s
            s = tr
        return arith.neg_lr * s, tr
    u = arith.neg_lr * s
    if tr is None:
        return u, tr
    tr = u + arith.momentum * tr
    return (u + arith.momentum * tr if nesterov else tr), tr


@dataclasses.dataclass(frozen=True)
class _Variant:
    """The static structure of one transformation."""

    convention: Convention
    centered: bool
    nesterov: bool
    bias_correction: bool
    state_dtype: Any


def _leaf(v: _Variant, scalars: Callable[[Any], _Scalars], g, nu, mu, tr, p):
    """One parameter's update and new state, in float32-or-wider arithmetic."""
    conv = v.convention
    if conv.complex_as_real and jnp.iscomplexobj(g):
        parts = [
            _leaf(v, scalars, *(None if x is None else part(x) for x in (g, nu, mu, tr, p)))
            for part in (jnp.real, jnp.imag)
        ]
        return tuple(None if a is None else jax.lax.complex(a, b) for a, b in zip(*parts))
    # A float16 gradient above 256 squares to inf, and eps=1e-8 rounds to 0 there; the
    # casts fuse into the same loop, so low-precision storage still halves the bytes moved.
    dt_real = _wide(nu.dtype)
    dt = _complex_of(dt_real) if jnp.iscomplexobj(g) else dt_real
    real, arith = scalars(dt_real), scalars(dt)
    new_g = g.astype(dt)
    if conv.maximize:
        new_g = -new_g
    if arith.weight_decay is not None and conv.weight_decay == "coupled":
        new_g = new_g + arith.weight_decay * p.astype(dt)
    new_nu, new_mu, var = _moments(
        new_g, nu.astype(dt_real), None if mu is None else mu.astype(dt), real, arith
    )
    s = _precondition(new_g, var, real, conv.eps_in_sqrt, v.centered)
    u, new_tr = _learning_rate_and_momentum(
        s, None if tr is None else tr.astype(dt), arith, conv.lr_after_momentum, v.nesterov
    )
    if arith.weight_decay is not None and conv.weight_decay == "decoupled" and arith.lr is not None:
        u = u - arith.lr * arith.weight_decay * p.astype(dt)
    back = lambda new, old: None if old is None else new.astype(old.dtype)  # noqa: E731
    return u.astype(g.dtype), back(new_nu, nu), back(new_mu, mu), back(new_tr, tr)


def _state_dtypes(p: Any, state_dtype: Any, complex_as_real: bool) -> tuple[Any, Any]:
    """(nu dtype, mu/trace dtype) for parameter ``p``."""
    store = jnp.dtype(state_dtype) if state_dtype is not None else jnp.dtype(p.dtype)
    if not jnp.issubdtype(p.dtype, jnp.complexfloating):
        return store, store
    cplx = _complex_of(store)
    return (cplx if complex_as_real else jnp.finfo(cplx).dtype), cplx


def _fill_like(p: jax.Array, value: ArrayLike, dtype: Any) -> jax.Array:
    # Derived from ``p`` elementwise (not ``jnp.full_like``) so that under ``jit`` the state
    # inherits each parameter's sharding instead of landing on one device.
    # (optax's ``jax.jit(tx.init)`` replicates the state on every device of an Auto mesh.)
    is_cplx = jnp.issubdtype(dtype, jnp.complexfloating)
    src = jnp.real(p) if jnp.iscomplexobj(p) and not is_cplx else p
    zero = jnp.zeros((), dtype)
    fill = jnp.asarray(value, jnp.finfo(dtype).dtype)
    if is_cplx:  # a pair of reals: both parts start at ``value``
        fill = jax.lax.complex(fill, fill)
    return jnp.where(jnp.isfinite(src), zero * src.astype(dtype), zero) + fill


def _check_kinds(api: str, grads: Any, params: Any, state: RMSPropState) -> None:
    """A complex gradient for a real parameter (or the reverse) is a mistake: refuse it.

    Checked against ``params`` when given, else against ``mu``/``trace`` (which are
    complex for complex parameters); ``nu`` is real either way.
    """
    ref = next((t for t in (params, state.mu, state.trace) if t is not None), None)
    if ref is None:
        return
    pairs = zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref))
    for (path, g), r in pairs:
        if jnp.iscomplexobj(g) != jnp.iscomplexobj(r):
            kind = lambda x: "complex" if jnp.iscomplexobj(x) else "real"  # noqa: E731
            raise ValueError(
                f"`{api}` update: the gradient at {jax.tree_util.keystr(path) or '<root>'} is "
                f"{kind(g)} ({g.dtype}) but its parameter is {kind(r)} ({r.dtype})."
            )


def _init(variant: _Variant, hp: Hyperparams, params: Any) -> RMSPropState:
    """The state for ``params``: abstract for abstract leaves (``jax.ShapeDtypeStruct``)."""
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(params)):
        return jax.eval_shape(functools.partial(_init, variant, hp), params)

    def fill(value, which):
        def one(p):
            dtypes = _state_dtypes(p, variant.state_dtype, variant.convention.complex_as_real)
            return _fill_like(p, value, dtypes[which])

        return jax.tree.map(one, params)

    return RMSPropState(
        count=jnp.zeros([], jnp.int32),
        nu=fill(hp.initial_scale, 0),
        mu=fill(0.0, 1) if variant.centered else None,
        trace=fill(0.0, 1) if hp.momentum is not None else None,
    )


def _check_update(api: str, hp: Hyperparams, grads: Any, state: RMSPropState, params: Any):
    """Refuses a gradient tree that does not match the state, or missing params."""
    # (Any: jaxlib's PyTreeDef is opaque to mypy)
    want: Any = jax.tree.structure(state.nu)
    got: Any = jax.tree.structure(grads)
    if got != want:
        raise ValueError(
            f"`{api}` update: the gradient tree does not match the optimizer state.\n"
            f"  gradients: {got}\n"
            f"  state.nu:  {want}"
        )
    if hp.weight_decay is not None and params is None:
        raise ValueError(
            f"`{api}(weight_decay=...)` needs the parameters: call update(grads, state, params)."
        )
    _check_kinds(api, grads, params, state)


def _update(
    api: str, variant: _Variant, hp: Hyperparams, grads, state: RMSPropState, params=None, **extra
):
    """One step for every leaf; hyperparameters cast once per dtype, not once per leaf."""
    del extra  # optax.GradientTransformationExtraArgs: accepted, not used
    _check_update(api, hp, grads, state, params)
    count_inc = optax.safe_increment(state.count)
    leaves_g, treedef_ = jax.tree.flatten(grads)
    treedef: Any = treedef_
    if not leaves_g:
        return grads, state._replace(count=count_inc)
    uncast = _step_scalars(hp, state.count, variant.bias_correction)
    by_dtype: dict[Any, _Scalars] = {}

    def scalars(dtype):
        if dtype not in by_dtype:
            by_dtype[dtype] = _cast(uncast, dtype)
        return by_dtype[dtype]

    def column(tree):
        return [None] * len(leaves_g) if tree is None else treedef.flatten_up_to(tree)

    cols = [leaves_g, *(column(t) for t in (state.nu, state.mu, state.trace, params))]
    out = [_leaf(variant, scalars, *args) for args in zip(*cols)]
    u, nu, mu, tr = (treedef.unflatten(col) for col in zip(*out))
    return u, RMSPropState(
        count=count_inc,
        nu=nu,
        mu=mu if state.mu is not None else None,
        trace=tr if state.trace is not None else None,
    )


def transform(
    api: str,
    hp: Hyperparams,
    convention: Convention = Convention(),
    *,
    centered: bool = False,
    nesterov: bool = False,
    bias_correction: bool = False,
    state_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Every RMSProp variant; the public constructors check their arguments and call it.

    ``api`` is the public constructor's name, for error messages.
    """
    if nesterov and hp.momentum is None:
        raise ValueError(f"`{api}(nesterov=True)` needs a `momentum` value; got momentum=None.")
    variant = _Variant(
        convention,
        centered,
        nesterov,
        bias_correction,
        None if state_dtype is None else jnp.dtype(state_dtype),
    )
    return optax.GradientTransformationExtraArgs(_Init(variant, hp), _Update(api, variant, hp))


def _value_key(x: Any) -> Any:
    """A hashable stand-in for one hyperparameter.

    Its value for Python and NumPy scalars (with the type, which decides the arithmetic),
    else the object itself (schedules are compared as functions; arrays by identity).
    """
    if x is None or isinstance(x, bool | int | float | complex | str):
        return (type(x).__name__, x)
    if isinstance(x, np.generic):
        return (x.dtype.name, x.item())
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    return ("obj", x)


class _ByValue:
    """``init``/``update`` of one configuration, equal to those of an equal configuration.

    Equal optimizers then share compiled programs: ``jax.jit`` hashes a static ``tx`` by
    its functions, and ``fit(..., rmsprop(1e-2))`` called twice compiles once.
    """

    __slots__ = ("_key", "__weakref__")  # (jax.jit(tx.update) keeps a weak reference)
    _key: tuple

    def _fields(self) -> tuple:
        raise NotImplementedError

    @property
    def key(self) -> tuple:
        try:
            return self._key
        except AttributeError:
            *static, hp = self._fields()
            self._key = (type(self).__name__, *static, tuple(_value_key(v) for v in hp))
            return self._key

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.key == self.key  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.key)


def describe_hyperparameters(tx: Any) -> dict[str, str]:
    """This library's RMSProp in ``tx`` by its settings, for messages and fingerprints.

    ``{"optimizer": "rmsprop", "learning_rate": "0.01", ...}`` for a transformation made
    here; ``{}`` for any other (its functions say nothing of its numbers).
    """
    update = getattr(tx, "update", None)
    if not isinstance(update, _Update):
        return {}
    v = update.variant
    out = {"optimizer": update.api}
    out |= {f: _setting(getattr(update.hp, f)) for f in update.hp._fields}
    out |= {"centered": str(v.centered), "nesterov": str(v.nesterov)}
    return out


def _setting(value: Any) -> str:
    """One hyperparameter as stable text.

    A schedule by its name (its address changes from run to run; its values are covered
    by the first-update digest), anything else by repr.
    """
    if callable(value):
        return f"a schedule ({getattr(value, '__qualname__', type(value).__name__)})"
    return repr(value)


class _Init(_ByValue):
    __slots__ = ("variant", "hp")

    def __init__(self, variant: _Variant, hp: Hyperparams):
        self.variant, self.hp = variant, hp

    def _fields(self) -> tuple:
        return self.variant, self.hp

    def __call__(self, params: Any) -> RMSPropState:
        return _init(self.variant, self.hp, params)


class _Update(_ByValue):
    __slots__ = ("api", "variant", "hp")

    def __init__(self, api: str, variant: _Variant, hp: Hyperparams):
        self.api, self.variant, self.hp = api, variant, hp

    def _fields(self) -> tuple:
        return self.api, self.variant, self.hp

    def __call__(self, grads, state: RMSPropState, params=None, **extra):
        return _update(self.api, self.variant, self.hp, grads, state, params, **extra)


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
      ``eps_in_sqrt=True``. ``compat`` reproduces PyTorch, Keras 3
      and TF1 with their own argument names and defaults.

    Args:
      learning_rate: step size $\eta$, a scalar or an optax schedule.
      decay: $\rho \in [0, 1]$, decay of the moving averages.
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
      state_dtype: dtype in which the state is stored (default: each param's dtype;
        ``jnp.float32`` is recommended for bf16/f16 params, whose 8 or 11 significant bits
        cannot follow a slow moving average). The arithmetic is in float32 or wider
        whatever the storage. Updates come back in the gradients' dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state ``RMSPropState``.

    Raises:
      ValueError: for a concrete negative or NaN ``learning_rate``, ``decay`` outside
        [0, 1], negative ``eps`` or ``initial_scale``, ``momentum`` outside [0, 1),
        or ``nesterov`` without ``momentum``. Traced values (under ``jit``/``vmap``)
        are not range-checked. Any hyperparameter array in bfloat16 or float16 (traced
        or not) is refused: ``optax.inject_hyperparams`` casts to the params' dtype
        unless given ``hyperparam_dtype=jnp.float32``, and 0.999 is 1.0 in bfloat16.
        In ``update``: a complex gradient for a real parameter, or the reverse.

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
        learning_rate=(learning_rate, NONNEGATIVE),
        decay=(decay, UNIT),
        eps=(eps, NONNEGATIVE),
        initial_scale=(initial_scale, NONNEGATIVE),
        momentum=(momentum, UNIT_HALF_OPEN),
        weight_decay=(weight_decay, ANY),
    )
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
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by the root of their moving mean square (no learning rate, no sign).

    Returns $s_t$ of ``rmsprop``: $g_t / (\sqrt{v_t} + \epsilon)$
    (or $g_t/\sqrt{v_t+\epsilon}$), to be chained with e.g.
    ``optax.scale_by_learning_rate``. Arguments as in ``rmsprop``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state ``RMSPropState``
      (``trace`` is ``None``).
    """
    check(
        "scale_by_rms",
        decay=(decay, UNIT),
        eps=(eps, NONNEGATIVE),
        initial_scale=(initial_scale, NONNEGATIVE),
    )
    return transform(
        "scale_by_rms",
        Hyperparams(None, decay, eps, initial_scale),
        Convention(eps_in_sqrt=eps_in_sqrt),
        centered=centered,
        bias_correction=bias_correction,
        state_dtype=state_dtype,
    )
