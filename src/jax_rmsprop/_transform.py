r"""The RMSProp update, built from a few readable steps.

Module-level steps, each readable alone: ``_moments`` (the moving averages and the
variance estimate), ``_precondition`` (the division by the root, with its eps guards
decided once per dtype), ``_learning_rate_and_momentum`` and the weight decay in
``_leaf``; ``init`` and ``update`` apply them to a pytree. What a variant is made of
(``Convention``, ``Variant``, ``Hyperparams``) is in ``_conventions``; the public
constructors are in ``_rmsprop``.

It is one fused transformation rather than optax's chain of building blocks, but not
for speed: XLA fuses optax's chain into the same loop over each buffer. The reasons are
one state (``RMSPropState``, so checkpoints, sweeps and shardings see one object),
one place for every framework's convention, and float32-or-wider arithmetic over
low-precision storage (the state is cast once per step, not once per chained stage).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _quantized as q8
from ._conventions import ArrayLike, Derived, Hyperparams, RMSPropState, Variant
from ._validation import concrete


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


def _step_scalars(
    hp: Hyperparams, derived: Derived, count: jax.Array, bias_correction: bool
) -> _Scalars:
    """This step's hyperparameters, uncast.

    Derived values were formed in their own precision (``Derived``) and are only now
    cast to each leaf's dtype, exactly like optax, so that ``1 - decay`` is not rounded
    twice.
    """
    lr: Any = hp.learning_rate
    neg_lr = derived.neg_lr
    if callable(lr):
        lr = lr(count)
        neg_lr = -lr
    bias = None
    if bias_correction:
        # In at least float32: decay**count in bf16 would round to 1 and divide by zero.
        dt = _wide(jnp.result_type(hp.decay))
        bias = 1 - jnp.asarray(hp.decay, dt) ** optax.safe_increment(count).astype(dt)
    return _Scalars(
        decay=hp.decay,
        one_minus_decay=derived.one_minus_decay,
        eps=hp.eps,
        guard=False,
        bias=bias,
        neg_lr=neg_lr,
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


def _leaf(v: Variant, scalars: Callable[[Any], _Scalars], g, nu, mu, tr, p, store=None):
    """One parameter's update and new state, in float32-or-wider arithmetic.

    ``store(new, dtype, slot)`` rounds new state ``slot`` (0 nu, 1 mu, 2 the trace) to
    its storage; ``None``: a cast (to nearest).
    """
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
    cast = store or (lambda new, dtype, slot: new.astype(dtype))
    back = lambda new, old, k: None if old is None else cast(new, old.dtype, k)  # noqa: E731
    return u.astype(g.dtype), back(new_nu, nu, 0), back(new_mu, mu, 1), back(new_tr, tr, 2)


def _array(x: Any) -> Any:
    """A leaf as an array: Python numbers (params as a list of floats) as optax takes them."""
    return x if hasattr(x, "dtype") else jnp.asarray(x)


def _stored_leaf(v: Variant, scalars, at: tuple[jax.Array, int], g, nu, mu, tr, p):
    """``_leaf`` on a leaf whose state may be quantized: decoded before, encoded after.

    The update is computed from the float32 moments of this step; only what is stored
    is rounded to the codes. ``at`` is (step count, leaf index), the dither's counter.
    """
    stored = (nu, mu, tr)
    count, index = at
    if not any(isinstance(x, q8.QuantizedState) for x in stored):
        store = None
        if _rounds_stochastically(nu, g):
            store = lambda x, dtype, k: q8.round_stochastically(  # noqa: E731
                x, dtype, q8.dither(x.shape, count, 3 * index + k)
            )
        return _leaf(v, scalars, g, nu, mu, tr, p, store)
    fmt = v.state_format
    assert fmt is not None
    codec = fmt.codec
    plain = [
        q8.decode(x, codec(k), g.shape) if isinstance(x, q8.QuantizedState) else x
        for k, x in enumerate(stored)
    ]
    if v.centered and isinstance(mu, q8.QuantizedState):
        # |mu| <= sqrt(nu) holds for the exact averages; rounded separately, the stored pair
        # may break it, and a variance clamped to 0 makes the step g / eps.
        root = jnp.sqrt(plain[0])
        plain[1] = jnp.clip(plain[1], -root, root)
    u, *new = _leaf(v, scalars, g, plain[0], plain[1], plain[2], p)
    out = []
    for k, (x, old) in enumerate(zip(new, stored)):
        if isinstance(old, q8.QuantizedState):
            x = x.astype(jnp.float32)
            e = q8.next_exponents(old, codec(k), x)
            x = q8.encode(x, e, codec(k), q8.dither(g.shape, count, 3 * index + k))
        out.append(x)
    return (u, *out)


def _rounds_stochastically(nu: Any, g: Any) -> bool:
    """Whether a plain state in ``nu``'s dtype is rounded stochastically to its storage.

    bfloat16 and float16 state of a real parameter: its moving average's increment
    ``(1 - decay) (g^2 - nu)`` is mostly below half an ulp of 8 or 11 significant bits
    (at decay 0.999 nearly always), so round-to-nearest leaves it stale.
    """
    narrow = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return nu is not None and jnp.dtype(nu.dtype) in narrow and not jnp.iscomplexobj(g)


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


def _is_quantized(x: Any) -> bool:
    return isinstance(x, q8.QuantizedState)


def _check_kinds(api: str, grads: Any, params: Any, state: RMSPropState) -> None:
    """A complex gradient for a real parameter (or the reverse) is a mistake: refuse it.

    Checked against ``params`` when given, else against ``mu``/``trace`` (which are
    complex for complex parameters); ``nu`` is real either way.
    """
    ref = next((t for t in (params, state.mu, state.trace) if t is not None), None)
    if ref is None:
        return
    refs = [  # (a quantized leaf is real: complex parameters are refused at init)
        r.exponents if _is_quantized(r) else r for r in jax.tree.leaves(ref, is_leaf=_is_quantized)
    ]
    pairs = zip(jax.tree_util.tree_leaves_with_path(grads), refs)
    for (path, g), r in pairs:
        if jnp.iscomplexobj(g) != jnp.iscomplexobj(r):
            kind = lambda x: "complex" if jnp.iscomplexobj(x) else "real"  # noqa: E731
            raise ValueError(
                f"`{api}` update: the gradient at {jax.tree_util.keystr(path) or '<root>'} is "
                f"{kind(g)} ({g.dtype}) but its parameter is {kind(r)} ({r.dtype})."
            )


def init(variant: Variant, hp: Hyperparams, params: Any) -> RMSPropState:
    """The state for ``params``: abstract for abstract leaves (``jax.ShapeDtypeStruct``)."""
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(params)):
        return jax.eval_shape(functools.partial(init, variant, hp), params)

    def fill(value, slot):
        def one(p):
            p = _array(p)
            fmt = variant.state_format
            if fmt is not None and fmt.applies(p):
                if jnp.iscomplexobj(p):
                    raise ValueError(
                        f"`state_bits={fmt.bits}` does not support complex parameters (got "
                        f"{p.dtype}): use state_bits=None, or min_quantized_size above "
                        f"{math.prod(p.shape)}."
                    )
                return q8.init_state(p, value, fmt.codec(slot))
            dtypes = _state_dtypes(p, variant.state_dtype, variant.convention.complex_as_real)
            return _fill_like(p, value, dtypes[min(slot, 1)])

        return jax.tree.map(one, params)

    return RMSPropState(
        count=jnp.zeros([], jnp.int32),
        nu=fill(hp.initial_scale, 0),
        mu=fill(0.0, 1) if variant.centered else None,
        trace=fill(0.0, 2) if hp.momentum is not None else None,
    )


def _check_update(api: str, hp: Hyperparams, grads: Any, state: RMSPropState, params: Any):
    """Refuses a gradient tree that does not match the state, or missing params."""
    # (Any: jaxlib's PyTreeDef is opaque to mypy)
    want: Any = jax.tree.structure(state.nu, is_leaf=_is_quantized)
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


def update(
    api: str,
    variant: Variant,
    hp: Hyperparams,
    derived: Derived,
    grads,
    state: RMSPropState,
    params=None,
    **extra,
):
    """One step for every leaf; hyperparameters cast once per dtype, not once per leaf."""
    del extra  # optax.GradientTransformationExtraArgs: accepted, not used
    _check_update(api, hp, grads, state, params)
    count_inc = optax.safe_increment(state.count)
    leaves_g, treedef_ = jax.tree.flatten(grads)
    leaves_g = [_array(g) for g in leaves_g]
    treedef: Any = treedef_
    if not leaves_g:
        return grads, state._replace(count=count_inc)
    uncast = _step_scalars(hp, derived, state.count, variant.bias_correction)
    by_dtype: dict[Any, _Scalars] = {}

    def scalars(dtype):
        if dtype not in by_dtype:
            by_dtype[dtype] = _cast(uncast, dtype)
        return by_dtype[dtype]

    def column(tree):
        return [None] * len(leaves_g) if tree is None else treedef.flatten_up_to(tree)

    cols = [leaves_g, *(column(t) for t in (state.nu, state.mu, state.trace, params))]
    cols = [cols[0], *cols[1:4], [None if p is None else _array(p) for p in cols[4]]]
    out = [
        _stored_leaf(variant, scalars, (state.count, i), *args) for i, args in enumerate(zip(*cols))
    ]
    u, nu, mu, tr = (treedef.unflatten(col) for col in zip(*out))
    return u, RMSPropState(
        count=count_inc,
        nu=nu,
        mu=mu if state.mu is not None else None,
        trace=tr if state.trace is not None else None,
    )
