"""Benchmark helpers: round-robin timing, donated step loops, the tree variants compared."""

import dataclasses
import functools
import os
import threading
import time

import jax
import numpy as np
import optax

import jax_rmsprop

# The per-leaf and flat variants compared on many-leaf trees: name -> (factory, flatten?)
TREE_VARIANTS = {
    "optax-tree": (lambda: optax.rmsprop(1e-3, eps_in_sqrt=False), False),
    "ours-tree": (lambda: jax_rmsprop.rmsprop(1e-3), False),
    "ours-flat": (lambda: jax_rmsprop.rmsprop(1e-3), True),
    # optax on the same Flat: what of the speed-up is flatten's, not the optimizer's
    "optax-flat": (lambda: optax.rmsprop(1e-3, eps_in_sqrt=False), True),
}


def keras_on_jax():
    """The ``keras`` module on its JAX backend, or None (not installed, other backend)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None
    return keras if keras.backend.backend() == "jax" else None


def keras_digits_classifier(keras, **rmsprop):
    """The parity model: Dense(32, relu) - Dense(10), sparse cross-entropy from logits.

    Compiled with ``keras.optimizers.RMSprop(**rmsprop)``.
    """
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(**rmsprop),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def big_enabled(config):
    return config.getoption("--big") or jax.default_backend() != "cpu"


def optimizer_step(tx, donate=True):
    """``jit(step)`` with ``step(params, state, grads) -> (new params, new state)``."""

    @functools.partial(jax.jit, donate_argnums=(0, 1) if donate else ())
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return step


def assert_same_params(kernels, reference, others, **tol):
    """The ``donated_loop`` kernels ``others`` hold the same params as ``reference``
    (``Flat`` params compared through their tree view)."""
    ref = kernels[reference].state[0]
    for name in others:
        got = kernels[name].state[0]
        got = got.tree if isinstance(got, jax_rmsprop.Flat) else got
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **tol), got, ref)


def donated_loop(step, state, *extra):
    """A callable that runs ``state = step(*state, *extra)`` and blocks; state is donated.

    The latest state is ``run.state``.
    """

    def run():
        run.state = step(*run.state, *extra)
        jax.block_until_ready(run.state)

    run.state = state
    run()  # compile and warm up outside the timer
    run()
    return run


def per_second(benchmark, work):
    """``work`` / median seconds, or None under --benchmark-disable (no timings)."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else work / stats.stats.median


def round_robin(benchmark, kernels, rounds, paired=()):
    """Times ``kernels`` (name -> callable) one call each per round, alternating the order.

    Separate benchmarks run minutes apart on a shared machine; round-robin rounds see the
    same machine state, so their ratios are the figures to quote. The order reverses every
    round, so no kernel always follows the same one. Returns the median ms per kernel and
    records them in ``extra_info`` as ``<name>_ms``.

    ``paired``: ``(a, b)`` names of kernels timed next to each other; the median over the
    rounds of each round's ``a / b`` is recorded (and returned) as ``"a/b paired"``: for
    calls of a few ms, which a busy machine slows by 10-20% from one second to the next,
    it moves less from run to run than the ratio of the two medians.
    """
    times = {k: [] for k in kernels}

    def one_round():
        order = list(kernels)[:: -1 if len(times[next(iter(kernels))]) % 2 else 1]
        for name in order:
            t = time.perf_counter()
            kernels[name]()
            times[name].append(time.perf_counter() - t)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    benchmark.extra_info["rounds"] = len(next(iter(times.values())))
    benchmark.extra_info.update({f"{k}_ms": round(v, 4) for k, v in med.items()})
    for x, y in paired:
        name = f"{x}/{y} paired"
        med[name] = float(np.median(np.divide(times[x], times[y])))
        benchmark.extra_info[name] = round(med[name], 3)
    return med


@dataclasses.dataclass
class Budget:
    """A benchmark group's time budget (``--budget`` seconds, from its start): what it skipped.

    A kernel whose compile would overrun it is skipped, and why is recorded
    (``skipped``: name -> reason, for ``extra_info``), so that a group ends in its
    budget on any device (a GPU compiles a per-leaf optimizer's hundreds of kernels
    far slower than this CPU does).
    """

    seconds: float
    start: float = dataclasses.field(default_factory=time.perf_counter)
    skipped: dict = dataclasses.field(default_factory=dict)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def compile(self, name: str, lowered, share: float = 1.0):
        """``lowered.compile()`` if it ends within ``share`` of the time left, else ``None``.

        The compile runs in a thread (XLA releases the GIL); one that overruns is left
        to finish there, unused, and ``name`` is recorded as skipped.
        """
        limit = self.left() * share
        if limit <= 0:
            self.skipped[name] = f"the {self.seconds:.0f} s budget was spent before its compile"
            return None
        out: list = []
        thread = threading.Thread(target=lambda: out.append(lowered.compile()), daemon=True)
        t = time.perf_counter()
        thread.start()
        thread.join(limit)
        if not out:
            self.skipped[name] = (
                f"compile not done in {limit:.0f} s ({time.perf_counter() - t:.0f} s waited) "
                f"of the {self.seconds:.0f} s budget"
            )
            return None
        return out[0]

    def skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
