"""Hyperparameters as traced arrays: vmap sweeps, inject_hyperparams, no recompiles."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop

from ..helpers import apply_sequence, optax_rules
from ..reference import rmsprop_reference

GRADS = np.random.default_rng(3).normal(size=(15, 4))
X0 = np.linspace(-1.0, 1.0, 4)


def _final(tx):
    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    p0 = jnp.asarray(X0)
    (p, _), _ = jax.lax.scan(body, (p0, tx.init(p0)), jnp.asarray(GRADS))
    return p


@pytest.mark.parametrize(
    "static", [dict(), dict(momentum=0.0, centered=True), dict(momentum=0.0, nesterov=True)]
)
def test_vmap_over_hyperparameters_equals_a_loop(static):
    lrs = jnp.array([1e-3, 1e-2, 1e-1])
    decays = jnp.array([0.5, 0.9, 0.99])
    eps = jnp.array([1e-8, 1e-4, 1e-2])
    momenta = jnp.array([0.0, 0.5, 0.9])

    def train(lr, d, e, m):
        kw = dict(static, momentum=m) if "momentum" in static else static
        return _final(jax_rmsprop.rmsprop(lr, decay=d, eps=e, **kw))

    swept = jax.jit(jax.vmap(train))(lrs, decays, eps, momenta)
    for i in range(3):
        kw = dict(static, momentum=float(momenta[i])) if "momentum" in static else static
        looped = _final(
            jax_rmsprop.rmsprop(float(lrs[i]), decay=float(decays[i]), eps=float(eps[i]), **kw)
        )
        np.testing.assert_allclose(swept[i], looped, rtol=1e-13)
    # and the loop itself is right
    ref = rmsprop_reference(
        X0,
        GRADS,
        lr=1e-2,
        decay=0.9,
        eps=1e-4,
        **(dict(static, momentum=0.5) if "momentum" in static else static),
    )
    np.testing.assert_allclose(swept[1], ref[-1], rtol=1e-12)


def test_vmap_over_weight_decay_and_initial_scale():
    wds = jnp.array([0.0, 0.1])
    inits = jnp.array([0.0, 1.0])
    swept = jax.vmap(
        lambda w, i: _final(jax_rmsprop.rmsprop(0.01, weight_decay=w, initial_scale=i))
    )(wds, inits)
    for k in range(2):
        ref = rmsprop_reference(
            X0, GRADS, lr=0.01, weight_decay=float(wds[k]), initial_scale=float(inits[k])
        )
        np.testing.assert_allclose(swept[k], ref[-1], rtol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        dict(learning_rate=0.01),
        dict(learning_rate=0.01, momentum=0.9, nesterov=True, centered=True),
        dict(learning_rate=0.02, bias_correction=True, eps_in_sqrt=True, weight_decay=0.1),
    ],
)
def test_inject_hyperparams_equals_plain(kw):
    plain = apply_sequence(jax_rmsprop.rmsprop(**kw), X0, GRADS)
    injected = apply_sequence(optax.inject_hyperparams(jax_rmsprop.rmsprop)(**kw), X0, GRADS)
    np.testing.assert_allclose(injected, plain, rtol=1e-14)


def test_inject_hyperparams_schedule_and_mutation():
    sched = optax.linear_schedule(0.1, 0.0, 10)
    tx = optax.inject_hyperparams(jax_rmsprop.rmsprop)(learning_rate=sched, decay=0.9)
    plain = apply_sequence(jax_rmsprop.rmsprop(sched, decay=0.9), X0, GRADS)
    np.testing.assert_allclose(apply_sequence(tx, X0, GRADS), plain, rtol=1e-14)
    state = tx.init(jnp.asarray(X0))
    assert float(state.hyperparams["decay"]) == pytest.approx(0.9)
    state.hyperparams["decay"] = jnp.asarray(0.5)  # mutate between steps: no rebuild needed
    _, state = tx.update(jnp.asarray(GRADS[0]), state, jnp.asarray(X0))
    ref = rmsprop_reference(X0, GRADS[:1], lr=0.1, decay=0.5)
    np.testing.assert_allclose(state.inner_state.nu, (1 - 0.5) * GRADS[0] ** 2, rtol=1e-14)
    assert ref.shape == (2, 4)


@optax_rules()  # optax's cosine schedule mixes dtypes
def test_second_jitted_step_does_not_recompile():
    tx = jax_rmsprop.rmsprop(optax.cosine_decay_schedule(0.1, 100), momentum=0.9, centered=True)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}

    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    params, state = step(params, state, grads)  # compiles
    with jax.log_compiles(), _CompileCounter() as counter:
        for _ in range(3):
            params, state = step(params, state, grads)
    assert counter.count == 0
    assert step._cache_size() == 1
    # positive control: the counter does see a compilation (new shapes)
    with jax.log_compiles(), _CompileCounter() as counter:
        bigger = {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}
        step(bigger, tx.init(bigger), jax.tree.map(jnp.ones_like, bigger))
    assert counter.count >= 1


class _CompileCounter:
    """Counts XLA compilations through JAX's own compile log."""

    def __enter__(self):
        import logging

        self.count = 0
        outer = self

        class Handler(logging.Handler):
            def emit(self, record):
                if "Compiling" in record.getMessage():
                    outer.count += 1

        self.handler = Handler()
        self.logger = logging.getLogger("jax")
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
