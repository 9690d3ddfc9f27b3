"""One process of a 2-process run in which process 1 dies (run by test_multiprocess.py).

Usage: python multiprocess_fault.py PORT PROCESS_ID sweep|fit CHECKPOINT_DIR
Process 1 ends itself (``os._exit``) in its third progress call (sweep: after its third
chunk) or third epoch (fit). Process 0 prints ``LOST <seconds> <message>`` when it gets
:class:`jax_rmsprop.ProcessLost`, then leaves without waiting for the dead peer.
"""

import inspect
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402
import numpy as np  # noqa: E402

port, pid, kind, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
# a 10 s heartbeat timeout where JAX lets us set it (not jax 0.5: its default, 100 s)
HEARTBEAT = "heartbeat_timeout_seconds"
settable = HEARTBEAT in inspect.signature(jax.distributed.initialize).parameters
jax.distributed.initialize(
    f"127.0.0.1:{port}", num_processes=2, process_id=pid, **({HEARTBEAT: 10} if settable else {})
)

from multiprocess_task import data  # noqa: E402
from multiprocess_task import init as _init  # noqa: E402
from multiprocess_task import loss as _loss  # noqa: E402

import jax_rmsprop  # noqa: E402

x, y = data()
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("c",))
calls = []


def maybe_die(*_):
    calls.append(1)
    if pid == 1 and len(calls) == 3:
        print("DYING", flush=True)
        os._exit(1)


start = time.monotonic()
try:
    if kind == "sweep":
        task = jax_rmsprop.Task(_loss, _init, (x, y), 8, (x[:20], y[:20]))
        grid = {"learning_rate": np.logspace(-3, -1, 64)}
        jax_rmsprop.tune(
            task,
            grid,
            20,
            seeds=2,
            chunk_size=8,
            mesh=mesh,
            progress=maybe_die,
            checkpoint=os.path.join(directory, str(pid)),
        )
    else:
        jax_rmsprop.fit(
            _loss,
            _init(jax.random.key(0)),
            jax_rmsprop.rmsprop(1e-2),
            (x, y),
            epochs=50,
            batch_size=8,
            mesh=mesh,
            callback=maybe_die,
        )
    print("FINISHED", flush=True)
except jax_rmsprop.ProcessLost as err:
    print(f"LOST {time.monotonic() - start:.1f} {err}".replace("\n", " "), flush=True)
    os._exit(3)  # the peer is gone: no distributed shutdown to wait for
