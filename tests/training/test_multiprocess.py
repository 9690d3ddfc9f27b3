"""Sweeps over a mesh that spans two processes (jax.distributed on 127.0.0.1, gloo).

Each process runs tests/scripts/multiprocess_sweep.py with 2 simulated host devices; both must
return the whole result, equal to the same sweep on one device. Bounded in time: a process
that hangs is killed and the test fails.
"""

import inspect
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ..helpers import reordered_sum_drift

pytestmark = pytest.mark.slow  # subprocesses: two JAX processes

SCRIPT = pathlib.Path(__file__).parents[1] / "scripts" / "multiprocess_sweep.py"
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two(script: pathlib.Path, *args: str) -> list[tuple[int, str, str]]:
    """``script PORT PROCESS_ID *args`` as processes 0 and 1 (each script gives itself 2
    host devices); ``(returncode, stdout, stderr)`` of each, killed after TIMEOUT_S."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(port), str(i), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT_S)
            done.append((p.returncode, out, err))
    finally:
        for p in procs:
            p.kill()
    return done


def test_sweep_across_two_processes_gives_every_process_the_whole_result():
    outputs = []
    for code, out, err in _run_two(SCRIPT, "2"):
        assert code == 0, err[-3000:]
        outputs.append(out)
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
        # Another program (the runs split over devices) may round differently: float32
        # drift of 6 epochs x 64 examples (helpers.reordered_sum_drift) on the residuals,
        # whose scale is the starting loss (~3, the largest here); absolute, as the
        # learning rate 0.1 runs end oscillating about a loss of ~1e-8..1e-4
        atol = 2 * reordered_sum_drift(6 * 64) * want.max()
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
        np.testing.assert_array_equal(got, np.array(results[0]["task_val_loss"]))
        assert r["diverged"] == ref["diverged"]
        # data-parallel fit over both processes: the same everywhere, equal to one device's
        fref = r.pop("fit_reference")
        for key in ("fit_loss", "fit_val_loss", "fit_w"):
            assert r[key] == results[0][key]
            # 3 epochs of 64 examples' terms summed in another order (helpers.reordered_sum_drift)
            rtol = reordered_sum_drift(3 * 64)
            np.testing.assert_allclose(r[key], fref[key[4:]], rtol=rtol, atol=1e-7)
        for a, b in zip(r["final_loss"], ref["final_loss"]):
            for x, y in zip(a, b):
                assert abs(x - y) <= 1e-6 * max(1.0, abs(y)), (x, y)


@pytest.mark.parametrize("kind", ["sweep", "fit"])
def test_when_one_process_dies_the_other_stops_with_a_clear_error(kind, tmp_path):
    """Process 1 dies mid-run; process 0 stops within seconds with a clear error, no hang.

    A sweep's next gather fails at once (gloo sees the closed connection): ``ProcessLost``,
    and the finished chunks are in the checkpoint. A data-parallel fit waits inside its
    epoch's all-reduce until JAX's coordination service misses the dead process's
    heartbeats (``heartbeat_timeout_seconds``, 10 s here, 100 s by default) and ends this
    process with its own message.
    """
    settable = inspect.signature(jax.distributed.initialize).parameters
    if kind == "fit" and "heartbeat_timeout_seconds" not in settable:
        pytest.skip("this JAX cannot shorten the heartbeat timeout (100 s, over the limit)")
    script = pathlib.Path(__file__).parents[1] / "scripts" / "multiprocess_fault.py"
    start = time.monotonic()
    (code0, out0, err0), (code1, out1, _) = _run_two(script, kind, str(tmp_path))
    elapsed = time.monotonic() - start
    assert "DYING" in out1 and code1 == 1
    assert code0 != 0 and "FINISHED" not in out0
    assert elapsed < 90, elapsed
    lost = [ln for ln in out0.splitlines() if ln.startswith("LOST ")]
    if kind == "sweep":
        assert lost and code0 == 3, err0[-3000:]
        message = lost[0]
        assert "`tune`: a collective across the 2 processes failed" in message
        assert "another process died (this is process 0)" in message
        assert "run the same command on every process to resume" in message
        assert (tmp_path / "0" / "sweep.npz").exists()
    else:
        assert lost or "This most likely indicates that another task died" in err0
