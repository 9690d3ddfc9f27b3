"""Sweeps over a mesh that spans two processes (jax.distributed on 127.0.0.1, gloo).

Each process runs tests/multiprocess_sweep.py with 2 simulated host devices; both must
return the whole result, equal to the same sweep on one device. Bounded in time: a process
that hangs is killed and the test fails.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

SCRIPT = pathlib.Path(__file__).with_name("multiprocess_sweep.py")
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_across_two_processes_gives_every_process_the_whole_result():
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env.pop("JAX_ENABLE_X64", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), str(port), str(i), "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT_S)
            assert p.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for p in procs:
            p.kill()
    results = [
        json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
        for out in outputs
    ]
    assert sorted(r["process"] for r in results) == [0, 1]
    for r in results:
        assert r["devices"] == 4 and r["local_devices"] == 2
        ref = r.pop("reference")
        for key in ("final_loss", "steps_to_tol", "diverged"):
            assert r[key] == results[0][key]  # every process has the whole result
            assert len(r[key]) == 5 and len(r[key][0]) == 3
        assert r["steps_to_tol"] == ref["steps_to_tol"]
        # a training sweep (successive halving, 2 seeds) over the same mesh
        tref = r.pop("task_reference")
        assert r["task_epochs_run"] == tref["epochs_run"] == results[0]["task_epochs_run"]
        got, want = np.array(r["task_val_loss"]), np.array(tref["val_loss"])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)  # float32, loss ~3 at start
        np.testing.assert_array_equal(got, np.array(results[0]["task_val_loss"]))
        assert r["diverged"] == ref["diverged"]
        # data-parallel fit over both processes: the same everywhere, equal to one device's
        fref = r.pop("fit_reference")
        for key in ("fit_loss", "fit_val_loss", "fit_w"):
            assert r[key] == results[0][key]
            np.testing.assert_allclose(r[key], fref[key[4:]], rtol=1e-5, atol=1e-7)
        for a, b in zip(r["final_loss"], ref["final_loss"]):
            for x, y in zip(a, b):
                assert abs(x - y) <= 1e-6 * max(1.0, abs(y)), (x, y)
