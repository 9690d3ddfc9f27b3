"""Groups step-throughput and roofline: one optimizer step + apply on float32 vectors."""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest
from conftest import big_enabled, donated_loop, per_second

import jax_rmsprop

SIZES = [10**3, 10**4, 10**5, 10**6, 10**7]
BYTES_PER_ELEMENT = 20  # read params, grads, nu; write params, nu (float32)
IMPLS = {
    "ours": lambda: jax_rmsprop.rmsprop(1e-3),
    "optax": lambda: optax.rmsprop(1e-3, eps_in_sqrt=False),
}


def pytest_generate_tests(metafunc):
    if "n" in metafunc.fixturenames:
        sizes = SIZES + ([10**8] if big_enabled(metafunc.config) else [])
        metafunc.parametrize("n", sizes, ids=[f"1e{len(str(s)) - 1}" for s in sizes])


def _info(benchmark, n, device):
    benchmark.extra_info.update(elements=n, bytes=BYTES_PER_ELEMENT * n, device=device)


def _rounds(n):
    return 50 if n <= 10**6 else 15


@pytest.mark.parametrize("donate", [True, False], ids=["donated", "copied"])
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.benchmark(group="step-throughput")
def test_step(benchmark, impl, n, donate, device):
    tx = IMPLS[impl]()
    params = jax.random.normal(jax.random.PRNGKey(0), (n,), jnp.float32)
    grads = params * 1e-2

    @functools.partial(jax.jit, donate_argnums=(0, 1) if donate else ())
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    run = donated_loop(step, (params, tx.init(params)), grads)
    benchmark.pedantic(run, rounds=_rounds(n), iterations=1)
    _info(benchmark, n, device)
    rate = per_second(benchmark, BYTES_PER_ELEMENT * n / 1e9)
    benchmark.extra_info["GB/s"] = rate


@pytest.mark.benchmark(group="roofline")
def test_roofline(benchmark, n, device):
    """Moves exactly the update's bytes with trivial arithmetic: the floor for any RMSProp."""
    p = jnp.ones((n,), jnp.float32)
    nu = jnp.ones((n,), jnp.float32)
    g = jnp.full((n,), 0.5, jnp.float32)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def kernel(p, nu, g):
        return p - 1e-3 * g, nu + g

    run = donated_loop(kernel, (p, nu), g)
    benchmark.pedantic(run, rounds=_rounds(n), iterations=1)
    _info(benchmark, n, device)
    rate = per_second(benchmark, BYTES_PER_ELEMENT * n / 1e9)
    benchmark.extra_info["GB/s"] = rate
