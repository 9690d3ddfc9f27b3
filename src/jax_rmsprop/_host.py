"""Moving arrays between devices and this host (made for sharing across modules).

``to_host`` gathers a leaf that may span other processes' devices; ``fetch`` brings a
whole pytree in one wait, and counts it (``waits``: how often a driver stopped for the
device, which on a GPU is its fixed cost per call); ``device_copy`` copies a pytree on
its devices (a donated carry's values kept for a background write).
"""

from __future__ import annotations

import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_count = 0
_lock = threading.Lock()  # (fetch may run in a checkpoint writer's thread)


def spans_processes(leaf: Any) -> bool:
    """Whether ``leaf`` is an array with shards on other processes' devices."""
    return isinstance(leaf, jax.Array) and not leaf.is_fully_addressable


def to_host(leaf: Any) -> np.ndarray:
    """The whole of ``leaf`` on this host, also when it spans other processes' devices."""
    if spans_processes(leaf):
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return np.asarray(leaf)  # (a JAX array's own transfer; device_get walks a pytree)


device_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def fetch(tree: Any) -> Any:
    """``tree`` with each array on this host: one wait for all of them, counted.

    Every leaf's copy starts before any is waited for (``jax.device_get``); leaves that
    span other processes' devices are gathered (``to_host``); Python numbers pass.
    """
    global _count
    with _lock:
        _count += 1
    if any(spans_processes(x) for x in jax.tree.leaves(tree)):
        return jax.tree.map(lambda x: to_host(x) if isinstance(x, jax.Array) else x, tree)
    return jax.device_get(tree)


def waits() -> int:
    """How many ``fetch`` calls this process has made (a test reads the difference)."""
    return _count
