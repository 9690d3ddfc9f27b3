"""Moving arrays between devices and this host (made for sharing across modules).

``to_host`` gathers a leaf that may span other processes' devices; ``device_copy``
copies a pytree on its devices (a donated carry's values kept for a background write).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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
