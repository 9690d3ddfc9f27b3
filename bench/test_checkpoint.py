"""Group checkpoint: what ``fit(checkpoint=DIR)`` costs on the digits task.

Round-robin: ``fit`` of the digits classifier (Dense(32, relu) - Dense(10), 1437 training
examples, batch 32, shuffled, validation after each epoch) with and without a checkpoint
directory, for 1 and for 100 epochs. The per-epoch overhead is the difference of the
100-epoch and 1-epoch times, with against without (what each further epoch costs); the
per-call part (fingerprint, first and last write) is reported on its own.

The writer is paced (``_resume.PACE``): a digits epoch (~2 ms) is shorter than 39 writes,
so about every 30th epoch boundary is written. For comparison, ``every-100`` writes every
boundary (no pacing): what a synchronous checkpoint per epoch would cost at least.
"""

import tempfile

import jax
import numpy as np
import pytest

import jax_rmsprop
from jax_rmsprop import _resume

from .helpers import big_enabled, round_robin

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

BIG_EPOCHS, BIG_ROUNDS = 100, 25  # --big: the figures quoted
EPOCHS_, ROUNDS = 20, 8  # the default run: the same kernels, shorter


@pytest.mark.benchmark(group="checkpoint")
def test_checkpoint_overhead_per_epoch(benchmark, device, request):
    big = big_enabled(request.config)
    EPOCHS = BIG_EPOCHS if big else EPOCHS_  # noqa: N806
    task = jax_rmsprop.problems.digits()
    tx = jax_rmsprop.rmsprop(1e-3, momentum=0.9)
    p0 = task.init(jax.random.key(0))

    def kernel(epochs, checkpoint, pace=_resume.PACE):
        def run():
            directory = tempfile.mkdtemp() if checkpoint else None  # a fresh run each time
            _resume.PACE, paced = pace, _resume.PACE
            hist = jax_rmsprop.fit(
                task.loss,
                p0,
                tx,
                task.data,
                epochs=epochs,
                batch_size=task.batch_size,
                key=jax.random.key(1),
                validation=task.validation,
                checkpoint=directory,
            )
            np.asarray(hist.loss)
            _resume.PACE = paced
            return hist

        return run

    kernels = {
        f"{'ckpt' if c else 'plain'}-{e}": kernel(e, c) for e in (1, EPOCHS) for c in (False, True)
    }
    kernels[f"every-{EPOCHS}"] = kernel(EPOCHS, True, pace=0)
    for k in kernels.values():
        k()  # compile outside the timer
    med = round_robin(benchmark, kernels, rounds=BIG_ROUNDS if big else ROUNDS)
    epoch_plain = (med[f"plain-{EPOCHS}"] - med["plain-1"]) / (EPOCHS - 1)
    epoch_ckpt = (med[f"ckpt-{EPOCHS}"] - med["ckpt-1"]) / (EPOCHS - 1)
    overhead = epoch_ckpt / epoch_plain - 1
    benchmark.extra_info.update(
        {
            "epoch ms (plain)": round(epoch_plain, 4),
            "epoch ms (checkpoint)": round(epoch_ckpt, 4),
            "per-epoch overhead": round(overhead, 4),
            "unpaced (every epoch written) overhead": round(
                (med[f"every-{EPOCHS}"] - med["ckpt-1"]) / (EPOCHS - 1) / epoch_plain - 1, 3
            ),
            "per-call ms (ckpt-1 - plain-1)": round(med["ckpt-1"] - med["plain-1"], 3),
            f"whole {EPOCHS}-epoch fit overhead": round(
                med[f"ckpt-{EPOCHS}"] / med[f"plain-{EPOCHS}"] - 1, 4
            ),
        },
        device=device,
    )
    # same numbers with and without
    a, b = kernels[f"plain-{EPOCHS}"](), kernels[f"ckpt-{EPOCHS}"]()
    np.testing.assert_array_equal(a.loss, b.loss)
    benchmark.extra_info["epochs"] = EPOCHS
    if getattr(benchmark, "stats", None) is not None and big:  # timed, 100 epochs x 25 rounds
        assert overhead <= 0.05, f"checkpointing costs {overhead:.1%} per epoch"
