"""The CLI, in-process: main(argv) -> exit code."""

import csv
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jax_rmsprop import __version__, cli

from ..helpers import optax_rules
from ..runs.test_seeds import SEED_000_TABLE


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0 and "demo" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_prints_the_seed_table_and_writes_the_pictures(tmp_path, capsys):
    pytest.importorskip("flax", reason="the demo's digits model is Flax NNX (the plot extra)")
    with optax_rules():  # the demo compares with optax's sgd, adam and adagrad
        assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert SEED_000_TABLE in out
    assert "(minimum (2, -1))" in out
    assert "sweep of 24 configurations x 3 seeds x 10 epochs: best lr" in out
    for name in (
        "elongated_paths.png",
        "elongated_losses.png",
        "coupled_path.png",
        "mlp_losses.png",
        "digits_losses.png",
        "digits_sweep.png",
    ):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.size[0] >= 600
            assert len(np.unique(np.asarray(im.convert("L")))) > 20, f"{name} is not blank"
        assert str(tmp_path / name) in out
    with Image.open(tmp_path / "cubic_rmsprop.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 200
        assert gif.info["duration"] == 20  # 50 fps, as in seed 003
        gif.seek(0)
        first = np.asarray(gif.convert("L"))
        gif.seek(199)
        last = np.asarray(gif.convert("L"))
        assert (first != last).any(), "the point moves"
    # the docs gallery holds each of them, as drawn now (scripts/make_gallery.py copies them)
    gallery = Path(__file__).parents[2] / "docs" / "gallery"
    page = (gallery.parent / "gallery.md").read_text()
    for drawn in tmp_path.glob("*.*"):
        assert f"gallery/{drawn.name}" in page
        with Image.open(drawn) as im, Image.open(gallery / drawn.name) as kept:
            assert kept.size == im.size, drawn.name


def test_sweep_command(tmp_path, capsys):
    code = cli.main(
        [
            "sweep",
            "sphere",
            "--learning-rate",
            "1e-3:1:8:log",
            "--decay",
            "0.5:0.99:6",
            "--eps",
            "1e-6",
            "--steps",
            "200",
            "--tol",
            "1e-6",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "sphere: 48 configurations x 200 steps" in out
    assert out.splitlines()[1].split()[:3] == ["learning_rate", "decay", "final_loss"]
    with open(tmp_path / "sweep_sphere.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48
    lrs = sorted({float(r["learning_rate"]) for r in rows})
    np.testing.assert_allclose(lrs, np.logspace(-3, 0, 8), rtol=1e-15)
    with Image.open(tmp_path / "sweep_sphere.png") as im:
        assert im.format == "PNG" and im.size == (700, 600)  # one panel: the final loss


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sweep", "nope", "--decay", "0.5:0.9:4"], "unknown problem 'nope'"),
        (["sweep", "sphere", "--decay", "0.5:0.9"], "malformed range '0.5:0.9'"),
        (["sweep", "sphere", "--decay", "a:b:3"], "malformed range"),
        (["sweep", "sphere", "--learning-rate", "0:1:4:log"], "positive ends"),
        (["sweep", "sphere", "--learning-rate", "0.1"], "nothing to sweep"),
        (["sweep", "sphere", "--decay", "0.5:0.9:4", "--steps", "x"], "invalid int value"),
        (["sweep", "sphere", "--decay", "0.5:1.5:4"], "--decay: decay must be finite in [0, 1]"),
        (["sweep", "digits", "--decay", "0.5:1.5:2"], "--decay: decay must be finite in [0, 1]"),
        (["tune", "digits", "--decay", "0.5:1.5"], "--decay: decay must be finite in [0, 1]"),
        (["sweep", "sphere", "--learning-rate=-1:1:3"], "--learning-rate: learning_rate"),
        (
            ["sweep", "elongated", "--learning-rate", "-1:1:4", "--decay", "-.5:0.9:2"],
            "--learning-rate: learning_rate must be finite >= 0; its values hold -1.0.",
        ),
        (
            ["sweep", "elongated", "--decay", "1.5"],
            "--decay must be in [0.0, 1.0] and not NaN; got 1.5.",
        ),
        (
            ["sweep", "elongated", "--decay", "1", "--learning-rate", "0.1:1:2"],
            "--decay 1.0 with initial_scale=0 keeps the mean square at 0 forever",
        ),
        (["tune", "digits", "--decay", "1.5"], "--decay must be in [0.0, 1.0]"),
        (["pbt", "digits", "--eps", "-1"], "--eps must be in [0.0, inf] and not NaN; got -1.0."),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jax-rmsprop: error:") and message in err


@pytest.mark.slow
def test_sweep_command_on_the_digits_task(tmp_path, capsys):
    code = cli.main(
        [
            "sweep",
            "digits",
            "--learning-rate",
            "1e-3:1e-1:3:log",
            "--decay",
            "0.5:0.9:2",
            "--steps",
            "1",
            "--seeds",
            "2",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "digits: 6 configurations x 2 seeds x 1 epochs" in out
    assert out.splitlines()[1].split() == ["learning_rate", "decay", "score", "seed_std"]
    with open(tmp_path / "sweep_digits.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["seed"] for r in rows} == {"0", "1"}
    # the table's best row is the lowest mean over seeds of the CSV's final validation losses
    means = {}
    for r in rows:
        means.setdefault((r["learning_rate"], r["decay"]), []).append(float(r["final_val_loss"]))
    best = min(means, key=lambda k: np.mean(means[k]))
    first = out.splitlines()[3].split()
    assert float(first[0]) == pytest.approx(float(best[0]), rel=1e-3)
    assert float(first[2]) == pytest.approx(np.mean(means[best]), rel=1e-3)
    with Image.open(tmp_path / "sweep_digits.png") as im:
        assert im.format == "PNG" and im.size == (1400, 600)  # mean, and spread over seeds


def test_sweep_command_refuses_bad_seeds(capsys):
    assert cli.main(["sweep", "digits", "--decay", "0.5:0.9:2", "--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_prints_the_partial_table_and_a_rerun_resumes(tmp_path):
    """SIGINT in the middle of a digits sweep: the finished configurations' table, the
    checkpoint's path, exit 130; the same command again ends like an uninterrupted one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "jax_rmsprop.cli", "sweep", "digits", "--no-progress"]
    argv += ["--learning-rate", "1e-3:1e-1:4:log", "--decay", "0.5:0.9:2", "--steps", "2"]
    argv += ["--seeds", "2", "--chunk-size", "2"]
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = tmp_path / "run"
    proc = subprocess.Popen([*argv, "--out", str(out)], stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint" / "sweep.npz").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout
    lines = stdout.splitlines()
    # the counts, as the rerun finds them: runs of 2 epochs, configurations of 2 seeds
    m = re.match(
        r"interrupted: (\d+) of 32 epochs trained \(all runs\); (\d+) of 16 runs "
        r"trained; (\d+) of 8 configurations trained to the last epoch",
        lines[0],
    )
    assert m, lines[0]
    epochs, runs, configs = map(int, m.groups())
    assert epochs == 2 * runs and configs == runs // 2 >= 1
    assert lines[1].split()[:2] == ["learning_rate", "decay"]  # the table of the finished
    rows = [line for line in lines[3:] if line.strip() and line.split()[0][0].isdigit()]
    assert 1 <= len(rows) <= configs  # the finished configurations (the diverged unranked)
    assert f"checkpoint: {out / 'checkpoint' / 'sweep.npz'}" in stdout
    assert "run the same command again to resume from there." in stdout
    again = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, env=env)
    fresh = subprocess.run(
        [*argv, "--out", str(tmp_path / "fresh")], capture_output=True, text=True, env=env
    )
    assert again.returncode == fresh.returncode == 0, again.stderr[-2000:]
    assert again.stdout == fresh.stdout.replace(str(tmp_path / "fresh"), str(out))
    assert (out / "sweep_digits.csv").read_text() == (
        tmp_path / "fresh" / "sweep_digits.csv"
    ).read_text()


@pytest.mark.slow
def test_ctrl_c_in_tune_without_storage_prints_and_writes_the_finished_trials(
    tmp_path, monkeypatch, capsys
):
    """SIGINT during the first batch (at its first epoch's report): the batch finishes,
    its trials are printed and written (CSV, picture), and the way to go on is named."""
    import os
    import signal

    pytest.importorskip("optuna")
    bar = cli._Progress.__call__

    def signal_once(self, done, total, postfix=""):
        if done == 2:  # the first epoch of the first batch (2 trials) has run
            os.kill(os.getpid(), signal.SIGINT)
        bar(self, done, total, postfix)

    monkeypatch.setattr(cli._Progress, "__call__", signal_once)
    argv = ["tune", "digits", "--trials", "6", "--batch", "2", "--epochs", "2"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "interrupted: 2 trials finished this run"
    assert lines[1].startswith("digits: 2 trials (2 this run, 0 pruned)")
    assert lines[2].split() == ["learning_rate", "decay", "score", "seed_std"]
    assert "score: the value told to Optuna" in out
    with open(tmp_path / "tune_digits.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 2
    best = min(float(r["value"]) for r in rows)
    assert float(lines[4].split()[2]) == pytest.approx(best, rel=1e-3)
    with Image.open(tmp_path / "tune_digits.png") as im:
        assert im.format == "PNG"
    assert f"--storage sqlite:///{tmp_path / 'tune.db'}" in out


@pytest.mark.slow
def test_a_real_ctrl_c_in_tune_leaves_the_finished_trials(tmp_path):
    """The command as a user runs it, interrupted by a real SIGINT once its first batch
    has trained (its bar at 16 epochs: 8 trials x 2): exit 130, the finished trials
    printed, written to the CSV (each ``COMPLETE``) and drawn."""
    import signal
    import subprocess
    import threading
    import time

    pytest.importorskip("optuna")
    argv = [sys.executable, "-m", "jax_rmsprop.cli", "tune", "digits", "--trials", "256"]
    argv += ["--batch", "8", "--epochs", "2", "--out", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    err = bytearray()

    def read():
        for chunk in iter(lambda: proc.stderr.read1(256), b""):
            err.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not re.search(rb"\b(1[6-9]|[2-9]\d|\d{3})/512\b", bytes(err)):
            assert proc.poll() is None and time.monotonic() < deadline, bytes(err)[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout = proc.stdout.read()  # (stderr is the reader's alone until it ends)
        proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
        proc.stdout.close()  # (an unclosed pipe is a ResourceWarning, an error here)
        proc.stderr.close()
    assert proc.returncode == 130, bytes(err)[-2000:]
    lines = stdout.decode().splitlines()
    m = re.match(r"interrupted: (\d+) trials finished this run$", lines[0])
    assert m, lines[:3]
    done = int(m.group(1))
    assert 8 <= done < 256 and done % 8 == 0  # whole batches: the one in flight finished
    assert lines[1].startswith(f"digits: {done} trials ({done} this run, 0 pruned)")
    with open(tmp_path / "tune_digits.csv") as f:
        assert [r["state"] for r in csv.DictReader(f)] == ["COMPLETE"] * done
    with Image.open(tmp_path / "tune_digits.png") as im:
        assert im.format == "PNG"


def test_a_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "sweep.npz").write_bytes(b"garbage")
    argv = ["sweep", "digits", "--learning-rate", "1e-3:1e-2:2:log", "--decay", "0.9:0.99:2"]
    code = cli.main([*argv, "--steps", "1", "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and len(err) < 400
    assert "sweep.npz is not a readable jax-rmsprop checkpoint" in err and "--restart" in err


@pytest.mark.slow
def test_random_search_with_halving_from_the_command_line(tmp_path, capsys):
    argv = ["sweep", "digits", "--samples", "12", "--halving", "3", "--seeds", "2"]
    code = cli.main([*argv, "--steps", "3", "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "digits: 12 configurations x 2 seeds x 3 epochs" in out
    assert f"scatter: {tmp_path / 'sweep_digits.png'}" in out
    with open(tmp_path / "sweep_digits.csv") as f:
        rows = list(csv.DictReader(f))
    lr = sorted({float(r["learning_rate"]) for r in rows})
    assert len(lr) == 12 and 1e-4 <= lr[0] and lr[-1] <= 1e-1  # the default ranges
    # halving's stopped runs are "halted" with the losses of the last epoch they trained
    # (not NaN, which would read as divergence); the survivors trained all 3 epochs
    by = {}
    for r in rows:
        by.setdefault(r["status"], []).append(r)
    assert by["halted"] and by["finished"] and set(by) <= {"halted", "finished", "diverged"}
    for r in by["halted"]:
        assert int(r["epochs_run"]) < 3 and np.isfinite(float(r["final_val_loss"]))
    assert all(int(r["epochs_run"]) == 3 for r in by["finished"])


def test_task_options_on_a_closed_form_problem_are_refused_in_flag_terms(capsys):
    code = cli.main(["sweep", "sphere", "--decay", "0.5:0.9:2", "--halving", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "--halving apply to training tasks (digits), not sphere" in err


def test_sweep_help_shows_defaults_ranges_and_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    out = capsys.readouterr().out
    assert "(default: 1000)" in out and "in [0, 1]" in out and "examples:" in out
    assert "--samples 64" in out


@pytest.mark.slow
def test_tune_command_goes_on_with_its_study_and_writes_the_trials(tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    db = f"sqlite:///{tmp_path / 't.db'}"
    argv = ["tune", "digits", "--trials", "6", "--batch", "3", "--epochs", "2", "--no-progress"]
    argv += ["--storage", db, "--out", str(tmp_path), "--learning-rate", "1e-3:1e-1:log"]
    argv += ["--checkpoint", str(tmp_path / "ck")]
    assert cli.main([*argv, "--decay", "0.9"]) == 0
    assert (tmp_path / "ck" / "study.npz").exists()  # the batch in training, kept
    out = capsys.readouterr().out
    assert "digits: 6 trials (6 this run, 0 pruned) x 1 seeds x 2 epochs, tpe sampler" in out
    study = optuna.load_study(study_name="jax-rmsprop-digits", storage=db)
    lrs = [t.params["learning_rate"] for t in study.trials]
    assert len(lrs) == 6 and all(1e-3 <= lr <= 1e-1 for lr in lrs)
    assert f"best value {study.best_value:.4g}" in out
    # the same command with more trials goes on from the study
    argv[argv.index("--trials") + 1] = "8"
    assert cli.main([*argv, "--decay", "0.9"]) == 0
    assert "digits: 8 trials (2 this run" in capsys.readouterr().out
    with open(tmp_path / "tune_digits.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 8


@pytest.mark.parametrize(
    "argv, words",
    [
        (["tune", "sphere"], "sphere is a closed-form problem: use `jax-rmsprop sweep`"),
        (["tune", "digits", "--decay", "0.9:0.5"], "--decay 0.9:0.5: needs LOW < HIGH"),
        (["tune", "digits", "--learning-rate", "0:1:log"], "LOW > 0 (log)"),
        (["tune", "digits", "--decay", "a:b"], "malformed range 'a:b' for --decay"),
        (["tune", "digits", "--trials", "0"], "--trials must be >= 1"),
        (["tune", "digits", "--sampler", "grid"], "invalid choice: 'grid'"),
    ],
)
def test_tune_command_refuses_bad_input_in_flag_terms(argv, words, capsys):
    assert cli.main(argv) == 2
    assert words in capsys.readouterr().err


def test_ctrl_c_in_a_problem_sweep_prints_where_it_stood(monkeypatch, capsys):
    """The CLI's progress bar raising KeyboardInterrupt (as Ctrl-C in it would): exit 130
    with the configurations after the finished steps."""
    calls = []

    def interrupting(self, done, total):
        calls.append(done)
        if done >= 200:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._Progress, "__call__", interrupting)
    argv = ["sweep", "elongated", "--decay", "0.5:0.9:2", "--learning-rate", "0.01:0.1:2"]
    code = cli.main([*argv, "--steps", "1000"])
    out = capsys.readouterr().out
    assert code == 130 and "interrupted after 200 steps; the best configurations then:" in out
    assert "final_loss" in out and calls == [0, 50, 100, 150, 200]  # (0: compiled)


@pytest.mark.parametrize("command", ["demo", "sweep", "tune"])
def test_an_unwritable_out_is_refused_before_any_work(command, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # a folder inside a file: no one can make it, root included
    argv = {"demo": ["demo"], "sweep": ["sweep", "sphere", "--decay", "0.5:0.9:2"],
            "tune": ["tune", "digits"]}[command]  # fmt: skip
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: cannot write there (Not a directory)" in err
    assert len(err.strip().splitlines()) == 1
    assert cli.main([*argv, "--out", str(blocker)]) == 2
    assert f"--out {blocker}: cannot write there (it is a file)" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_out_the_system_refuses_to_make_is_one_line_and_exit_2(capsys):
    """/proc passes os.access for root, but nothing can be made in it (tried, at once)."""
    assert cli.main(["sweep", "sphere", "--decay", "0.5:0.9:2", "--out", "/proc/nope"]) == 2
    err = capsys.readouterr().err
    why = "No such file or directory" if os.geteuid() == 0 else "Permission denied"
    assert err == f"jax-rmsprop: error: --out /proc/nope: cannot write there ({why})\n"
    assert not os.path.exists("/proc/nope")


@pytest.mark.parametrize(
    "argv, module, extra",
    [(["tune", "digits"], "optuna", "tune"), (["pbt", "digits"], "optuna", "tune"),
     (["demo"], "matplotlib", "plot")],
)  # fmt: skip
def test_a_missing_extra_is_named_in_one_line(argv, module, extra, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # (import raises ModuleNotFoundError)
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"jax-rmsprop: error: {argv[0]} needs {module}: pip install 'jax-rmsprop[{extra}]' "
        f'(or ".[{extra}]" in a clone)\n'
    )


def test_the_table_ranks_finished_configurations_and_counts_the_rest():
    from jax_rmsprop import TuneResult, report

    val = np.array([0.5, np.nan, 0.2, np.inf])[:, None, None].repeat(2, -1)
    res = TuneResult({"learning_rate": np.array([1e-3, 1e-2, 1e-1, 1.0])}, val.copy(), val,
                     np.array([[2], [1], [2], [2]]))  # fmt: skip
    text = report.table(res, 10)
    lines = text.splitlines()
    assert [ln.split()[0] for ln in lines[2:4]] == ["0.1", "0.001"]  # best first
    assert "inf" not in text and "nan" not in text
    assert lines[-1] == "(2 more not ranked: 1 halted early by successive halving, 1 diverged)"


def test_the_table_shows_the_tasks_metrics_mean_over_seeds():
    from jax_rmsprop import TuneResult, report

    val = np.array([0.5, 0.2, 0.3])[:, None, None].repeat(2, 1).repeat(3, 2)  # (3, 2 seeds, 3)
    acc = np.zeros_like(val)
    acc[..., -1] = [[0.8, 0.9], [0.95, 0.97], [0.7, 0.7]]  # final epoch, per seed
    res = TuneResult({"learning_rate": np.array([1e-3, 1e-2, 1e-1])}, val.copy(), val,
                     np.full((3, 2), 3), metrics={"val_accuracy": acc})  # fmt: skip
    lines = report.table(res, 10).splitlines()
    assert lines[0].split()[-1] == "val_accuracy"
    rows = [ln.split() for ln in lines[2:]]
    assert [r[0] for r in rows] == ["0.01", "0.1", "0.001"]  # ranked by val_loss
    assert [float(r[-1]) for r in rows] == [0.96, 0.7, 0.85]  # its config's mean


@pytest.mark.slow  # (two PBT runs of the digits task)
def test_pbt_prints_the_best_members_and_writes_the_schedule(tmp_path, capsys):
    """``jax-rmsprop pbt``: the library's ``pbt`` with the command's ranges; the table is
    its best members, the CSV its schedule and parents, row for row."""
    pytest.importorskip("optuna")
    from optuna.distributions import FloatDistribution

    from jax_rmsprop import cli, pbt, problems

    argv = ["pbt", "digits", "--population", "4", "--epochs", "2", "--out", str(tmp_path),
            "--learning-rate", "1e-3:1e-1:log", "--decay", "0.9", "--top", "2"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    space = {"learning_rate": FloatDistribution(1e-3, 1e-1, log=True)}
    ref = pbt(problems.digits(), space, 2, population=4, options={"decay": 0.9})
    assert out[0].startswith(
        f"digits: 4 members x 2 epochs, exploit every 1; best member {ref.best}"
    )
    assert out[1].split() == ["member", "score", "final", "learning_rate"]
    best = np.argsort(ref.score, kind="stable")[:2]
    assert [int(line.split()[0]) for line in out[3:5]] == list(best)
    rows = (tmp_path / "pbt_digits.csv").read_text().splitlines()
    assert rows[0] == "interval,member,parent,learning_rate" and len(rows) == 1 + 2 * 4
    for row in rows[1:]:
        j, m, parent, lr = row.split(",")
        assert int(parent) == ref.parent[int(j), int(m)]
        assert float(lr) == ref.schedule["learning_rate"][int(j), int(m)]
    assert (tmp_path / "pbt_digits.png").exists()


def test_ctrl_c_before_anything_finished_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C while the data loads (before a sweep's interrupt handler is installed)."""
    from jax_rmsprop import problems

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(problems, "get", interrupted)
    assert cli.main(["sweep", "digits", "--decay", "0.5:0.9:2"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "jax-rmsprop: interrupted (nothing to keep yet)\n"
    assert captured.out == ""


def test_the_bar_counts_from_the_start_of_the_work_and_names_the_compile(capsys):
    """Its clock starts when made (the work before the first report counts in the rate);
    a problem sweep's first report says the program is compiled, and the bar's clock
    starts there; the total is the one each report gives."""
    import time

    pytest.importorskip("tqdm")
    from jax_rmsprop._progress import Bar

    bar = Bar(4, "epoch", "tune")
    time.sleep(0.3)
    bar(2, 4)
    assert bar.bar.format_dict["elapsed"] >= 0.3 and bar.bar.n == 2
    bar(5, 6)  # (a larger total, as halving's rungs are known)
    assert bar.bar.total == 6 and bar.bar.n == 5
    bar.close()
    sweep = Bar(100, "step", "sweep", compiled="compiled one program for all 4 configurations")
    time.sleep(0.3)
    sweep(0, 100)
    err = capsys.readouterr().err
    m = re.search(r"sweep: compiled one program for all 4 configurations in (\d+\.\d+) s", err)
    assert m and float(m.group(1)) >= 0.3
    assert sweep.bar.n == 0 and sweep.bar.format_dict["elapsed"] < 0.3  # the run's own clock
    sweep(100, 100)
    assert sweep.bar.n == 100
    sweep.close()
