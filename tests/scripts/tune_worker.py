"""One ``tune`` worker on a shared study (run as its own process by test_workers.py).

Usage: ``python tune_worker.py URL STUDY TRIALS BATCH SAMPLER_SEED [--stall | --hold FILE]``.
Prints ``ASKED n,n,...`` when a batch starts training and ``TRAINED n,n,...`` (the trial
numbers it told) at the end. ``--stall``: the first batch never trains (the process waits
to be killed, its trials beating); ``--hold FILE``: the first batch waits until ``FILE``
exists, then trains.
"""

import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # as the test process that retrains the trials

import optuna  # noqa: E402

import jax_rmsprop  # noqa: E402
from jax_rmsprop import _search  # noqa: E402

HEARTBEAT = 2  # seconds
# stale after 15 s without one: a loaded 2-core machine (CI: three workers compiling, the
# test process retraining) can hold a live worker's heartbeat thread for seconds
GRACE = 15
EPOCHS = 3


def task():
    """The digits task, small: 8 hidden units, 256 training images."""
    return jax_rmsprop.problems.digits(hidden=8, n_train=256)


def space():
    d = optuna.distributions
    return {
        "learning_rate": d.FloatDistribution(1e-3, 1e-1, log=True),
        "decay": d.FloatDistribution(0.5, 0.99),
    }


def main(url, name, trials, batch, sampler_seed, *how):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = jax_rmsprop.tune_storage(url, heartbeat=HEARTBEAT, grace=GRACE)
    sampler = optuna.samplers.TPESampler(
        seed=int(sampler_seed), constant_liar=True, n_startup_trials=8
    )
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, load_if_exists=True,
        pruner=optuna.pruners.NopPruner(),
    )  # fmt: skip
    train = _search._train_group
    first = [True]

    def announced(plan, group, *args, **kw):
        print("ASKED", ",".join(str(t.number) for t in group), flush=True)
        if first[0] and how:
            first[0] = False
            while how[0] == "--stall" or not os.path.exists(how[1]):
                time.sleep(0.1)
        return train(plan, group, *args, **kw)

    _search._train_group = announced
    res = jax_rmsprop.tune(task(), space(), EPOCHS, study=study, trials=int(trials),
                           batch=int(batch))  # fmt: skip
    print("TRAINED", ",".join(str(n) for n in res.trial), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
