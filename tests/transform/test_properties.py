"""Property tests: random configurations, trees and gradient sequences against the reference.

Hypothesis draws every variant (eps inside/outside the root, centered, momentum, Nesterov,
bias correction, weight decay, initial_scale, a schedule), a pytree of random shapes and a
fixed gradient sequence with magnitudes from 1e-8 to 1e8 and exact zeros, and compares each
step's update with ``tests/reference.py`` (NumPy float64, written from the formulas):

- float64: within 1e-10 relative;
- float32: within a few float32 ulp per step taken (rounding accumulates in the state).

The gradients do not depend on the parameters, so the comparison is not chaotic. Centered
with bias correction is left out: its first-step variance is exactly 0 in exact arithmetic,
so any two implementations differ there by their rounding (``test_reliability`` and the optax
parity tests cover it). The ``ci`` profile runs a fixed set of examples; ``--thorough`` runs
500.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import jax_rmsprop

from ..reference import rmsprop_reference

F32_ULP = 2.0**-23
F32_STEP_ULPS = 8


@st.composite
def configs(draw):
    centered = draw(st.booleans())
    momentum = draw(st.none() | st.floats(0.0, 0.95))
    return dict(
        lr=draw(st.floats(1e-4, 1.0)),
        schedule=draw(st.booleans()),
        decay=draw(st.floats(0.01, 0.999)),
        eps=draw(st.sampled_from([0.0, 1e-14, 1e-8, 1e-6, 1e-3])),
        eps_in_sqrt=draw(st.booleans()),
        initial_scale=draw(st.sampled_from([0.0, 0.1, 1.0])),
        centered=centered,
        momentum=momentum,
        nesterov=momentum is not None and draw(st.booleans()),
        bias_correction=not centered and draw(st.booleans()),
        weight_decay=draw(st.sampled_from([0.0, 1e-4, 1e-2])),
    )


@st.composite
def problems(draw):
    shapes = draw(
        st.lists(array_shapes(min_dims=0, max_dims=3, max_side=5), min_size=1, max_size=3)
    )
    steps = draw(st.integers(1, 25))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.floats(-6.0, 6.0))
    zero_fraction = draw(st.sampled_from([0.0, 0.2]))
    x0, grads = {}, {}
    for i, shape in enumerate(shapes):
        g = rng.standard_normal((steps, *shape)) * scale * 10.0 ** rng.uniform(-2, 2, shape)
        g[rng.random(g.shape) < zero_fraction] = 0.0
        grads[f"w{i}"] = g
        x0[f"w{i}"] = rng.standard_normal(shape)
    return x0, grads


def _lr(cfg):
    """The schedule for jax_rmsprop and the same one, independently, for the reference.

    (Not ``optax.exponential_decay``: optax's schedules compute in float32 even with x64.)
    """
    lr = cfg["lr"]
    if cfg["schedule"]:
        return (lambda count: lr * 0.5 ** (count.astype(jnp.float64) / 5)), (
            lambda t: lr * 0.5 ** (t / 5)
        )
    return lr, lr


def _ours(cfg, x0, grads, dtype):
    kw = {k: v for k, v in cfg.items() if k not in ("lr", "schedule")}
    tx = jax_rmsprop.rmsprop(_lr(cfg)[0], **kw)

    @jax.jit
    def updates(x0, gs):
        def body(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), u

        return jax.lax.scan(body, (x0, tx.init(x0)), gs)[1]

    cast = lambda t: jax.tree.map(lambda a: jnp.asarray(a, dtype), t)  # noqa: E731
    out = updates(cast(x0), cast(grads))
    for u in jax.tree.leaves(out):
        assert u.dtype == dtype
    return jax.tree.map(lambda a: np.asarray(a, np.float64), out)


def _reference(cfg, x0, grads):
    """The reference's updates, and the magnitude of the terms summed into each of them.

    The magnitude runs the momentum trace over the absolute scaled gradients and adds the
    weight-decay term of the parameters' own magnitude: an update that is a small
    difference of large terms (a trace reversing, decay cancelling the gradient) is only
    defined to their precision.
    """
    kw = {k: v for k, v in cfg.items() if k not in ("lr", "schedule")}
    lr = _lr(cfg)[1]
    plain = dict(kw, momentum=None, nesterov=False, weight_decay=0.0)
    m = cfg["momentum"] or 0.0
    updates, magnitudes = {}, {}
    for k in grads:
        path, updates[k] = rmsprop_reference(x0[k], grads[k], lr=lr, return_updates=True, **kw)
        scaled = np.abs(rmsprop_reference(x0[k], grads[k], lr=lr, return_updates=True, **plain)[1])
        # the parameters are themselves a running sum: bounded by |x0| + the magnitudes so far
        trace, mag, x_mag = np.zeros_like(scaled[0]), [], np.abs(path[0])
        for t, a in enumerate(scaled):
            trace = m * trace + a
            eta = lr(t) if callable(lr) else lr
            mag.append(
                (a + m * trace if cfg["nesterov"] else trace) + eta * cfg["weight_decay"] * x_mag
            )
            x_mag = x_mag + mag[-1]
        magnitudes[k] = np.stack(mag)
    return updates, magnitudes


def _condition(cfg, grads):
    """max nu / (nu - mu^2): how much the centered variance amplifies rounding (1 if not)."""
    if not cfg["centered"]:
        return 1.0
    d, kappa = cfg["decay"], 1.0
    for g in grads.values():
        nu = np.full(g.shape[1:], cfg["initial_scale"])
        mu = np.zeros(g.shape[1:])
        for gt in g:
            nu = d * nu + (1 - d) * gt * gt
            mu = d * mu + (1 - d) * gt
            var = nu - mu * mu
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(nu > 0, nu / var, 1.0)
            kappa = max(kappa, float(np.max(ratio, initial=1.0)))
    return kappa


def _assert_updates_close(ours, reference, rtol_per_step, dtype):
    """Each step's updates within rtol of that step's scale and of the magnitude of the
    terms summed into each element (and within the smallest normal number: XLA flushes
    subnormal results to zero)."""
    ref, magnitudes = reference
    for k in ref:
        for t in range(ref[k].shape[0]):
            err = np.abs(ours[k][t] - ref[k][t])
            scale = np.max(magnitudes[k][t], initial=0.0) + magnitudes[k][t]
            bound = rtol_per_step(t) * scale + np.finfo(dtype).tiny
            assert np.all(err <= bound), (
                f"leaf {k}, step {t}: error/bound up to {np.max(err / bound)}\n"
                f"ours {ours[k][t]}\nreference {ref[k][t]}"
            )


@pytest.mark.slow  # (hypothesis: many examples, each compiled)
@given(cfg=configs(), problem=problems())
def test_float64_matches_reference_to_1e_10(cfg, problem):
    x0, grads = problem
    assume(_condition(cfg, grads) < 1e4)
    ours = _ours(cfg, x0, grads, jnp.float64)
    _assert_updates_close(ours, _reference(cfg, x0, grads), lambda t: 1e-10, np.float64)


@pytest.mark.slow
@given(cfg=configs(), problem=problems())
def test_float32_within_a_few_ulp_per_step(cfg, problem):
    x0, grads = problem
    kappa = _condition(cfg, grads)
    assume(kappa < 1e2)
    grads = {k: g.astype(np.float32).astype(np.float64) for k, g in grads.items()}
    x0 = {k: x.astype(np.float32).astype(np.float64) for k, x in x0.items()}
    ours = _ours(cfg, x0, grads, jnp.float32)
    # The float64 reference is exact at float32 precision. Rounding of the float32 state
    # adds up over the steps, and the centered variance amplifies it by kappa.
    ref = _reference(cfg, x0, grads)
    _assert_updates_close(
        ours, ref, lambda t: F32_STEP_ULPS * F32_ULP * (t + 1) * kappa, np.float32
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_property_tolerances_are_tight_enough_to_fail(dtype):
    """Positive control: a decay off by 1e-8 (float64) or 1e-3 (float32) is caught."""
    cfg = dict(lr=0.01, schedule=False, decay=0.9, eps=1e-8, eps_in_sqrt=False,
               initial_scale=0.0, centered=False, momentum=None, nesterov=False,
               bias_correction=False, weight_decay=0.0)  # fmt: skip
    rng = np.random.default_rng(0)
    x0 = {"w": np.zeros(5)}
    grads = {"w": rng.standard_normal((10, 5)).astype(np.float32).astype(np.float64)}
    delta = 1e-8 if dtype == jnp.float64 else 1e-3
    ours = _ours(dict(cfg, decay=0.9 + delta), x0, grads, dtype)
    rtol = (
        (lambda t: 1e-10) if dtype == jnp.float64 else (lambda t: F32_STEP_ULPS * F32_ULP * (t + 1))
    )
    with pytest.raises(AssertionError):
        _assert_updates_close(ours, _reference(cfg, x0, grads), rtol, dtype)
