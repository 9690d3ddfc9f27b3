"""Group compile: a loop over configurations, one program for all of them.

A user's loop of ``fit`` (or ``run``) over learning rates and decays: this library's
``rmsprop`` passes its numbers to ``jit`` as traced values (``_traced.Traced``), so the
loop compiles the epoch once. The baseline is the same loop with each optimizer wrapped
in ``optax.chain``, whose functions ``jit`` can only compare by identity: one compile per
configuration, which is what every configuration cost before (~1.3 s each here). Each
round starts from empty caches (``jax.clear_caches()``): the figure is a cold loop, as a
user runs it once.
"""

import jax
import numpy as np
import optax
import pytest

import jax_rmsprop
from jax_rmsprop import _fit, _run, problems

from .helpers import big_enabled, round_robin

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

from tests.training.test_fit import _golden_script, classifier_loss  # noqa: E402

CONFIGS = [(lr, d) for lr in (1e-3, 3e-3, 1e-2, 3e-2) for d in (0.8, 0.9, 0.95, 0.99)]


@pytest.mark.benchmark(group="compile")
def test_fit_loop_over_16_configurations(benchmark, device, request):
    script = _golden_script()
    x, y, _, _ = script.digits()
    w0 = script.initial_weights()
    programs, outputs = {}, {}

    def loop(wrap, name):
        def run():
            jax.clear_caches()
            out = [
                jax_rmsprop.fit(
                    classifier_loss,
                    w0,
                    wrap(jax_rmsprop.rmsprop(lr, d)),
                    (x, y),
                    epochs=2,
                    batch_size=32,
                ).loss  # fmt: skip
                for lr, d in CONFIGS
            ]
            programs[name] = _fit._epoch._cache_size()
            outputs[name] = out
            return out

        return run

    kernels = {"traced": loop(lambda t: t, "traced"), "per-object": loop(optax.chain, "per-object")}
    med = round_robin(benchmark, kernels, rounds=2 if big_enabled(request.config) else 1)
    assert programs == {"traced": 1, "per-object": len(CONFIGS)}
    # the same numbers: traced hyperparameters are cast as the constants were
    np.testing.assert_array_equal(outputs["traced"], outputs["per-object"])
    ratio = med["per-object"] / med["traced"]
    benchmark.extra_info.update(device=device, configurations=len(CONFIGS), epochs=2)
    benchmark.extra_info["per-object/traced"] = round(ratio, 2)
    assert ratio >= 5, f"a loop of fit over 16 configurations: only {ratio:.2f}x (goal >= 5x)"


@pytest.mark.benchmark(group="compile")
def test_run_loop_over_8_learning_rates(benchmark, device):
    """``run`` over 8 learning rates on Rosenbrock, 1000 steps each: one program."""
    rates = [10.0**-k for k in np.linspace(1, 4, 8)]
    problem = problems.rosenbrock()
    programs = {}

    def loop(wrap, name):
        def run():
            jax.clear_caches()
            out = [
                jax_rmsprop.run(problem, wrap(jax_rmsprop.rmsprop(lr)), 1000).losses for lr in rates
            ]
            programs[name] = _run._run_compiled._cache_size()
            return jax.block_until_ready(out)

        return run

    kernels = {"traced": loop(lambda t: t, "traced"), "per-object": loop(optax.chain, "per-object")}
    med = round_robin(benchmark, kernels, rounds=3)
    assert programs == {"traced": 1, "per-object": len(rates)}
    np.testing.assert_array_equal(kernels["traced"](), kernels["per-object"]())
    benchmark.extra_info.update(device=device, learning_rates=len(rates), steps=1000)
    benchmark.extra_info["per-object/traced"] = round(med["per-object"] / med["traced"], 2)
