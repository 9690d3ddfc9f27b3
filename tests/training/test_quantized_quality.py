"""Quantized optimizer state trains as well as float32 state (issue 31's quality goals).

The small, fast versions of ``bench/quant_quality.py`` (whose full figures are in
``bench/RESULTS.md``): the 64-512-512-10 digits classifier for a few epochs, and the seed
articles' problems to their tolerance with the quantization applied to their tiny leaves
(``min_quantized_size=0``).
"""

import jax
import numpy as np
import pytest

import jax_rmsprop
from jax_rmsprop import problems

# (problem, learning rate, RMSProp eps) as in the seed articles (bench/test_convergence.py)
SEEDS = {
    "sphere": (problems.sphere, 0.1, 1e-6),
    "elongated": (problems.elongated, 0.1, 1e-8),
    "coupled": (problems.coupled, 0.01, 1e-8),
    "cubic": (problems.cubic, 0.01, 1e-8),
}
TOL, MAX_STEPS = 1e-3, 5000


def _steps_to_tolerance(make, lr, eps, **state):
    p = make()
    traj = jax_rmsprop.run(
        p, jax_rmsprop.rmsprop(lr, 0.9, eps, **state), MAX_STEPS, tol=TOL, path=False
    )
    assert bool(traj.converged), (p.name, state)
    return int(traj.steps)


# elongated at 4 bits: 29 steps against float32's 22 (state_bits' first version: e3m1 codes
# for nu, one mantissa bit); issue 31's goal, not met yet
MISSED = pytest.mark.xfail(strict=True, reason="4-bit: 29 steps against 22 (issue 31)")


@pytest.mark.parametrize(
    "name,bits",
    [(n, b) if (n, b) != ("elongated", 4) else pytest.param(n, b, marks=MISSED)
     for b in (8, 4) for n in SEEDS],
)  # fmt: skip
def test_seed_problems_converge_within_ten_percent_more_steps(name, bits):
    """The seeds' settings, float32 state against quantized state on every leaf (the
    problems' leaves have 1 or 2 elements, far below the default minimum size)."""
    make, lr, eps = SEEDS[name]
    reference = _steps_to_tolerance(make, lr, eps)
    quantized = _steps_to_tolerance(make, lr, eps, state_bits=bits, min_quantized_size=0)
    assert quantized <= 1.1 * reference, (reference, quantized)


def _final_val_loss(task, tx, epochs):
    params = task.init(jax.random.key(0))
    hist = jax_rmsprop.fit(
        task.loss, params, tx, task.data, epochs=epochs, batch_size=task.batch_size,
        key=jax.random.key(1), validation=task.validation,
    )  # fmt: skip
    return hist


@pytest.mark.slow
def test_quantized_state_tracks_float32_on_the_wide_digits_mlp():
    """64-512-512-10 (every weight matrix quantized; the biases, below the minimum size,
    stay float32), one seed, 3 epochs at learning rate 1e-3 and decay 0.99: the final
    validation loss near float32's. One run is chaotic: float32 with the learning rate
    moved by 1e-6 lands 1.0% away here (8-bit measured 0.998 of float32, 4-bit 1.051),
    so the bounds are loose; the medians over 30 runs are bench/quant_quality.py's."""
    pytest.importorskip("sklearn")
    task = problems.digits((512, 512))
    ref = _final_val_loss(task, jax_rmsprop.rmsprop(1e-3, 0.99), 3)
    for bits, ratio in ((8, 1.05), (4, 1.10)):
        hist = _final_val_loss(task, jax_rmsprop.rmsprop(1e-3, 0.99, state_bits=bits), 3)
        nu = hist.opt_state.nu
        assert isinstance(nu[1]["w"], jax_rmsprop.QuantizedState), "the weights are quantized"
        assert nu[1]["b"].dtype == np.float32, "512 elements: below the minimum size"
        assert hist.val_loss[-1] <= ratio * ref.val_loss[-1], (bits, hist.val_loss, ref.val_loss)
        assert hist.val_loss[-1] < 0.2 * np.log(10), "well below a uniform guess's loss"
