"""What differs between the JAX versions the package supports (``jax>=0.5.3``).

The floor is tested: CI runs the test suite on the oldest versions ``pyproject.toml``
allows (``.ci/oldest``: jax 0.5.3, optax 0.2.4, numpy 1.26.4) as well as the newest.

- ``enable_x64``: turns float64 on for a ``with`` block (``jax.enable_x64`` since jax
  0.8, ``jax.experimental.enable_x64`` before).
- ``reshard``: moves an array to a sharding on a mesh with ``Explicit`` axes
  (``jax.sharding.reshard`` since jax 0.7, ``jax.experimental.shard.reshard`` before).
"""

from __future__ import annotations

import importlib

import jax

_VERSION = tuple(jax.__version_info__[:2])
# (by version: older JAX has a config flag of the same name where 0.8 has the function)
enable_x64 = (
    jax.enable_x64 if _VERSION >= (0, 8) else importlib.import_module("jax.experimental").enable_x64
)
reshard = (
    jax.sharding.reshard
    if _VERSION >= (0, 7)
    else importlib.import_module("jax.experimental.shard").reshard
)
