"""Group quantized-step: one step + apply with 8-bit and 4-bit state, against optax float32.

Interleaved in one round-robin (``helpers.round_robin``): optax.rmsprop float32, ours
float32, ours with a bfloat16 state (stochastically rounded), ours with ``state_bits=8``
and ``state_bits=4``, and a minimal kernel that moves the bytes of the 8-bit step (read
params, grads and one byte of state; write params and the byte) with trivial arithmetic.
Ratios are ``optax / kernel`` time (above 1: faster than optax). 1e8 elements with ``--big`` only.

``ours-8bit-region`` is ``ours-8bit`` compiled as ``fit`` and ``tune`` compile their
programs (``_compile.training_jit``: on CPU, XLA's region-based copy insertion). A plain
``jax.jit`` copies the donated codes (and block exponents) before the step: the update
fused into ``apply_updates`` reads the old codes and is not ordered before the encoding
that overwrites them in place, so the default copy insertion cannot prove the in-place
write safe; the region analysis can, and the copy (1 byte read and written per element,
a pass of its own) goes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop._compile import training_jit

from .helpers import big_enabled, donated_loop, optimizer_step, round_robin

# Bytes per element each kernel must move at least (block exponents: 1/256 or 1/128 more).
BYTES = {"optax": 20, "ours-f32": 20, "ours-bf16": 16, "ours-8bit": 14, "ours-4bit": 13,
         "ours-8bit-region": 14, "same-bytes": 14}  # fmt: skip
IMPLS = {
    "optax": lambda: optax.rmsprop(1e-3, eps_in_sqrt=False),
    "ours-f32": lambda: jax_rmsprop.rmsprop(1e-3),
    # (stochastically rounded: the hashed bits of the 8-bit codes)
    "ours-bf16": lambda: jax_rmsprop.rmsprop(1e-3, state_dtype=jnp.bfloat16),
    "ours-8bit": lambda: jax_rmsprop.rmsprop(1e-3, state_bits=8),
    "ours-4bit": lambda: jax_rmsprop.rmsprop(1e-3, state_bits=4),
}


def pytest_generate_tests(metafunc):
    if "n_quantized" in metafunc.fixturenames:
        sizes = [10**7] + ([10**8] if big_enabled(metafunc.config) else [])
        metafunc.parametrize("n_quantized", sizes, ids=[f"1e{len(str(s)) - 1}" for s in sizes])


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _same_bytes(p, code, g):
    """The 8-bit step's bytes with trivial arithmetic: the floor for this state size."""
    return p - 1e-3 * g, code + jnp.uint8(1)


@pytest.mark.benchmark(group="quantized-step")
def test_quantized_step(benchmark, n_quantized, device):
    n = n_quantized
    params = jax.random.normal(jax.random.PRNGKey(0), (n,), jnp.float32)
    grads = params * 1e-2
    kernels = {}
    for name, make in IMPLS.items():
        tx = make()
        kernels[name] = donated_loop(optimizer_step(tx), (jnp.copy(params), tx.init(params)), grads)
    tx = IMPLS["ours-8bit"]()
    step = training_jit(optimizer_step(tx, donate=False).__wrapped__, donate_argnums=(0, 1))
    kernels["ours-8bit-region"] = donated_loop(step, (jnp.copy(params), tx.init(params)), grads)
    kernels["same-bytes"] = donated_loop(
        _same_bytes, (jnp.copy(params), jnp.zeros(n, jnp.uint8)), grads
    )
    med = round_robin(benchmark, kernels, rounds={10**7: 40}.get(n, 8))

    # every kernel ran the same steps from the same start: the quantized params track float32
    # (the distance moved: the median element within 2% at 8 bits, 10% at 4 bits. An element
    # whose gradient is far below its block's largest moves less: its nu is held at the
    # smallest code, 2^28 (8 bits) or 2^15 (4 bits) below the block's top; recorded: the
    # 99th percentile of the relative difference.)
    x0 = np.asarray(params)
    ref = np.asarray(kernels["optax"].state[0]) - x0
    np.testing.assert_allclose(np.asarray(kernels["ours-f32"].state[0]) - x0, ref, rtol=1e-4)
    off = {}
    np.testing.assert_array_equal(  # (the same program but for its copies)
        np.asarray(kernels["ours-8bit-region"].state[0]), np.asarray(kernels["ours-8bit"].state[0])
    )
    for name, tol in (("ours-bf16", 0.01), ("ours-8bit", 0.02), ("ours-4bit", 0.1)):
        rel = np.abs(np.asarray(kernels[name].state[0]) - x0 - ref) / np.abs(ref)
        assert np.median(rel) <= tol
        off[name] = {q: round(float(np.quantile(rel, q)), 4) for q in (0.5, 0.99)}
    info = benchmark.extra_info
    info.update(elements=n, device=device, bytes_per_element=BYTES)
    for name in (*IMPLS, "ours-8bit-region"):
        if name != "optax":
            info[f"optax/{name}"] = round(med["optax"] / med[name], 3)
    info["ours-8bit/same-bytes"] = round(med["ours-8bit"] / med["same-bytes"], 3)
    info["optax/same-bytes"] = round(med["optax"] / med["same-bytes"], 3)
    info["moved: quantiles of |quantized - optax| / optax"] = off
