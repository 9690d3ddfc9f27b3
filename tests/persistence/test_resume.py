"""Resumable fits and sweeps: killed (SIGKILL) at a random point, run again, bit-identical.

The runs are separate processes (``tests/scripts/resumable_fit.py``); the test kills one once its
checkpoint exists, after a random delay, runs the same command again and compares every
array with an uninterrupted run's, bit for bit.
"""

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_rmsprop
from jax_rmsprop import checkpoint

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

SCRIPT = Path(__file__).parents[1] / "scripts" / "resumable_fit.py"
TIMEOUT_S = 300


def _run(kind, directory, out, sleep_s=0.0, first=False):
    """Runs the script to the end: the epochs (chunks) it trained, and with ``first`` the
    first epoch it trained."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), kind, str(directory), str(out), str(sleep_s)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    words = next(ln for ln in done.stdout.splitlines() if ln.startswith("TRAINED")).split()
    return (int(words[1]), int(words[3])) if first else int(words[1])


def _env():
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    env.pop("XLA_FLAGS", None)
    return env


def _kill_at_random(kind, directory, out, sleep_s, rng, sig=signal.SIGKILL):
    """Starts the run and sends it ``sig`` a random time after its first checkpoint appeared.

    Returns what it finished before it stopped (printed as ``INTERRUPTED n`` after a
    SIGINT or SIGTERM), or None (SIGKILL).
    """
    log = Path(directory).with_suffix(".log")
    stdout = Path(directory).with_suffix(".out")
    with open(log, "w") as err, open(stdout, "w") as std:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), kind, str(directory), str(out), str(sleep_s)],
            stdout=std,
            stderr=err,
            env=_env(),
        )
    ckpt = Path(directory) / f"{kind}.npz"
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ckpt.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 5 * sleep_s))
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL and not Path(out).exists()
        return None
    assert proc.returncode == 130, log.read_text()[-3000:]  # stopped at a boundary, saved
    line = next(ln for ln in stdout.read_text().splitlines() if ln.startswith("INTERRUPTED"))
    return int(line.split()[1])


def _same(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["SIGKILL", "SIGINT", "SIGTERM"])  # fmt: skip
@pytest.mark.parametrize("kind", ["fit", "sweep"])
def test_killed_and_run_again_ends_bit_identical(kind, sig, tmp_path):
    """Killed (SIGKILL), interrupted (SIGINT) or terminated (SIGTERM) at a random point, then
    run again: the same arrays as a never-stopped run. After SIGINT/SIGTERM the run saved
    what finished, and the rerun starts at the first unfinished epoch (chunk), not earlier."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ref = tmp_path / "ref.npz"
    # the fit's 30 epochs; the sweep's chunks of 4 runs: 24 runs, then 12, then 6
    whole = _run(kind, tmp_path / "never-killed", ref)
    assert whole == (30 if kind == "fit" else 6 + 3 + 2)
    finished = _kill_at_random(kind, tmp_path / "ckpt", tmp_path / "out.npz", 0.1, rng, sig)
    if kind == "fit":
        rest, first = _run(kind, tmp_path / "ckpt", tmp_path / "out.npz", first=True)
        if finished is not None:
            assert first == finished and rest == whole - finished, (finished, first, seed)
    else:
        rest = _run(kind, tmp_path / "ckpt", tmp_path / "out.npz")
        if finished is not None:
            assert rest == whole - finished, (finished, rest, seed)
    assert rest < whole, f"the rerun did not continue (seed {seed})"
    a = np.load(tmp_path / "out.npz")
    b = np.load(ref)
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{name} (seed {seed})")


def _regression():
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = x @ np.array([1.0, -2.0, 0.5])
    loss = lambda p, b: jnp.mean((b[0] @ p - b[1]) ** 2)  # noqa: E731
    return loss, jnp.zeros(3), (x, y)


def test_fit_continues_a_checkpoint_and_refuses_one_of_another_call(tmp_path):
    loss, p0, data = _regression()
    tx = jax_rmsprop.rmsprop(0.01)
    whole = jax_rmsprop.fit(loss, p0, tx, data, epochs=6, batch_size=8)
    part = jax_rmsprop.fit(loss, p0, tx, data, epochs=2, batch_size=8, checkpoint=tmp_path)
    np.testing.assert_array_equal(part.loss, whole.loss[:2])
    more = jax_rmsprop.fit(loss, p0, tx, data, epochs=6, batch_size=8, checkpoint=tmp_path)
    _same((more.params, more.opt_state, more.loss), (whole.params, whole.opt_state, whole.loss))
    assert more.loss.dtype == whole.loss.dtype
    # a finished run is returned as it was, without training
    again = jax_rmsprop.fit(loss, p0, tx, data, epochs=6, batch_size=8, checkpoint=tmp_path)
    _same((again.params, again.loss), (whole.params, whole.loss))
    with pytest.raises(ValueError, match=r"holds 6 epochs, more than epochs=3"):
        jax_rmsprop.fit(loss, p0, tx, data, epochs=3, batch_size=8, checkpoint=tmp_path)
    other = [
        (
            dict(tx=jax_rmsprop.rmsprop(0.02)),
            "optimizer learning_rate: 0.01 in the checkpoint, 0.02 in this call",
        ),
        (dict(batch_size=4), "batch_size: 8 in the checkpoint, 4 in this call"),
        (dict(params=p0 + 1), "initial params"),
        (dict(data=(data[0], data[1] + 1)), "data values"),
        (dict(data=(data[0][:20], data[1][:20])), "data: "),
        (dict(key=jax.random.key(0)), "key: None in the checkpoint"),
        (dict(tx=jax_rmsprop.rmsprop(0.01, momentum=0.9)), "optimizer state: "),
    ]
    args = dict(params=p0, tx=tx, data=data, batch_size=8)
    for change, message in other:
        call = args | change
        with pytest.raises(ValueError, match=r"written by a different call[\s\S]*" + message):
            jax_rmsprop.fit(
                loss,
                call["params"],
                call["tx"],
                call["data"],
                epochs=6,
                batch_size=call["batch_size"],
                key=change.get("key"),
                checkpoint=tmp_path,
            )


def test_an_interrupted_write_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    loss, p0, data = _regression()
    tx = jax_rmsprop.rmsprop(0.01, momentum=0.9)
    whole = jax_rmsprop.fit(loss, p0, tx, data, epochs=4, batch_size=8)
    jax_rmsprop.fit(loss, p0, tx, data, epochs=2, batch_size=8, checkpoint=tmp_path)
    good = (tmp_path / "fit.npz").read_bytes()

    def dies_half_way(file, **arrays):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as a kill would, in the middle of the write

    monkeypatch.setattr(checkpoint.np, "savez", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        jax_rmsprop.fit(loss, p0, tx, data, epochs=4, batch_size=8, checkpoint=tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "fit.npz").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["fit.npz"]  # no temporary file left
    resumed = jax_rmsprop.fit(loss, p0, tx, data, epochs=4, batch_size=8, checkpoint=tmp_path)
    _same(
        (resumed.params, resumed.opt_state, resumed.loss),
        (whole.params, whole.opt_state, whole.loss),
    )


def _sweep_task():
    x = np.random.default_rng(1).normal(size=(48, 3))
    y = x @ np.array([1.0, -2.0, 0.5])

    def init(key):
        return 0.1 * jax.random.normal(key, (3,), jnp.float64)

    loss = lambda p, b: jnp.mean((b[0] @ p - b[1]) ** 2)  # noqa: E731
    return jax_rmsprop.Task(loss, init, (x[:32], y[:32]), 8, (x[32:], y[32:]), "reg")


GRID = {"learning_rate": np.array([1e-3, 1e-2, 1e-1]), "decay": np.array([0.5, 0.9])}


def _interrupt_after(chunks: int, calls: list):
    """A ``progress`` callback that records each call and is Ctrl-C after ``chunks``."""

    def progress(done, total):
        calls.append(done)
        if len(calls) == chunks:
            raise KeyboardInterrupt

    return progress


def test_ctrl_c_keeps_what_finished_and_a_rerun_goes_on(tmp_path):
    task = _sweep_task()
    kw = dict(seeds=2, chunk_size=4, halving=2)
    whole = jax_rmsprop.tune(task, GRID, 4, **kw)
    calls = []
    interrupt_after_two_chunks = _interrupt_after(2, calls)
    with pytest.raises(jax_rmsprop.SweepInterrupted) as info:
        jax_rmsprop.tune(
            task, GRID, 4, **kw, checkpoint=tmp_path, progress=interrupt_after_two_chunks
        )
    partial, path = info.value.partial, info.value.checkpoint
    assert path == tmp_path / "sweep.npz" and path.exists()
    # the two chunks that finished (8 runs of the first rung), nothing else
    trained = np.isfinite(partial.val_loss[..., 0]).ravel()
    assert trained.sum() == 8 and (partial.epochs_run.ravel() > 0).sum() == 8
    first_epoch = lambda r: r.val_loss[..., 0].ravel()[trained]  # noqa: E731 (the first rung)
    np.testing.assert_array_equal(first_epoch(partial), first_epoch(whole))
    calls.clear()
    done = jax_rmsprop.tune(
        task, GRID, 4, **kw, checkpoint=tmp_path, progress=lambda d, t: calls.append(d)
    )
    assert calls[0] == 12  # the first rung went on from its third chunk
    for a, b in ((done.loss, whole.loss), (done.val_loss, whole.val_loss)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(done.epochs_run, whole.epochs_run)
    # a finished sweep is returned without training
    calls.clear()
    again = jax_rmsprop.tune(
        task, GRID, 4, **kw, checkpoint=tmp_path, progress=lambda d, t: calls.append(d)
    )
    assert calls == [] and np.array_equal(again.val_loss, whole.val_loss, equal_nan=True)


def test_an_interrupted_halving_sweep_counts_what_the_rerun_finds(tmp_path):
    """SIGINT in the second rung: the counts are the progress bar's and the checkpoint's
    (epochs of all rungs, the rung's runs, configurations done); the rerun goes on there."""
    task = _sweep_task()
    kw = dict(seeds=2, chunk_size=4, halving=2)  # rungs at 1, 2, 4 epochs: 6, 3, 2 configs
    whole = jax_rmsprop.tune(task, GRID, 4, **kw)
    calls = []

    def signal_in_rung_2(done, total):
        calls.append((done, total))
        if done == 16:  # 12 runs x 1 epoch, then the rung's first 4 runs x 1
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(jax_rmsprop.SweepInterrupted) as info:
        jax_rmsprop.tune(task, GRID, 4, **kw, checkpoint=tmp_path, progress=signal_in_rung_2)
    assert calls == [(4, 26), (8, 26), (12, 26), (16, 26)]  # 12 + 6 + 2 x 2 x 2 epochs
    counts = info.value.counts
    assert counts == {"epochs": (16, 26), "rung": (2, 3), "runs": (4, 6), "configs": (0, 6)}
    assert (~np.isnan(info.value.partial.val_loss)).sum() == 16  # the epochs trained
    calls.clear()
    done = jax_rmsprop.tune(
        task, GRID, 4, **kw, checkpoint=tmp_path, progress=lambda d, t: calls.append(d)
    )
    assert calls == [18, 26]  # on from the rung's fifth run, then the last rung
    np.testing.assert_array_equal(done.val_loss, whole.val_loss)


def test_keep_params_with_a_checkpoint_returns_every_run_after_a_resume(tmp_path):
    """The kept parameters travel in the checkpoint: an interrupted tuning run again
    returns every run's trained parameters, equal to the uninterrupted call's."""
    task = _sweep_task()
    kw = dict(seeds=2, chunk_size=4, halving=2, keep_params=True)
    whole = jax_rmsprop.tune(task, GRID, 4, **kw)
    calls = []
    interrupt_after_two_chunks = _interrupt_after(2, calls)
    with pytest.raises(jax_rmsprop.SweepInterrupted):
        jax_rmsprop.tune(
            task, GRID, 4, **kw, checkpoint=tmp_path, progress=interrupt_after_two_chunks
        )
    done = jax_rmsprop.tune(task, GRID, 4, **kw, checkpoint=tmp_path)
    assert done.params.shape == whole.params.shape == (3, 2, 2, 3)
    np.testing.assert_array_equal(done.params, whole.params)
    np.testing.assert_array_equal(done.val_loss, whole.val_loss)
    assert np.isfinite(done.params).all()
    # the same call without keep_params does not take this checkpoint (it holds them)
    with pytest.raises(jax_rmsprop.CheckpointMismatch, match="keep_params"):
        jax_rmsprop.tune(task, GRID, 4, seeds=2, chunk_size=4, halving=2, checkpoint=tmp_path)


def test_a_sweep_refuses_the_checkpoint_of_another_call(tmp_path):
    task = _sweep_task()
    jax_rmsprop.tune(task, GRID, 2, seeds=2, checkpoint=tmp_path)
    other = [
        (
            dict(space={"learning_rate": GRID["learning_rate"], "decay": np.array([0.5, 0.8])}),
            "grid: ",
        ),
        (dict(seeds=3), "seeds: 2 in the checkpoint, 3 in this call"),
        (dict(epochs=3), "epochs: 2 in the checkpoint, 3 in this call"),
        (dict(options={"centered": True}), "options: "),
        (dict(task=dataclasses.replace(task, batch_size=4)), "batch_size: 8 in the checkpoint"),
        (dict(seed=1), "initial params \\(seed 0\\)"),
    ]
    for change, message in other:
        call = dict(task=task, space=GRID, epochs=2, seeds=2) | change
        with pytest.raises(ValueError, match=r"written by a different call[\s\S]*" + message):
            jax_rmsprop.tune(
                call.pop("task"), call.pop("space"), call.pop("epochs"), checkpoint=tmp_path, **call
            )
    # a Problem's sweep in the same directory is another call too
    with pytest.raises(ValueError, match=r"written by a different call[\s\S]*problem: "):
        jax_rmsprop.sweep(jax_rmsprop.problems.sphere(), GRID, 5, checkpoint=tmp_path)


def test_a_problem_sweep_goes_on_from_its_last_chunk(tmp_path):
    problem = jax_rmsprop.problems.elongated()
    grid = {"learning_rate": np.logspace(-3, 0, 8), "decay": np.array([0.5, 0.9, 0.99])}
    kw = dict(tol=1e-8, chunk_steps=50)
    whole = jax_rmsprop.sweep(problem, grid, 400, **kw)
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if done == 150:
            raise KeyboardInterrupt

    with pytest.raises(jax_rmsprop.SweepInterrupted) as info:
        jax_rmsprop.sweep(problem, grid, 400, **kw, checkpoint=tmp_path, progress=interrupt)
    # the same exception as tune's: where it stopped, the checkpoint, the partial result
    assert info.value.steps == 150 and info.value.checkpoint == tmp_path / "sweep.npz"
    first = jax_rmsprop.sweep(problem, grid, 150, **kw)
    np.testing.assert_array_equal(info.value.partial.final_loss, first.final_loss)
    calls.clear()
    done = jax_rmsprop.sweep(
        problem, grid, 400, **kw, checkpoint=tmp_path, progress=lambda d, t: calls.append(d)
    )
    assert calls[:2] == [150, 200]  # compiled at 150 steps, went on after the third chunk
    for name in ("final_loss", "steps_to_tol", "diverged"):
        np.testing.assert_array_equal(getattr(done, name), getattr(whole, name))
    with pytest.raises(ValueError, match=r"tol: 1e-08 in the checkpoint, 1e-06 in this call"):
        jax_rmsprop.sweep(problem, grid, 400, tol=1e-6, chunk_steps=50, checkpoint=tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_fit_after_the_epoch_in_flight_saved_and_a_rerun_goes_on(signum, tmp_path):
    """Ctrl-C or SIGTERM at epoch 2: epochs 0-2 finish and are saved, FitInterrupted
    carries them; the same call resumes at epoch 3 and ends equal to an uninterrupted run."""
    loss, p0, data = _regression()
    tx = jax_rmsprop.rmsprop(0.01, momentum=0.9)
    kw = dict(epochs=6, batch_size=8, key=jax.random.key(3))
    whole = jax_rmsprop.fit(loss, p0, tx, data, **kw)
    seen = []

    def signal_at_epoch_2(epoch, f, v):
        seen.append(epoch)
        if epoch == 2:
            os.kill(os.getpid(), signum)

    with pytest.raises(jax_rmsprop.FitInterrupted) as info:
        jax_rmsprop.fit(loss, p0, tx, data, **kw, checkpoint=tmp_path, callback=signal_at_epoch_2)
    stop = info.value
    assert seen == [0, 1, 2] and stop.signal == signal.Signals(signum).name
    assert isinstance(stop, jax_rmsprop.Interrupted)  # one type catches fit's and sweeps'
    assert stop.checkpoint == tmp_path / "fit.npz" and stop.checkpoint.exists()
    np.testing.assert_array_equal(stop.partial.loss, whole.loss[:3])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    seen.clear()
    rest = jax_rmsprop.fit(
        loss, p0, tx, data, **kw, checkpoint=tmp_path, callback=lambda e, f, v: seen.append(e)
    )
    assert seen == [3, 4, 5]  # the first unfinished epoch, not earlier
    _same((rest.params, rest.opt_state, rest.loss), (whole.params, whole.opt_state, whole.loss))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_problem_sweep_after_its_chunk_and_a_rerun_goes_on(signum, tmp_path):
    """As fit and tune: the chunk in flight finishes and is saved, SweepInterrupted carries
    the configurations where they stood, and the same call ends equal to one never stopped."""
    problem = jax_rmsprop.problems.elongated()
    grid = {"learning_rate": np.logspace(-3, 0, 4), "decay": np.array([0.5, 0.9])}
    kw = dict(chunk_steps=20)
    whole = jax_rmsprop.sweep(problem, grid, 100, **kw)

    def signal_at_40(done, total):
        if done == 40:
            os.kill(os.getpid(), signum)

    with pytest.raises(jax_rmsprop.SweepInterrupted) as info:
        jax_rmsprop.sweep(problem, grid, 100, **kw, checkpoint=tmp_path, progress=signal_at_40)
    assert info.value.steps == 40 and info.value.checkpoint == tmp_path / "sweep.npz"
    assert isinstance(info.value, jax_rmsprop.Interrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    np.testing.assert_array_equal(
        info.value.partial.final_loss, jax_rmsprop.sweep(problem, grid, 40, **kw).final_loss
    )
    done = jax_rmsprop.sweep(problem, grid, 100, **kw, checkpoint=tmp_path)
    np.testing.assert_array_equal(done.final_loss, whole.final_loss)


def test_a_signal_without_a_checkpoint_still_returns_what_finished():
    loss, p0, data = _regression()

    def interrupt(epoch, f, v):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(jax_rmsprop.FitInterrupted) as info:
        jax_rmsprop.fit(loss, p0, jax_rmsprop.rmsprop(0.01), data, epochs=5, batch_size=8,
                        callback=interrupt)  # fmt: skip
    assert info.value.checkpoint is None and len(info.value.partial.loss) == 2
    assert isinstance(info.value, KeyboardInterrupt)  # uncaught, it ends a script as Ctrl-C


@pytest.mark.parametrize(
    "content, why",
    [
        (b"this is not a checkpoint", "not an .npz file of arrays"),
        (b"", "the file is empty"),
        (None, "truncated"),  # the first half of a real checkpoint
        ("foreign", "it holds no fingerprint"),  # another library's npz
        ("pickled", "it holds no fingerprint"),  # an npz of pickled objects: never unpickled
    ],
    ids=["garbage", "empty", "truncated", "foreign", "pickled"],
)
def test_an_unreadable_checkpoint_is_refused_naming_the_file(tmp_path, content, why):
    loss, p0, data = _regression()
    kw = dict(epochs=2, batch_size=8, checkpoint=tmp_path)
    path = tmp_path / "fit.npz"
    if content is None:
        jax_rmsprop.fit(loss, p0, jax_rmsprop.rmsprop(0.01), data, **kw)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "foreign":
        np.savez(path, weights=np.ones(3))
    elif content == "pickled":
        np.savez(path, meta=np.array([{"a": 1}], dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(jax_rmsprop.CheckpointCorrupt) as info:
        jax_rmsprop.fit(loss, p0, jax_rmsprop.rmsprop(0.01), data, **kw)
    msg = str(info.value)
    assert str(path) in msg and why in msg and "delete it" in msg
    assert "allow_pickle" not in msg and len(msg) < 400
    assert isinstance(info.value, ValueError)
