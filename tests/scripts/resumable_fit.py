"""A fit (or a training sweep) with a checkpoint, run as its own process by test_resume.py.

Usage: python resumable_fit.py fit|sweep CHECKPOINT_DIR OUT.npz [SLEEP_S]

Writes the result to OUT.npz; prints ``TRAINED <n>``: the epochs (fit) or chunks (sweep)
this process trained, so the test sees that a rerun continued.
"""

import sys
import time

import jax
import numpy as np
import optax

import jax_rmsprop
from jax_rmsprop import checkpoint

EPOCHS = 30


def task():
    return jax_rmsprop.problems.digits(hidden=16, n_train=512)


def run_fit(directory, out, sleep_s):
    t = task()
    first = []

    def callback(epoch, loss, val_loss):
        first.append(epoch)
        time.sleep(sleep_s)

    schedule = optax.cosine_decay_schedule(3e-3, EPOCHS * 16)
    tx = jax_rmsprop.rmsprop(schedule, momentum=0.9, centered=True)
    try:
        hist = jax_rmsprop.fit(
            t.loss,
            t.init(jax.random.key(0)),
            tx,
            t.data,
            epochs=EPOCHS,
            batch_size=t.batch_size,
            key=jax.random.key(1),
            validation=t.validation,
            callback=callback,
            checkpoint=directory,
        )
    except jax_rmsprop.FitInterrupted as stop:  # SIGINT/SIGTERM: the finished epochs saved
        print("INTERRUPTED", len(stop.partial.loss), flush=True)  # epochs finished in all
        sys.exit(130)
    print("TRAINED", len(first), "FIRST", first[0] if first else EPOCHS, flush=True)
    checkpoint.save(
        out,
        {
            "params": hist.params,
            "opt_state": hist.opt_state,
            "loss": hist.loss,
            "val_loss": hist.val_loss,
        },
    )


def run_sweep(directory, out, sleep_s):
    chunks = []

    def progress(done, total):
        chunks.append(done)
        time.sleep(sleep_s)

    grid = {"learning_rate": np.logspace(-3, -1, 4), "decay": np.array([0.5, 0.9, 0.99])}
    try:
        res = jax_rmsprop.tune(
            task(), grid, 6, seeds=2, chunk_size=4, halving=2, progress=progress,
            checkpoint=directory,
        )  # fmt: skip
    except jax_rmsprop.SweepInterrupted:  # SIGINT/SIGTERM: the finished chunks saved
        print("INTERRUPTED", len(chunks), flush=True)
        sys.exit(130)
    print("TRAINED", len(chunks), flush=True)
    checkpoint.save(out, {"loss": res.loss, "val_loss": res.val_loss, "ran": res.epochs_run})


if __name__ == "__main__":
    kind, directory, out = sys.argv[1:4]
    sleep_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    {"fit": run_fit, "sweep": run_sweep}[kind](directory, out, sleep_s)
