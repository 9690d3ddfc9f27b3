"""One process of a multi-process sweep (run by tests/training/test_multiprocess.py, twice).

Usage: python multiprocess_sweep.py PORT PROCESS_ID NUM_PROCESSES
Each process has 2 simulated host devices; the mesh spans all processes' devices. Prints
``RESULT {json}`` with the whole sweep result, as every process must see it.
"""

import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402
import numpy as np  # noqa: E402

port, pid, nproc = (int(a) for a in sys.argv[1:4])
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)

from multiprocess_task import data  # noqa: E402
from multiprocess_task import init as _init  # noqa: E402
from multiprocess_task import loss as _loss  # noqa: E402

import jax_rmsprop  # noqa: E402
from jax_rmsprop import problems  # noqa: E402

GRID = {"learning_rate": np.logspace(-3, 0, 5), "decay": np.array([0.5, 0.9, 0.99])}
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("configs",))
res = jax_rmsprop.sweep(problems.elongated(), GRID, 300, tol=1e-6, mesh=mesh, chunk_steps=100)
# the reference: the same sweep on this process's first device alone
ref = jax_rmsprop.sweep(problems.elongated(), GRID, 300, tol=1e-6, chunk_steps=100)


x, y = data()
task = jax_rmsprop.Task(_loss, _init, (x, y), 10, (x[:20], y[:20]))
tgrid = {"learning_rate": np.array([1e-3, 1e-2, 1e-1])}
tres = jax_rmsprop.tune(task, tgrid, 6, seeds=2, halving=3, mesh=mesh)
tref = jax_rmsprop.tune(task, tgrid, 6, seeds=2, halving=3)
# data-parallel fit over both processes' devices, against this process's one device
opt = jax_rmsprop.rmsprop(1e-2, momentum=0.9)
fit_kw = dict(epochs=3, batch_size=8, key=jax.random.key(3), validation=(x[:20], y[:20]))
p0 = _init(jax.random.key(0))
dp = jax_rmsprop.fit(_loss, p0, opt, (x, y), mesh=mesh, **fit_kw)
one = jax_rmsprop.fit(_loss, p0, opt, (x, y), **fit_kw)
w = np.asarray(dp.params["w"].addressable_data(0))
print(
    "RESULT "
    + json.dumps(
        {
            "process": jax.process_index(),
            "devices": len(jax.devices()),
            "local_devices": len(jax.local_devices()),
            "final_loss": res.final_loss.tolist(),
            "steps_to_tol": res.steps_to_tol.tolist(),
            "diverged": res.diverged.tolist(),
            "task_val_loss": np.nan_to_num(tres.val_loss, nan=-1.0).tolist(),
            "task_epochs_run": tres.epochs_run.tolist(),
            "fit_loss": dp.loss.tolist(),
            "fit_val_loss": dp.val_loss.tolist(),
            "fit_w": w.tolist(),
            "fit_reference": {
                "loss": one.loss.tolist(),
                "val_loss": one.val_loss.tolist(),
                "w": np.asarray(one.params["w"]).tolist(),
            },
            "task_reference": {
                "val_loss": np.nan_to_num(tref.val_loss, nan=-1.0).tolist(),
                "epochs_run": tref.epochs_run.tolist(),
            },
            "reference": {
                "final_loss": ref.final_loss.tolist(),
                "steps_to_tol": ref.steps_to_tol.tolist(),
                "diverged": ref.diverged.tolist(),
            },
        }
    ),
    flush=True,
)
jax.distributed.shutdown()
