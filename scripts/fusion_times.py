"""Where an optimizer step's time goes: XLA's time per fusion, from JAX's profiler.

Runs ``--steps`` donated steps (update + ``optax.apply_updates``) of ``rmsprop`` with
``--bits`` of state (``0``: float32; ``optax``: optax's own) on ``--n`` elements under
``jax.profiler.trace(..., create_perfetto_trace=True)``, sums the trace's complete
events by name and prints each fusion's (and copy's) milliseconds per step, largest
first, with the whole program's. On a CPU each XLA:CPU thunk is an event; what a GPU's
trace names differs. (The figures of ``bench/RESULTS.md``'s 2026-12-08 section.)

Usage: ``python scripts/fusion_times.py [--bits 8] [--n 1e7] [--steps 10] [--region]``
(``--region``: compiled as ``fit`` compiles, with XLA:CPU's region-based copy insertion).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import optax

import jax_rmsprop
from jax_rmsprop._compile import training_jit


def _step(tx, region: bool):
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    jit = training_jit if region else jax.jit
    return jit(step, donate_argnums=(0, 1))


def fusion_times(tx, n: int, steps: int, region: bool = False) -> dict[str, float]:
    """Milliseconds per step of each traced event whose name holds "fusion" or "copy".

    Largest first, then their sum and (where the trace has it) the whole program's."""
    p = jax.random.normal(jax.random.PRNGKey(0), (n,), jnp.float32)
    g = p * 1e-2
    step = _step(tx, region)
    state = (jnp.copy(p), tx.init(p))
    for _ in range(3):  # (compiled, and past the first step's all-zero blocks)
        state = step(*state, g)
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(steps):
                state = step(*state, g)
                jax.block_until_ready(state)
        (trace,) = pathlib.Path(d).rglob("perfetto_trace.json.gz")
        events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    total: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            total[e["name"]] += e["dur"] / steps / 1000
    keep = {k: v for k, v in total.items() if "fusion" in k or k.startswith("copy")}
    keep = dict(sorted(keep.items(), key=lambda kv: -kv[1]))
    keep["(their sum)"] = sum(keep.values())
    if "ThunkExecutor::Execute" in total:  # (the whole program, where the trace has it)
        keep["(the program)"] = total["ThunkExecutor::Execute"]
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="8", choices=["optax", "0", "8", "4"])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--region", action="store_true")
    a = parser.parse_args()
    if a.bits == "optax":
        tx = optax.rmsprop(1e-3, eps_in_sqrt=False)
    else:
        tx = jax_rmsprop.rmsprop(1e-3, state_bits=int(a.bits) or None)
    times = fusion_times(tx, int(a.n), a.steps, a.region)
    for name, ms in times.items():
        if ms >= 0.01:
            print(f"{ms:9.2f} ms  {name}")


if __name__ == "__main__":
    main()
