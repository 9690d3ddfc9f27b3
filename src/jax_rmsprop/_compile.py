"""``jax.jit`` for the training programs, with XLA's region-based copy insertion.

On CPU, JAX lowers the threefry hash behind ``jax.random`` (dropout's masks, a module's
``fold_in`` of its RNG stream) as a rolled loop. Inside a training epoch's own loop, XLA's
default copy insertion copies that loop's carried values at every iteration (13 copies a
round, 5 rounds, twice a step for a model with one ``Dropout``); its region-based analysis
(``xla_cpu_copy_insertion_use_region_analysis``) keeps 17 fewer copies per step. Measured
(``bench/RESULTS.md``, 2026-12-01, session 10): the dropout + batch-norm NNX digits epoch
4-5% faster, a vmapped sweep of that model 10-15%, an MLP without dropout the same,
compiles no slower (4.95 s against 5.76 s for a 20-layer model), results bit for bit
equal. The GPU and TPU compilers read their own options, not this CPU one (no GPU was
lent to measure it there). An XLA that lacks the option (option names belong to the XLA
build) gets the plain program.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def training_jit(fun: Callable, **kwargs: Any) -> Any:
    """``jax.jit(fun, **kwargs)`` compiled with ``OPTIONS`` where XLA knows them.

    The result is called, lowered and counted (``_cache_size``) as a jitted function.
    """
    plain = jax.jit(fun, **kwargs)
    try:
        tuned = jax.jit(fun, compiler_options=OPTIONS, **kwargs)
    except TypeError:  # (a jax.jit without compiler_options)
        return plain

    @functools.wraps(fun)
    def call(*args: Any, **kw: Any) -> Any:
        return (tuned if _known() else plain)(*args, **kw)

    call.lower = lambda *a, **k: (tuned if _known() else plain).lower(*a, **k)  # type: ignore[attr-defined]
    call._cache_size = lambda: (tuned if _known() else plain)._cache_size()  # type: ignore[attr-defined]
    return call


@functools.cache
def _known() -> bool:
    """Whether this XLA takes ``OPTIONS`` (one trivial compile, the first time)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=OPTIONS)(0)
    except jax.errors.JaxRuntimeError as err:
        if "No such compile option" not in str(err):
            raise
        return False
    return True
