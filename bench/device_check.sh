#!/usr/bin/env bash
# The GPU goals in one prepared run, for a session whose task is lent a device:
#
#   run(command="bash bench/device_check.sh", timeout_s=560)    (the device tool)
#
# Measures, side by side as the CPU runs do: the 1e8 step against the copy roofline (goal:
# >= 85% of the measured copy bandwidth, ours/roofline <= 1.176), the 4000-leaf step
# against optax (pytrees), fit and fit-nnx against their loops and hand-written scan,
# the NNX and digits sweeps against loops of fit. The device image holds jax (CUDA),
# optax, flax, pytest-benchmark and scikit-learn but not Keras or Optuna (their kernels
# are skipped), and nothing can be fetched there: the package runs from src/. Each group
# writes $OUT/<group>.json (at most 8 files come back); merge them here with
# `python bench/make_results.py bench.json <the full CPU run> ... <these files>` or quote
# $OUT/log.txt's summary in bench/RESULTS.md with the device's name.
set -uo pipefail
export PYTHONPATH="src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp/device_check}
BIG=${BIG---big}  # (BIG= runs the default sizes: the plumbing, on a CPU)
mkdir -p "$OUT"
LOG="$OUT/log.txt"
{
  python3 -c "import jax, optax; print('jax', jax.__version__, 'optax', optax.__version__, jax.devices())"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv 2>/dev/null || true
} 2>&1 | tee "$LOG"

group() {  # name, seconds, pytest targets...
  local name=$1 secs=$2
  shift 2
  echo "== $name" | tee -a "$LOG"
  timeout "$secs" python3 -m pytest "$@" --benchmark-only $BIG -q -W default -p no:randomly \
    -p no:cacheprovider --benchmark-json="$OUT/$name.json" 2>&1 | tail -n 8 | tee -a "$LOG"
}
group step 170 "bench/test_step.py::test_interleaved"
group pytrees 110 bench/test_pytrees.py
group fit 110 bench/test_fit.py bench/test_fit_nnx.py
group sweeps 130 bench/test_nnx_sweep.py bench/test_digits_sweep.py
python3 bench/device_summary.py "$OUT"/step.json "$OUT"/pytrees.json "$OUT"/fit.json \
  "$OUT"/sweeps.json 2>&1 | tee -a "$LOG"
# --- issue 31: 8-bit and 4-bit state (the quantized-step group; GPU goal >= 1.3x optax at 1e8)
group quantized 150 bench/test_quantized_step.py
python3 bench/device_summary.py "$OUT"/quantized.json 2>&1 | tee -a "$LOG"
# --- end issue 31
