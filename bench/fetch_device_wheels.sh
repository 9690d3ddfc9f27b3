#!/usr/bin/env bash
# Wheels of what the GPU machine lacks, for bench/device_check.sh (run here, not there):
#
#   bash bench/fetch_device_wheels.sh            # -> device-wheels/ (ignored by git)
#   run(command="bash bench/device_check.sh", carry=["device-wheels"], timeout_s=560)
#
# The device machine (x86-64 Linux, Python 3.12) has JAX, optax, Flax, NumPy, SciPy,
# scikit-learn and pytest-benchmark but not Keras or Optuna, and reaches no registry.
# Keras, Optuna (pandas for its frames) and Hypothesis (tests/conftest.py imports it) come
# with their dependencies as binary wheels for that platform;
# the packages the device has already are dropped (a second NumPy or ml_dtypes beside
# jaxlib's would be worse than none). device_check.sh installs the rest with --no-deps
# into a folder of its own. The whole must stay under the 64 MiB a device call carries.
set -euo pipefail
DEST=${1:-device-wheels}
rm -rf "$DEST"
mkdir -p "$DEST"
python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any \
  -d "$DEST" -q "keras>=3.8" "optuna>=4" "pandas>=2" hypothesis
# the device's own binary stack: a second copy beside jaxlib's would break it
for have in numpy ml_dtypes scipy jax jaxlib; do
  find "$DEST" -maxdepth 1 -iname "${have}-*.whl" -delete
done
du -sh "$DEST"
ls "$DEST"
