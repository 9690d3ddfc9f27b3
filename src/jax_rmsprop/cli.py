"""The ``jax-rmsprop`` command: ``demo``, ``sweep`` and ``tune``, a thin layer over the library."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._progress import Bar as _Progress
from ._version import __version__

# rmsprop keywords the sweep command can vary (flag: --learning-rate for learning_rate).
SWEEPABLE = ("learning_rate", "decay", "eps", "momentum", "initial_scale")


class UsageError(Exception):
    """A bad command line: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_range(text: str) -> np.ndarray:
    """``start:stop:num[:log]`` -> values (log-spaced with ``log``); a lone number -> [number]."""
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return np.array([float(parts[0])])
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "log"):
            raise ValueError
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise UsageError(
            f"malformed range {text!r}: expected START:STOP:NUM[:log] or a number"
        ) from None
    if num < 1:
        raise UsageError(f"malformed range {text!r}: NUM must be >= 1")
    if len(parts) == 4:
        if start <= 0 or stop <= 0:
            raise UsageError(f"malformed range {text!r}: a log range needs positive ends")
        return np.logspace(np.log10(start), np.log10(stop), num)
    return np.linspace(start, stop, num)


_RANGES = {
    "learning_rate": ">= 0 (0.01 when not given)",
    "decay": "in [0, 1] (0.9 when not given)",
    "eps": ">= 0 (1e-8 when not given)",
    "momentum": "in [0, 1) (none when not given)",
    "initial_scale": ">= 0 (0 when not given)",
}
# with --samples and no range, random search draws from these: (low, high, log)
DEFAULT_RANGES = {"learning_rate": (1e-4, 1e-1, True), "decay": (0.5, 0.999, False)}


def _distributions(grid: dict[str, np.ndarray], logs: set[str]) -> dict[str, Any]:
    """Each range's ends as an Optuna distribution: log-uniform where the range said ``:log``."""
    from optuna.distributions import FloatDistribution

    ranges = {k: (float(v.min()), float(v.max()), k in logs) for k, v in grid.items()}
    return {
        k: FloatDistribution(lo, hi, log=log)
        for k, (lo, hi, log) in (ranges or DEFAULT_RANGES).items()
    }


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jax-rmsprop", description="RMSProp for JAX: demo and sweeps.")
    parser.add_argument("--version", action="version", version=f"jax-rmsprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="reproduce the seed articles' examples, with pictures")
    demo.add_argument("--out", default="rmsprop-demo", help="output folder")

    _sweep_parser(sub)
    _tune_parser(sub)
    _pbt_parser(sub)
    return parser


def _sweep_parser(sub) -> None:
    from . import problems

    sw = sub.add_parser(
        "sweep",
        help="sweep RMSProp hyperparameters on a documented problem",
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  jax-rmsprop sweep elongated --learning-rate 1e-3:1:16:log --decay 0.5:0.999:16\n"
            "  jax-rmsprop sweep digits --learning-rate 1e-4:1e-1:8:log --decay 0.5:0.99:4 "
            "--steps 9 --seeds 3 --halving 3\n"
            "  jax-rmsprop sweep digits --learning-rate 1e-4:1e-1:2:log --decay 0.5:0.99:2 "
            "--samples 64 --steps 9\n"
            "A range START:STOP:NUM[:log] sweeps NUM values; a single value is a fixed option. "
            "With --samples, each range's ends bound a random draw (log-uniform for a :log "
            "range); without ranges it draws learning_rate in [1e-4, 1e-1] (log-uniform) and "
            "decay in [0.5, 0.999]."
        ),
    )
    sw.add_argument("problem", help=f"one of: {', '.join(problems.names())}")
    for name in SWEEPABLE:
        sw.add_argument(
            f"--{name.replace('_', '-')}",
            type=str,
            default=None,
            metavar="START:STOP:NUM[:log]",
            help=f"a range to sweep, or one value (fixed); {_RANGES[name]}",
        )
    sw.add_argument("--steps", type=int, default=1000, help="steps (epochs for a task)")
    sw.add_argument("--seeds", type=int, default=1, help="trainings per configuration (tasks)")
    sw.add_argument(
        "--samples", type=int, default=None, help="(tasks) random search: draw N configurations"
    )
    sw.add_argument(
        "--halving", type=int, default=None, metavar="ETA",
        help="(tasks) successive halving: keep the best 1/ETA at each rung",
    )  # fmt: skip
    sw.add_argument(
        "--patience", type=int, default=None,
        help="(tasks) early stopping after this many epochs without improvement",
    )  # fmt: skip
    sw.add_argument(
        "--folds", type=int, default=None, help="(tasks) k-fold cross-validation on the data"
    )
    sw.add_argument("--tol", type=float, default=None, help="stop a config at loss - min <= tol")
    sw.add_argument("--top", type=int, default=10, help="rows of the best-configurations table")
    sw.add_argument("--out", default="sweep-out", help="folder for the heatmap PNG and CSV")
    sw.add_argument("--no-progress", action="store_true")
    sw.add_argument(
        "--chunk-size", type=int, default=None, help="(tasks) runs per program (default: by memory)"
    )
    sw.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="(tasks) where the sweep's progress is kept, to resume (default: OUT/checkpoint)",
    )
    sw.add_argument(
        "--restart", action="store_true", help="(tasks) discard the checkpoint, start afresh"
    )


SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("none", "median", "halving", "hyperband")


def _tune_parser(sub) -> None:
    tu = sub.add_parser(
        "tune",
        help="tune RMSProp on a training task with an Optuna sampler, a batch per program",
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  jax-rmsprop tune digits --sampler tpe --trials 256 --batch 32 "
            "--storage sqlite:///t.db\n"
            "  jax-rmsprop tune digits --learning-rate 1e-5:1e-1:log --momentum 0:0.95 "
            "--pruner hyperband\n"
            "A range LOW:HIGH[:log] is searched (log-uniformly with :log); a single value "
            "is a fixed option. Without ranges: learning_rate 1e-4:1e-1:log, decay "
            "0.5:0.999. With --storage the study is kept there: the same command goes on "
            "after a kill, and optuna-dashboard reads it."
        ),
    )
    _task_and_ranges(tu, "search")
    tu.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna's sampler")
    tu.add_argument("--pruner", choices=PRUNERS, default="none", help="Optuna's pruner")
    tu.add_argument("--trials", type=int, default=64, help="trials to finish")
    tu.add_argument("--batch", type=int, default=16, help="trials trained as one program")
    tu.add_argument("--epochs", type=int, default=9, help="epochs per trial")
    tu.add_argument("--seeds", type=int, default=1, help="trainings per trial")
    tu.add_argument("--seed", type=int, default=0, help="the sampler's and the runs' seed")
    tu.add_argument(
        "--sampler-seed", type=int, default=None,
        help="the sampler's seed (default: --seed): one of its own per worker on one study",
    )  # fmt: skip
    tu.add_argument(
        "--storage", default=None,
        help="an Optuna RDB URL: sqlite:///tune.db, or postgresql://user:pw@host/db for "
        "several workers (the same command on each machine or GPU) on one study",
    )  # fmt: skip
    tu.add_argument("--study-name", default=None, help="(default: jax-rmsprop-PROBLEM)")
    tu.add_argument(
        "--heartbeat", type=int, default=10, metavar="SECONDS",
        help="(with --storage) a running trial's heartbeat: a worker killed, its trials "
        "are retried by another once 3 heartbeats are missed",
    )  # fmt: skip
    tu.add_argument(
        "--checkpoint", default=None, metavar="DIR",
        help="(with --storage) keep the batch in training there: after a kill the same "
        "command trains it on from its last saved epoch",
    )  # fmt: skip
    tu.add_argument("--top", type=int, default=10, help="rows of the best-trials table")
    tu.add_argument("--out", default="tune-out", help="folder for the trials' CSV")
    tu.add_argument("--no-progress", action="store_true")


def _task_and_ranges(parser, verb: str) -> None:
    """The task argument and a LOW:HIGH[:log] range option per hyperparameter."""
    from . import problems

    parser.add_argument("problem", help=f"a training task: {', '.join(problems.names('task'))}")
    for name in SWEEPABLE:
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=str, default=None, metavar="LOW:HIGH[:log]",
            help=f"a range to {verb}, or one value (fixed); {_RANGES[name]}",
        )  # fmt: skip


def _pbt_parser(sub) -> None:

    pb = sub.add_parser(
        "pbt",
        help="population-based training of RMSProp on a training task, one program",
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  jax-rmsprop pbt digits --population 32 --interval 2 --epochs 12\n"
            "  jax-rmsprop pbt digits --learning-rate 1e-4:1e-1:log --momentum 0:0.9\n"
            "Each member starts from values drawn in the ranges (defaults as for tune); "
            "after every interval the worst --quantile copy a top member's weights and "
            "state and explore (x0.8 or x1.2, or a fresh draw with --resample)."
        ),
    )
    _task_and_ranges(pb, "explore in")
    pb.add_argument("--population", type=int, default=16, help="members trained together")
    pb.add_argument("--interval", type=int, default=1, help="epochs between exploit steps")
    pb.add_argument("--epochs", type=int, default=9, help="epochs in all")
    pb.add_argument("--quantile", type=float, default=0.25, help="share replaced each time")
    pb.add_argument("--resample", type=float, default=0.0, help="chance of a fresh draw")
    pb.add_argument("--seed", type=int, default=0, help="draws, exploits and the runs' seed")
    pb.add_argument("--top", type=int, default=10, help="rows of the best-members table")
    pb.add_argument("--out", default="pbt-out", help="folder for the schedule's CSV and picture")


def _pbt(args) -> int:
    from . import problems, report
    from ._pbt import pbt

    task = problems.get(args.problem) if args.problem in problems.names("task") else None
    if not isinstance(task, problems.Task):
        raise UsageError(f"pbt trains tasks ({', '.join(problems.names('task'))}); "
                         f"got {args.problem}")  # fmt: skip
    space, fixed = _space(args)
    try:
        res = pbt(
            task, space, args.epochs, population=args.population, interval=args.interval,
            quantile=args.quantile, resample=args.resample, seed=args.seed, options=fixed,
        )  # fmt: skip
    except (TypeError, ValueError) as err:
        raise UsageError(_in_flags(str(err))) from None
    order = np.argsort(res.score, kind="stable")[: args.top]
    names = list(res.schedule)
    print(
        f"{task.name}: {args.population} members x {args.epochs} epochs, exploit every "
        f"{args.interval}; best member {res.best}, final score {res.score[res.best]:.4g}"
    )
    cols = ["member", "score", *(f"final {n}" for n in names)]
    rows = [[str(m), f"{res.score[m]:.4g}", *(f"{res.schedule[n][-1, m]:.4g}" for n in names)]
            for m in order]  # fmt: skip
    print(report.aligned(cols, rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"pbt_{task.name}.csv"
    with open(csv, "w") as f:  # one row per (interval, member): its values and its parent
        f.write(",".join(["interval", "member", "parent", *names]) + "\n")
        for j, m in np.ndindex(res.parent.shape):
            values = [repr(float(res.schedule[n][j, m])) for n in names]
            f.write(",".join([str(j), str(m), str(res.parent[j, m]), *values]) + "\n")
    print(f"\nWrote:\n  csv (the schedule): {csv}")
    try:
        from . import plots

        png = plots.pbt_schedule(res, out / f"pbt_{task.name}.png", title=f"PBT on {task.name}")
        print(f"  picture: {png}")
    except ImportError:  # matplotlib is the plot extra
        pass
    return 0


def _space(args) -> tuple[dict[str, Any], dict[str, float]]:
    """The searched distributions and the fixed options from ``tune``'s command line."""
    from optuna.distributions import FloatDistribution

    space: dict[str, Any] = {}
    fixed: dict[str, float] = {}
    for name in SWEEPABLE:
        text = getattr(args, name)
        if text is None:
            continue
        parts = text.split(":")
        try:
            if len(parts) == 1:
                fixed[name] = float(parts[0])
                continue
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
                raise ValueError
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise UsageError(
                f"malformed range {text!r} for --{name.replace('_', '-')}: expected "
                "LOW:HIGH[:log] or a number"
            ) from None
        log = len(parts) == 3
        if not low < high or (log and low <= 0):
            raise UsageError(
                f"--{name.replace('_', '-')} {text}: needs LOW < HIGH"
                + (" and LOW > 0 (log)" if log else "")
            )
        space[name] = FloatDistribution(low, high, log=log)
    if not space:
        space = {
            k: FloatDistribution(lo, hi, log=log) for k, (lo, hi, log) in DEFAULT_RANGES.items()
        }
        space = {k: v for k, v in space.items() if k not in fixed}
    _check_fixed(fixed)
    if fixed.get("momentum") == 0:
        del fixed["momentum"]
    return space, fixed


def _sampler(optuna, name: str, seed: int):
    kinds = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed),
    }
    return kinds[name]()


def _pruner(optuna, name: str, epochs: int):
    if name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def _tune_task(args):
    """The task ``jax-rmsprop tune`` trains, its counts checked (``UsageError``)."""
    from . import problems

    try:
        task = problems.get(args.problem)
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from None
    if not isinstance(task, problems.Task):
        raise UsageError(
            f"tune trains tasks ({', '.join(problems.names('task'))}); {args.problem} is a "
            "closed-form problem: use `jax-rmsprop sweep`"
        )
    for flag in ("trials", "batch", "epochs", "seeds"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be >= 1; got {getattr(args, flag)}")
    return task


def _study(optuna, args):
    """The Optuna study of ``jax-rmsprop tune``: its sampler, pruner and storage.

    A storage has a heartbeat (``tune_storage``): workers on one study retry the trials
    of one that was killed.
    """
    import warnings

    from ._storage import answering, hidden, tune_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # TPE's multivariate is "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        seed = args.seed if args.sampler_seed is None else args.sampler_seed
        sampler = _sampler(optuna, args.sampler, seed)
    storage = None
    try:
        if args.storage is not None:
            storage = tune_storage(args.storage, heartbeat=args.heartbeat)
        with answering(f"--storage {hidden(args.storage or '')}", "cannot open the study"):
            return optuna.create_study(
                storage=storage, study_name=_study_name(args), sampler=sampler,
                pruner=_pruner(optuna, args.pruner, args.epochs), load_if_exists=True,
            )  # fmt: skip
    except ValueError as err:
        raise UsageError(_in_flags(str(err))) from None


def _study_name(args) -> str:
    return args.study_name or f"jax-rmsprop-{args.problem}"


def _tune(args) -> int:

    import optuna

    from ._sweep_progress import SweepInterrupted
    from ._tune import tune

    task = _tune_task(args)
    space, fixed = _space(args)
    study = _study(optuna, args)
    progress = None
    if not args.no_progress:  # epochs trained, every trial's
        progress = _Progress(args.trials * args.epochs, "epoch", "tune")
    try:
        result = tune(
            task, space, args.epochs, study=study, trials=args.trials, batch=args.batch,
            seeds=args.seeds, seed=args.seed, options=fixed, progress=progress,
            checkpoint=args.checkpoint,
        )  # fmt: skip
    except (TypeError, ValueError) as err:
        raise UsageError(_in_flags(str(err), args)) from None
    except SweepInterrupted as stop:  # Ctrl-C, SIGTERM: what finished, kept and shown
        if progress is not None:
            progress.close()
        return _tune_interrupted(args, task, study, stop.partial)
    finally:
        if progress is not None:
            progress.close()
    _tune_report(args, task, study, result)
    return 0


_SCORE = (
    "score: {whose} validation loss after the last epoch, mean over seeds (lower is "
    "better); seed_std: its standard deviation over seeds"
)


def _tune_report(args, task, study, result, interrupted: bool = False) -> None:
    """``tune``'s summary, its table of the best trials, the CSV and the picture."""
    from . import report

    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert result.trial is not None and result.pruned is not None
    best = f"best value {study.best_value:.4g}" if any(
        t.state.name == "COMPLETE" for t in done
    ) else "no trial completed"  # fmt: skip
    print(
        f"{task.name}: {len(done)} trials ({len(result.trial)} this run, "
        f"{int(result.pruned.sum())} pruned) x {args.seeds} seeds x {args.epochs} epochs, "
        f"{args.sampler} sampler, batches of {args.batch}; {best}"
    )
    print(report.table(result, args.top))
    print(_SCORE.format(whose="the value told to Optuna: a trial's"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"tune_{task.name}.csv"
    frame = study.trials_dataframe()
    if interrupted:  # the finished trials (those cut short are FAIL)
        frame = frame[frame["state"].isin(["COMPLETE", "PRUNED"])]
    frame.to_csv(csv, index=False)
    what = "the finished trials" if interrupted else "every trial of the study"
    print(f"\nWrote:\n  csv ({what}): {csv}")
    try:
        from . import plots

        title = f"Tuning RMSProp on {task.name}: {args.sampler} sampler"
        png = plots.tune_trials(study, out / f"tune_{task.name}.png", title=title)
        print(f"  picture (value by trial, and the parameters): {png}")
    except ImportError:  # matplotlib is the plot extra
        pass


def _tune_interrupted(args, task, study, partial) -> int:
    """Ctrl-C in ``tune``: the finished trials shown and written; how to go on; exit 130."""
    n = 0 if partial is None or partial.trial is None else len(partial.trial)
    first = min((int(t) for t in partial.trial), default=None) if n else None
    cut = [t for t in study.trials if t.state.name == "FAIL" and (first is None or
           t.number >= first)]  # fmt: skip
    line = f"interrupted: {n} trials finished this run"
    if cut:  # a second Ctrl-C, or a checkpoint's boundary, cut a batch short
        line += f"; {len(cut)} cut short (FAIL" + (
            f", their runs kept in {args.checkpoint})" if args.checkpoint else ")"
        )
    print(line)
    if n:
        _tune_report(args, task, study, partial, interrupted=True)
    if args.storage:
        print(f"\nthe study is in {args.storage}: run the same command again to go on.")
    else:
        print(
            "\nthese trials were kept only in memory: a new run starts afresh. To go on "
            "after an interruption next time, keep the study in a file: add\n  --storage "
            f"sqlite:///{Path(args.out) / 'tune.db'}"
        )
    return 130


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (where there is one), and the examples' lines kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _grid(args) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The swept ranges and the fixed options from the command line."""
    grid, fixed = {}, {}  # ranges are swept, single values are static options
    for name in SWEEPABLE:
        text = getattr(args, name)
        if text is None:
            continue
        values = parse_range(text)
        if values.size > 1:
            grid[name] = values
        else:
            fixed[name] = float(values[0])
    _check_fixed(fixed)
    if not grid:
        raise UsageError("nothing to sweep: give at least one range, e.g. --decay 0.5:0.999:64")
    if "learning_rate" not in grid:
        fixed.setdefault("learning_rate", 0.01)
    if fixed.get("momentum") == 0:
        del fixed["momentum"]
    return grid, fixed


def _check_fixed(fixed: dict[str, float]) -> None:
    """The single values of the command line, refused as ``rmsprop`` refuses them."""
    from ._rmsprop import rmsprop

    options: dict[str, Any] = {"learning_rate": 0.01, **fixed}
    try:
        rmsprop(**options)
    except (TypeError, ValueError) as err:
        raise UsageError(_in_flags(str(err))) from None


def _interrupted(stop, top: int, tol: bool) -> int:
    """Ctrl-C: the best of what finished, and how to go on; exit status 130 (SIGINT)."""
    from . import report

    if stop.steps is not None:  # a problem sweep: every configuration, where it stood
        print(f"interrupted after {stop.steps} steps; the best configurations then:")
        if stop.partial is not None:
            print(report.table(stop.partial, top, steps_to_tol=tol))
        return 130
    print(f"interrupted: {_stood(stop.counts)}")
    finished = int(np.isfinite(stop.partial.score()).sum())
    if finished:
        print(report.table(stop.partial, min(top, finished)))
    print(f"checkpoint: {stop.checkpoint}\nrun the same command again to resume from there.")
    return 130


def _stood(counts: dict[str, tuple[int, int]]) -> str:
    """Where an interrupted training sweep stood, in the words of its progress bar."""
    (epochs, total), (rung, rungs) = counts["epochs"], counts["rung"]
    (runs, in_rung), (configs, n_cfg) = counts["runs"], counts["configs"]
    where = f"{runs} of {in_rung} runs trained"
    if rungs > 1:
        where += f" in rung {rung} of {rungs} (successive halving)"
    return (
        f"{epochs} of {total} epochs trained (all runs); {where}; {configs} of {n_cfg} "
        "configurations trained to the last epoch with every seed"
    )


def _sweep(args) -> int:
    from . import problems, report
    from ._resume import CheckpointCorrupt, CheckpointMismatch
    from ._sweep import SweepResult, sweep
    from ._sweep_progress import SweepInterrupted
    from ._tune import tune
    from ._tune_result import TuneResult

    problem = _problem(args)
    given_ranges = any(getattr(args, n) is not None for n in SWEEPABLE)
    grid: dict[str, Any]
    grid, fixed = _grid(args) if given_ranges or args.samples is None else ({}, {})
    is_task = isinstance(problem, problems.Task)
    task_only = {"samples": args.samples, "halving": args.halving, "patience": args.patience,
                 "folds": args.folds}  # fmt: skip
    given = [f"--{k}" for k, v in task_only.items() if v is not None]
    if given and not is_task:
        raise UsageError(f"{', '.join(given)} apply to training tasks (digits), not {args.problem}")
    configs = args.samples or int(np.prod([np.size(v) for v in grid.values()]))
    if args.samples is not None:  # each range's ends bound the draws
        logs = {n for n in SWEEPABLE if (getattr(args, n) or "").endswith(":log")}
        grid = _distributions(grid, logs)
    progress = None if args.no_progress else _sweep_bar(args, is_task, configs)
    checkpoint = None
    if is_task:
        checkpoint = Path(args.checkpoint or Path(args.out) / "checkpoint")
        if args.restart:
            (checkpoint / "sweep.npz").unlink(missing_ok=True)
    try:
        result: SweepResult | TuneResult
        if isinstance(problem, problems.Task):
            result = tune(
                problem, grid, args.steps, options=fixed, progress=progress, seeds=args.seeds,
                chunk_size=args.chunk_size, checkpoint=checkpoint,
                **{k: v for k, v in task_only.items() if v is not None},
            )  # fmt: skip
        else:
            result = sweep(
                problem, grid, args.steps, tol=args.tol, options=fixed, progress=progress
            )
    except UsageError:
        raise
    except SweepInterrupted as stop:
        if progress is not None:
            progress.close()
        return _interrupted(stop, args.top, args.tol is not None)
    except CheckpointMismatch as err:
        raise UsageError(f"{err}\n  (or add --restart)") from None
    except CheckpointCorrupt as err:
        raise UsageError(str(err)) from None
    except (TypeError, ValueError) as err:  # the library's refusals, in flag terms
        raise UsageError(_in_flags(str(err))) from None
    finally:
        if progress is not None:
            progress.close()
    what = _summary(args, problem.name, result)
    print(report.table(result, args.top, steps_to_tol=args.tol is not None))
    if is_task:
        print(_SCORE.format(whose="a configuration's"))
    return _write(args, problem.name, grid, result, what)


def _sweep_bar(args, is_task: bool, configs: int) -> _Progress:
    """A task's bar counts epochs trained (all runs); a problem's, steps, once compiled."""
    if is_task:
        return _Progress(configs * args.seeds * (args.folds or 1) * args.steps, "epoch")
    compiled = f"compiled one program for all {configs} configurations"
    return _Progress(args.steps, "step", compiled=compiled)


def _problem(args):
    """The problem or task ``--problem`` names, with ``--steps`` and ``--seeds`` checked."""
    from . import problems

    try:
        problem = problems.get(args.problem)
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from None
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1; got {args.steps}")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1; got {args.seeds}")
    return problem


def _summary(args, name: str, result) -> str:
    """Prints a sweep's one-line summary; returns what its table ranks by."""
    from ._sweep import SweepResult

    if isinstance(result, SweepResult):
        reached = int((result.steps_to_tol >= 0).sum())
        print(
            f"{name}: {result.final_loss.size} configurations x {args.steps} steps; "
            f"{int(result.diverged.sum())} diverged"
            + (f", {reached} reached tol {args.tol}" if args.tol else "")
        )
        return f"final loss after {args.steps} steps"
    print(
        f"{name}: {result.score().size} configurations x {args.seeds} seeds x "
        f"{args.steps} epochs; ranked by the final validation loss, mean over seeds"
    )
    return f"mean validation loss after {args.steps} epochs" + (
        f", {args.seeds} seeds" if args.seeds > 1 else ""
    )


def _write(args, name, grid, result, what) -> int:
    from . import report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"sweep_{name}.csv"
    report.write_csv(result, csv)
    print(f"\nWrote:\n  csv: {csv}")
    from . import plots

    if getattr(args, "samples", None) is not None:
        png = plots.sweep_scatter(
            result, out / f"sweep_{name}.png", title=f"RMSProp on {name}: random search"
        )
        print(f"  scatter: {png}")
    elif len(grid) == 2:
        png = plots.sweep_heatmap(
            result, out / f"sweep_{name}.png", title=f"RMSProp on {name}: {what}"
        )
        print(f"  heatmap: {png}")
    return 0


def _in_flags(message: str, args=None) -> str:
    """A library refusal in the command line's terms: ``--decay: ...`` for ``decay``'s.

    (``tune(study=...)``'s are the study's: ``--study-name`` in ``--storage``; a
    ``tune_storage`` refusal is the URL's, ``--storage``.)
    """
    if args is not None and "`tune(study=...)`" in message:
        from ._storage import hidden

        where = f" (in --storage {hidden(args.storage)})" if args.storage else ""
        return message.replace("`tune(study=...)`", f"--study-name {_study_name(args)}{where}")
    message = re.sub(r"`tune_storage\(url='([^`]*)'\)`", r"--storage \1", message)
    message = message.replace("`tune_storage(heartbeat=...)`", "--heartbeat")
    m = re.match(r"`(?:sweep|tune)\((?:grid|space)=\{'(\w+)': [^`]*\}\)`:? ?(.*)", message, re.S)
    if m and m.group(1) in SWEEPABLE:
        return f"--{m.group(1).replace('_', '-')}: {m.group(2)}"
    m = re.match(r"`rmsprop\((\w+)=([^`]*)\)`:? ?(.*)", message, re.S)
    if m and m.group(1) in SWEEPABLE:
        value = "" if m.group(2) == "..." else f" {m.group(2)}"
        return f"--{m.group(1).replace('_', '-')}{value} {m.group(3)}"
    return message


def _writable(path: str, flag: str) -> None:
    """``path`` is, or can be made, a folder we may write in (checked, nothing created)."""
    folder = Path(path).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        what = "Not a directory" if existing != folder else "it is a file"
        raise UsageError(f"{flag} {path}: cannot write there ({what})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write there (Permission denied)")
    if existing != folder:  # made and removed at once (/proc refuses what access allows)
        first = folder
        while first.parent != existing:
            first = first.parent
        try:
            first.mkdir()
            first.rmdir()
        except OSError as err:
            raise UsageError(f"{flag} {path}: cannot write there ({err.strerror})") from None


_RANGE_FLAGS = {f"--{name.replace('_', '-')}" for name in SWEEPABLE}


def _joined(argv: list[str]) -> list[str]:
    """``--learning-rate -1:1:4`` as ``--learning-rate=-1:1:4``.

    argparse takes a value that starts with ``-`` (and is not a plain negative number)
    for a flag; a range's value is joined to its flag so that its checks can answer.
    """
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _RANGE_FLAGS and re.match(r"-[\d.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jax-rmsprop``; returns the exit code."""
    command = "jax-rmsprop"
    args: Any = None
    try:
        args = _parser().parse_args(_joined(sys.argv[1:] if argv is None else argv))
        command = args.command
        _writable(args.out, "--out")
        if getattr(args, "checkpoint", None):
            _writable(args.checkpoint, "--checkpoint")
        if args.command == "demo":  # (checked first: it prints before its first picture)
            _check_installed(("matplotlib", "PIL", "sklearn", "flax"))
            from . import _demo

            _demo.main(args.out)
            return 0
        if args.command == "tune":
            return _tune(args)
        if args.command == "pbt":
            return _pbt(args)
        return _sweep(args)
    except UsageError as err:
        print(f"jax-rmsprop: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # an optional dependency: say which extra has it
        module = (err.name or "").partition(".")[0]
        if module not in _EXTRAS:
            raise
        extra = _EXTRAS[module]
        print(
            f"jax-rmsprop: error: {command} needs {module}: "
            f"pip install 'jax-rmsprop[{extra}]' (or \".[{extra}]\" in a clone)",
            file=sys.stderr,
        )
        return 2
    except ImportError as err:  # the library's own, which names what to install
        if "pip install" not in str(err):
            raise
        print(f"jax-rmsprop: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any work finished (loading, compiling, the 1st chunk)
        demo = args is not None and args.command == "demo"
        kept = f"the pictures drawn so far are in {args.out}" if demo else "nothing to keep yet"
        print(f"jax-rmsprop: interrupted ({kept})", file=sys.stderr)
        return 130


def _check_installed(modules: tuple[str, ...]) -> None:
    """Raises ``ModuleNotFoundError`` for the first of ``modules`` that is not installed."""
    import importlib.util

    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ValueError:  # (in sys.modules without a spec: blocked)
            found = False
        if not found:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


# the optional dependencies' top-level modules, by the extra that installs them
_EXTRAS = {"optuna": "tune", "pandas": "tune", "matplotlib": "plot", "PIL": "plot",
           "sklearn": "plot", "flax": "plot", "tqdm": "plot"}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
