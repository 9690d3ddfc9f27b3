"""Group memory-sweep: 4096 configurations of a 100k-parameter model on this machine.

Each sweep runs in its own process (``python -m bench.big_sweep``), so that the peak
resident memory measured is the sweep's. Once with the default budget (half the free
memory) and once with a tenth of it, which forces ``sweep`` to split the grid into
chunks: both complete with the same numbers, and the chunked one stays within the
memory that one whole-grid program would need (by XLA's accounting).
"""

import json
import os
import subprocess
import sys

import pytest

from .helpers import big_enabled

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _big_sweep(*args):
    out = subprocess.run(
        [sys.executable, "-m", "bench.big_sweep", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="memory-sweep")
def test_4096_configurations_of_a_100k_parameter_model(benchmark, device, request):
    # --big: 4096 configurations (~2 min); the default run: 256, with a budget small
    # enough to need chunks (the same code path, seconds)
    big = big_enabled(request.config)
    side, fraction = ("64", "0.1") if big else ("8", "0.001")
    runs = {}
    runs["default"] = benchmark.pedantic(_big_sweep, ("--side", side), rounds=1, iterations=1)
    runs["tenth"] = _big_sweep("--fraction", fraction, "--side", side)
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    info = {"ram_gib": round(ram, 1), "params": runs["default"]["params"]}
    info |= {"runs": int(side) ** 2, "small budget fraction": float(fraction)}
    for name, r in runs.items():
        info[f"{name}: chunk x chunks"] = f"{r['chunk']} x {r['chunks']}"
        for k in ("budget_gib", "one_program_gib", "peak_rss_gib", "seconds"):
            info[f"{name}: {k}"] = round(r[k], 2)
    benchmark.extra_info.update(info, device=device)
    for r in runs.values():
        assert r["params"] >= 100_000 and r["finite"]
        assert r["peak_rss_gib"] < ram
    assert runs["default"]["best_val_loss"] == pytest.approx(runs["tenth"]["best_val_loss"])
    assert runs["tenth"]["chunks"] > 1
    if big:  # (small runs are dominated by the runtime's own ~0.5 GiB)
        assert runs["tenth"]["peak_rss_gib"] < runs["tenth"]["one_program_gib"]
