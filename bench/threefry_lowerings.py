"""Dropout's random bits on CPU: JAX's rolled threefry against other lowerings of it.

JAX lowers ``threefry2x32`` on CPU as a rolled loop (5 iterations of 4 rounds) and
elsewhere as 20 unrolled rounds. Both give the same bits; they differ in the program XLA
makes. This script compiles, in one process, the fit-nnx group's hand-written epoch
(``bench/test_fit_nnx.py``: dropout + batch-norm digits model, 44 steps) and a bare
44-step loop of dropout masks once per lowering, checks that every variant's numbers equal
the rolled one's bit for bit, and times them alternately::

    python -m bench.threefry_lowerings

Lowerings (registered for the CPU platform only while their programs lower; JAX's private
``jax._src.random.threefry2x32`` and ``mlir.register_lowering``: an experiment, not used by
the package):

- ``rolled``: JAX's CPU lowering;
- ``unrolled``: JAX's lowering for other platforms;
- ``materialised``: unrolled, then passed through a one-trip ``while`` whose trip count
  XLA cannot prove (so the hash is computed once and not fused into each consumer).

Session 11 (bench/RESULTS.md) reads the figures.

``python -m bench.threefry_lowerings --keys`` times instead the same hand-written epoch
(JAX's own lowering) with the module's dropout stream keyed by each of JAX's PRNG
implementations (``jax.random.key(1, impl=...)``: ``threefry2x32``, the default; ``rbg``;
``unsafe_rbg``, XLA's ``RngBitGenerator`` for the bits) and with dropout's rate 0, the
bound for any way of drawing the bits (session 12).
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax._src.interpreters import mlir
from jax._src.random import threefry2x32 as threefry

from .test_fit_nnx import BATCH, N, Net, _data, _hand_scan

ROUNDS, CALLS = 15, 20


def _materialised(key1, key2, x1, x2):
    a, b = threefry._threefry2x32_lowering(key1, key2, x1, x2, use_rolled_loops=False)
    one = jax.lax.population_count((key1 & np.uint32(1)) | np.uint32(1))  # 1, unproven
    zero = one - np.uint32(1)

    def body(c):
        i, a, b = c
        return i + np.uint32(1), a ^ zero, b ^ zero

    _, a, b = jax.lax.while_loop(lambda c: c[0] < one, body, (np.uint32(0), a, b))
    return a, b


RULES = {
    "rolled": None,
    "unrolled": threefry._threefry2x32_lowering_rule,
    "materialised": mlir.lower_fun(_materialised, multiple_results=True),
}


def _epoch_program():
    run = _hand_scan(optax.rmsprop(1e-3), _data())
    return run.epoch, run.state


def _masks_program():
    def masks(key):
        def step(c, i):
            m = jax.random.bernoulli(jax.random.fold_in(key, i), 0.8, (BATCH, 32))
            return c + m.sum(), None

        return jax.lax.scan(step, 0, jnp.arange(N // BATCH))[0]

    return jax.jit(masks), (jax.random.key(1),)


def _compile(build, rule):
    """``build``'s program compiled with ``rule`` as threefry's CPU lowering."""
    table = mlir._platform_specific_lowerings["cpu"]
    saved = table[threefry.threefry2x32_p]
    if rule is not None:
        mlir.register_lowering(threefry.threefry2x32_p, rule, platform="cpu")
    try:
        fn, args = build()
        return fn.lower(*args).compile(), args
    finally:
        table[threefry.threefry2x32_p] = saved


def _time(name, build, donated):
    compiled = {}
    for lowering, rule in RULES.items():
        exe, args = _compile(build, rule)
        text = exe.as_text()
        counts = {op: text.count(f" {op}(") for op in ("while", "fusion", "copy")}
        compiled[lowering] = (exe, args, exe(*jax.tree.map(jnp.copy, args)))
        print(f"{name} {lowering}: {counts}")
    first = compiled["rolled"][2]
    for lowering, (_, _, out) in compiled.items():
        same = jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), first, out))
        print(f"{name} {lowering}: bit for bit the rolled lowering's numbers: {same}")
    state = {k: list(v[1]) for k, v in compiled.items()}

    def calls(lowering, exe):
        def run():  # CALLS calls, the epoch's output its next input where donated
            args = state[lowering]
            for _ in range(CALLS):
                out = exe(*args)
                if donated:
                    args = list(out)
            jax.block_until_ready(out)
            state[lowering] = args

        return run

    ms = _alternate({k: calls(k, exe) for k, (exe, _, _) in compiled.items()})
    for lowering, t in ms.items():
        print(f"{name} {lowering}: {t:.3f} ms, {t / ms['rolled']:.3f}x rolled")


def _time_keys():
    """The epoch with dropout keyed by each PRNG implementation, and without dropout."""
    from flax import nnx

    modules = {
        impl: Net(nnx.Rngs(0, dropout=jax.random.key(1, impl=impl)))
        for impl in ("threefry2x32", "rbg", "unsafe_rbg")
    }
    modules["rate 0"] = Net(nnx.Rngs(0, dropout=1))
    modules["rate 0"].drop.rate = 0.0
    runs = {name: _hand_scan(optax.rmsprop(1e-3), _data(), m) for name, m in modules.items()}
    for run in runs.values():
        run()  # compile
    ms = _alternate({name: lambda r=run: [r() for _ in range(CALLS)] for name, run in runs.items()})
    for name, t in ms.items():
        print(f"epoch, dropout keyed {name}: {t:.3f} ms, {t / ms['threefry2x32']:.3f}x")


def _alternate(rounds_of):
    """Median ms per call of each kernel: ``rounds_of[name]()`` makes ``CALLS`` calls (and
    waits for them); the kernels take turns, ``ROUNDS`` times."""
    times = {name: [] for name in rounds_of}
    for _ in range(ROUNDS):
        for name, run in rounds_of.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / CALLS * 1e3)
    return {name: float(np.median(ts)) for name, ts in times.items()}


if __name__ == "__main__":
    if sys.argv[1:] == ["--keys"]:
        _time_keys()
    else:
        _time("masks", _masks_program, donated=False)
        _time("epoch", _epoch_program, donated=True)
