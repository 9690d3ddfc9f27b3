"""Trials per minute of ``jax-rmsprop tune`` with 1, 2 and 3 worker processes on one study.

Each measurement starts N processes of the same command on a new study of the storage
given (``jax-rmsprop tune digits --trials T --batch 8 --epochs 3 --storage URL
--study-name NEW --sampler-seed i``) and times them from the launch to the end of the
last: the study's finished trials divided by those minutes (process start, JAX's import
and each worker's compile included: what a worker costs). Rounds alternate the order of
the worker counts, so every count sees the same spread of the machine's load; the table
is the median over rounds (bench/RESULTS.md, 2026-12-04)::

    python -m bench.tune_workers --storage postgresql+psycopg2://postgres@127.0.0.1:5432/postgres \\
        --trials 48 --rounds 3

Without ``--storage``, a new SQLite file per measurement.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

WORKER = "import sys; from jax_rmsprop import cli; sys.exit(cli.main(sys.argv[1:]))"


def measure(url: str | None, workers: int, trials: int, out: str) -> tuple[float, int]:
    """(seconds, finished trials) of ``workers`` processes on one new study."""
    import optuna

    url = url or f"sqlite:///{os.path.join(out, uuid.uuid4().hex)}.db"
    name = f"bench-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-c", WORKER, "tune", "digits", "--trials", str(trials),
           "--batch", "8", "--epochs", "3", "--storage", url, "--study-name", name,
           "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    procs = [
        subprocess.Popen([*cmd, "--sampler-seed", str(i), "--out", os.path.join(out, str(i))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(workers)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a worker failed (exit {p.returncode}): {err}")
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=url)
    done = sum(t.state.name == "COMPLETE" for t in study.trials)
    return seconds, done


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None, help="an RDB URL (default: SQLite files)")
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2,3")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    rates: dict[int, list[float]] = {n: [] for n in counts}
    finished: dict[int, list[int]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.rounds):
            for n in counts if r % 2 == 0 else counts[::-1]:
                seconds, done = measure(args.storage, n, args.trials, out)
                rates[n].append(60 * done / seconds)
                finished[n].append(done)
                print(f"round {r}: {n} workers, {done} trials in {seconds:.1f} s", flush=True)
    one = statistics.median(rates[counts[0]])
    print(f"\n| workers | trials finished | trials/min (median of {args.rounds}) | "
          f"vs {counts[0]} worker |")  # fmt: skip
    print("|---|---|---|---|")
    for n in counts:
        rate = statistics.median(rates[n])
        print(f"| {n} | {'/'.join(map(str, finished[n]))} | {rate:.1f} | {rate / one:.2f} |")


if __name__ == "__main__":
    main()
