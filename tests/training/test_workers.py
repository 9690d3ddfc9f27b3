"""Several ``tune`` processes on one Optuna study: PostgreSQL (a real server) and SQLite.

The server is Debian's PostgreSQL, started here for the session on 127.0.0.1 (a free
port, a temporary data folder, as the ``postgres`` user where the tests run as root).
Without its binaries the PostgreSQL tests skip, except in CI (``CI=true``), where they
fail: ``.ci/run`` installs the server.
"""

import contextlib
import functools
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

import jax_rmsprop  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import tune_worker  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:Heartbeat of storage is supposed to be used",
    "ignore::optuna.exceptions.ExperimentalWarning",  # (Optuna 4: constant_liar)
)
STATE = optuna.trial.TrialState


def _bindir() -> str | None:
    """The folder of PostgreSQL's ``initdb`` and ``pg_ctl``, newest version first."""
    found = shutil.which("pg_ctl")
    candidates = [os.path.dirname(found)] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in candidates:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server():
    """A PostgreSQL server on 127.0.0.1: its SQLAlchemy URL (trust auth), and a function
    ``switch(on)`` that stops (``on=False``: at once, as a crash) or restarts it."""
    pytest.importorskip("psycopg2")  # (the test and tune extras install it)
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: PostgreSQL's initdb/pg_ctl are missing (.ci/run installs them)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="jax-rmsprop-pg-")
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)  # noqa: E731
    run(f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    ctl = [*as_user, f"{bindir}/pg_ctl", "-D", data, "-w"]
    start, stop = (
        [*ctl, "-o", opts, "-l", f"{root}/log", "start"],
        [*ctl, "-m", "immediate", "stop"],
    )
    switch = lambda on: subprocess.run(start if on else stop, check=True, capture_output=True)  # noqa: E731
    switch(True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", switch
    finally:
        subprocess.run(stop, capture_output=True)  # (where it still runs)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session: its URL."""
    with _server() as (url, _):
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def storage(request, tmp_path):
    """(URL, workers): a PostgreSQL server for 3 workers, an SQLite file for 2."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tune.db'}", 2
    return request.getfixturevalue("postgres"), 3


_SPAWNED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_worker_left():
    """A failed test's workers killed, their pipes closed."""
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()


def _worker(url, name, trials, seed, *how) -> subprocess.Popen:
    cmd = [sys.executable, str(SCRIPTS / "tune_worker.py"), url, name, str(trials), "8"]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([*cmd, str(seed), *how], env=env, stdout=subprocess.PIPE, text=True)
    _SPAWNED.append(proc)
    return proc


def _trained(proc: subprocess.Popen) -> list[int]:
    """The trial numbers a worker told, once it ended (exit 0)."""
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    line = [x for x in out.splitlines() if x.startswith("TRAINED")][-1].split()
    return [int(n) for n in line[1].split(",")] if len(line) > 1 else []


def _check_values_alone(study, numbers) -> None:
    """Each trial retrained alone (a batch of one, a new study): the value it was told."""
    for n in numbers:
        t = study.trials[n]
        alone = optuna.create_study(pruner=optuna.pruners.NopPruner())  # (the workers')
        alone.enqueue_trial(t.params)
        jax_rmsprop.tune(tune_worker.task(), tune_worker.space(), tune_worker.EPOCHS,
                         study=alone, trials=1, batch=1)  # fmt: skip
        np.testing.assert_allclose(alone.trials[0].value, t.value, rtol=1e-6)


@pytest.mark.slow
def test_workers_on_one_study_finish_its_trials_each_trained_once(storage):
    url, workers = storage
    trials = 48 if workers == 3 else 32
    procs = [_worker(url, "w", trials, seed) for seed in range(workers)]
    told = [_trained(p) for p in procs]
    study = optuna.load_study(study_name="w", storage=url)
    states = [t.state for t in study.trials]
    assert trials <= states.count(STATE.COMPLETE) <= trials + 8 * (workers - 1)
    assert set(states) == {STATE.COMPLETE}  # nothing failed, nothing left running
    numbers = sorted(n for ns in told for n in ns)
    assert numbers == list(range(len(states)))  # each told once, by one worker
    assert sum(map(bool, told)) >= 2  # shared, not one worker's
    # a value depends on the parameters (and seed) only: not the worker, not the batch
    _check_values_alone(study, [ns[-1] for ns in told if ns])  # (a starved worker: none)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing_its_trials_are_retried(storage, tmp_path):
    """Worker 0 asks a batch and is killed while it trains; the others hold their first
    batch (their trials beating, past the grace period: not stale) until it is stale,
    then go on: its trials are failed, retried with the same values, told once."""
    url, workers = storage
    trials = 48 if workers == 3 else 32
    go = tmp_path / "go"
    killed = _worker(url, "k", trials, 0, "--stall")
    asked = [int(n) for n in killed.stdout.readline().split()[1].split(",")]
    others = [_worker(url, "k", trials, s, "--hold", str(go)) for s in range(1, workers)]
    for p in others:  # each has asked and holds its first batch
        assert p.stdout.readline().startswith("ASKED")
    killed.send_signal(signal.SIGKILL)
    killed.wait(60)
    time.sleep(tune_worker.GRACE + 2.5)  # the grace period, and SQLite's rounding
    go.touch()
    told = [_trained(p) for p in others]
    study = optuna.load_study(study_name="k", storage=url)
    by_number = study.trials
    assert all(by_number[n].state == STATE.FAIL for n in asked)
    complete = [t for t in by_number if t.state == STATE.COMPLETE]
    assert trials <= len(complete) <= trials + 8 * (workers - 2)
    assert {t.state for t in by_number} == {STATE.COMPLETE, STATE.FAIL}
    retried = [t for t in complete if "retry_history" in t.system_attrs]
    retries = {t.system_attrs["retry_history"][0]: t for t in retried}
    assert sorted(retries) == asked  # each killed trial retried once, its values kept
    for n, t in retries.items():
        assert t.params == by_number[n].params
    numbers = sorted(n for ns in told for n in ns)
    assert numbers == [t.number for t in complete]  # nothing finished trained again
    _check_values_alone(study, [retries[asked[0]].number])


def _tune_cli(url, *more, name="s", trials=2):
    from jax_rmsprop import cli

    argv = ["tune", "digits", "--trials", str(trials), "--batch", "2", "--epochs", "1"]
    return cli.main([*argv, "--storage", url, "--study-name", name, "--no-progress", *more])


@pytest.mark.parametrize(
    "url, says",
    [
        ("nosuchdb://x/y", "--storage nosuchdb://x/y: cannot open it: Can't load plugin"),
        ("postgresql+psycopg2://u:secret@127.0.0.1:1/db",
         "--storage postgresql+psycopg2://u:***@127.0.0.1:1/db: cannot open it:"),
    ],
)  # fmt: skip
def test_a_storage_that_cannot_be_opened_is_a_one_line_error_naming_storage(url, says, capsys):
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg2")
    assert _tune_cli(url, "--out", "unused") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jax-rmsprop: error: {says}") and err.count("\n") == 1
    assert "secret" not in err


def test_a_study_of_the_other_direction_or_another_space_is_refused(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 't.db'}"
    optuna.create_study(storage=url, study_name="max", direction="maximize")
    assert _tune_cli(url, "--out", str(tmp_path), name="max") == 2
    err = capsys.readouterr().err
    assert err == (
        f"jax-rmsprop: error: --study-name max (in --storage {url}) has directions "
        "['MAXIMIZE']; the monitored value should be minimized.\n"
    )
    assert _tune_cli(url, "--out", str(tmp_path), "--decay", "0.9") == 0
    capsys.readouterr()
    assert _tune_cli(url, "--out", str(tmp_path), "--decay", "0.5:0.9", trials=4) == 2
    err = capsys.readouterr().err
    assert err.startswith("jax-rmsprop: error: --decay: the study's trials were asked with ")
    assert err.count("\n") == 1 and "another study name" in err
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2  # nothing asked


@pytest.mark.slow
def test_a_server_gone_mid_run_is_an_error_and_its_trials_are_retried_after(tmp_path):
    """The server stops while a worker trains (exit 2, one line naming the storage); the
    batch is left ``RUNNING``; once the server is back a worker fails and retries it."""
    with _server() as (url, switch):
        cmd = [sys.executable, "-c", "import sys; from jax_rmsprop import cli; "
               "sys.exit(cli.main(sys.argv[1:]))", "tune", "digits", "--epochs", "3",
               "--trials", "16", "--batch", "8", "--storage", url, "--study-name", "g",
               "--heartbeat", "2", "--no-progress", "--out", str(tmp_path)]  # fmt: skip
        env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # its first batch asked, training
            time.sleep(0.2)
            try:
                running = optuna.load_study(study_name="g", storage=url).trials
            except Exception:  # (not made yet)
                continue
            if len(running) >= 8:
                break
        time.sleep(1.0)  # (each asked trial's first heartbeat, recorded as it is asked)
        switch(False)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2
        assert (
            err.startswith(
                f"jax-rmsprop: error: --study-name g (in --storage {url}): its storage stopped "
                "answering: "
            )
            and err.count("\n") == 1
        )
        switch(True)
        time.sleep(7)  # the batch's grace period (3 heartbeats)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        study = optuna.load_study(study_name="g", storage=url)
        states = [t.state.name for t in study.trials]
        assert states[:8] == ["FAIL"] * 8 and states.count("COMPLETE") == 16
        retried = [t for t in study.trials if "retry_history" in t.system_attrs]
        assert sorted(t.system_attrs["retry_history"][0] for t in retried) == list(range(8))


def test_workers_racing_to_make_the_tables_open_the_storage_and_a_dead_server_fails_at_once(
    monkeypatch, tmp_path
):
    """Two SQLite workers starting together: one's CREATE TABLE clashes with the other's
    ("table studies already exists", an OperationalError, as seen in CI-like runs); the
    storage is opened on a second try. Any other operational error is not retried."""
    import sqlalchemy.exc

    from jax_rmsprop import _storage

    real, calls = optuna.storages.RDBStorage, []

    def flaky(message):
        @functools.wraps(real)  # (its signature: tune_storage reads the keyword names)
        def make(url, **kw):
            calls.append(url)
            if len(calls) == 1:
                raise sqlalchemy.exc.OperationalError(
                    "CREATE TABLE studies", {}, Exception(message)
                )
            return real(url, **kw)

        return make

    monkeypatch.setattr(_storage.time, "sleep", lambda s: None)
    url = f"sqlite:///{tmp_path / 'race.db'}"
    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky("table studies already exists"))
    assert isinstance(jax_rmsprop.tune_storage(url), real) and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky("could not connect to server"))
    with pytest.raises(ValueError, match="could not connect to server"):
        jax_rmsprop.tune_storage(url)
    assert len(calls) == 1
