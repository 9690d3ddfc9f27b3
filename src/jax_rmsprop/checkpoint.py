"""Saving and restoring pytrees (parameters, optimizer state) as NumPy ``.npz`` files.

The optimizer state is a plain pytree ([`RMSPropState`][jax_rmsprop.RMSPropState] with the step
count inside), so a run resumed from a checkpoint continues bit for bit: schedules read
the restored count, and every array is stored with its exact bits (bfloat16 included,
which ``.npz`` cannot hold natively, is stored as its raw 16-bit pattern).

``restore`` needs a template of the tree it expects (e.g. ``tx.init(params)``): it
checks every path, shape and dtype against it and raises ``ValueError`` naming each
mismatch, instead of silently loading a state that belongs to another optimizer. The
restored arrays are placed with the template's shardings.

``save`` and ``restore`` read a path the same way: ``.npz`` is added when it is missing.
A save writes a temporary file beside the target and renames it into place
(``os.replace``), so a save interrupted half-way leaves the previous checkpoint whole.

For parameters sharded across hosts, or asynchronous saves, use orbax
(``orbax.checkpoint.StandardCheckpointer``): [`RMSPropState`][jax_rmsprop.RMSPropState] is a plain
pytree and round-trips through it bit for bit (``tests/persistence/test_checkpoint.py``).

Example:
  >>> import jax.numpy as jnp, tempfile, os
  >>> import jax_rmsprop
  >>> from jax_rmsprop import checkpoint
  >>> tx = jax_rmsprop.rmsprop(0.1, momentum=0.9)
  >>> params = {"w": jnp.ones(3)}
  >>> state = tx.init(params)
  >>> path = os.path.join(tempfile.mkdtemp(), "ckpt")
  >>> checkpoint.save(path, {"params": params, "opt_state": state}).name
  'ckpt.npz'
  >>> back = checkpoint.restore(path, {"params": params, "opt_state": tx.init(params)})
  >>> int(back["opt_state"].count)
  0
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._host import spans_processes, to_host

_DTYPE_PREFIX = "__dtype__/"
_METADATA = "__metadata__"
_PACKED, _LAYOUT = "__packed__", "__layout__"
_RAW = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _entries(tree: Any) -> tuple[dict[str, Any], Any]:
    """The leaves of ``tree`` by key path (in flattening order), and its treedef."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for path, leaf in leaves:
        key = jax.tree_util.keystr(path) or "<root>"
        if key in out:  # pragma: no cover - keystr is injective for standard containers
            raise ValueError(f"checkpoint: two leaves share the path {key!r}.")
        out[key] = leaf
    return out, treedef


def is_key(a: Any) -> bool:
    """Whether ``a`` is a typed ``jax.random`` key (array or abstract value)."""
    dtype = getattr(a, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def key_data(tree: Any) -> Any:
    """``tree`` with each typed key replaced by its raw data (``jax.random.key_data``).

    Keys (a Flax NNX module's RNG streams, a shuffling key) have no NumPy form: they are
    stored and moved to the host as their data, and ``with_keys`` wraps them again.
    """
    return jax.tree.map(lambda a: jax.random.key_data(a) if is_key(a) else a, tree)


def with_keys(tree: Any, like: Any) -> Any:
    """``tree`` (from ``key_data``) with the keys of ``like`` wrapped again."""

    def wrap(a, want):
        if is_key(want) and not is_key(a):  # (the key dtype names its implementation)
            return jax.random.wrap_key_data(a, impl=want.dtype._impl)
        return a

    return jax.tree.map(wrap, tree, like)


def _key_data_like(like: Any) -> Any:
    """``like`` with each key leaf replaced by the abstract value of its data."""
    return jax.tree.map(lambda a: jax.eval_shape(jax.random.key_data, a) if is_key(a) else a, like)


def _npz(path: str | os.PathLike) -> Path:
    """The one path rule of ``save`` and ``restore``: ``.npz`` added if missing."""
    p = Path(path)
    return p if p.name.endswith(".npz") else p.with_name(p.name + ".npz")


def save(path: str | os.PathLike, tree: Any, metadata: Any = None, packed: bool = False) -> Path:
    """Writes every leaf of ``tree`` to ``path`` (a ``.npz`` file), bit for bit, atomically.

    Args:
      path: file to write; ``.npz`` is added if missing.
      tree: any pytree of arrays (parameters, optimizer state, both in a dict).
      metadata: anything JSON can hold, read back by ``metadata``.
      packed: store every leaf's bytes in one buffer (two members in the file instead of
        one per leaf: several times faster to write for many small leaves).

    Returns:
      The path written.
    """
    arrays = {} if metadata is None else {_METADATA: np.array(json.dumps(metadata))}
    entries = _entries(key_data(tree))[0]
    hosted = jax.device_get([to_host(a) if spans_processes(a) else a for a in entries.values()])
    if packed:
        hosted = [np.asarray(a) for a in hosted]  # (tobytes: C order, any layout)
        layout = [(key, a.dtype.name, a.shape, a.nbytes) for key, a in zip(entries, hosted)]
        arrays[_LAYOUT] = np.array(json.dumps(layout))
        arrays[_PACKED] = np.frombuffer(b"".join(a.tobytes() for a in hosted), np.uint8)
        hosted = []
    for key, a in zip(entries, hosted):
        a = np.asarray(a)
        arrays[key] = a
        if _is_ml(a):  # bfloat16, float8_*... do not survive .npz: their raw bits, and a tag
            arrays[key] = a.view(_RAW[a.dtype.itemsize])
            arrays[_DTYPE_PREFIX + key] = np.array(a.dtype.name)
    target = _npz(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # (numpy's stubs type **kwds as its keyword-only ``allow_pickle: bool``)
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def metadata(path: str | os.PathLike) -> Any:
    """The ``metadata`` that ``save`` wrote to ``path`` (``None`` if it wrote none)."""
    # (the file is opened here so that it is closed when np.load fails on a bad file)
    with open(_npz(path), "rb") as raw, np.load(raw) as f:
        return json.loads(str(f[_METADATA])) if _METADATA in f.files else None


def _is_ml(a: np.ndarray) -> bool:
    return a.dtype.type.__module__.startswith("ml_dtypes")


def restore(path: str | os.PathLike, like: Any, host: bool = False) -> Any:
    """Reads a checkpoint written by ``save`` into the structure of ``like``.

    Args:
      path: the ``.npz`` file (``.npz`` is added if missing, as ``save`` does).
      like: a pytree with the expected structure, shapes and dtypes, e.g.
        ``tx.init(params)`` or ``{"params": params, "opt_state": tx.init(params)}``;
        abstract values work too (``jax.eval_shape(tx.init, params)``, nothing is
        allocated). Its arrays' shardings are given to the restored arrays.
      host: return NumPy arrays (on the host, float64 kept as it is) instead.

    Returns:
      A pytree with the structure of ``like`` and the checkpoint's values (typed keys
      are stored as their data; with ``host`` they stay data, see ``with_keys``).

    Raises:
      ValueError: if the checkpoint lacks a leaf of ``like``, holds a leaf that ``like``
        has not, or a leaf's shape or dtype differs; every mismatch is listed.
    """
    with open(_npz(path), "rb") as raw, np.load(raw) as f:
        stored = {k: f[k] for k in f.files}
    values = {}  # key path -> array in its saved dtype (raw bits viewed back)
    for key, a in stored.items():
        if not key.startswith(_DTYPE_PREFIX) and key not in (_METADATA, _PACKED, _LAYOUT):
            dtype = jnp.dtype(str(stored.get(_DTYPE_PREFIX + key, a.dtype.name)))
            values[key] = a if a.dtype == dtype else a.view(dtype)
    if _PACKED in stored:  # save(..., packed=True): slices of one buffer
        offset, buffer = 0, stored[_PACKED]
        for key, dtype, shape, nbytes in json.loads(str(stored[_LAYOUT])):
            raw = buffer[offset : offset + nbytes]
            values[key] = raw.view(jnp.dtype(dtype)).reshape(tuple(shape))
            offset += nbytes
    expected, treedef = _entries(_key_data_like(like))
    problems = []
    missing = sorted(set(expected) - set(values))
    extra = sorted(set(values) - set(expected))
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing)}")
    if extra:
        problems.append(f"in the checkpoint but not in `like`: {', '.join(extra)}")
    for key in sorted(set(expected) & set(values)):
        want, got = expected[key], values[key]
        want_dtype = jnp.dtype(want.dtype if hasattr(want, "dtype") else np.asarray(want).dtype)
        want_shape = tuple(want.shape if hasattr(want, "shape") else np.shape(want))
        if got.shape != want_shape:
            problems.append(f"{key}: shape {got.shape} in the checkpoint, {want_shape} expected")
        if got.dtype != want_dtype:
            problems.append(f"{key}: dtype {got.dtype} in the checkpoint, {want_dtype} expected")
    if problems:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} does not match the tree it is restored into:\n  "
            + "\n  ".join(problems)
        )

    out = []
    for key, want in expected.items():
        sharding = getattr(want, "sharding", None)
        a = values[key]
        if host:
            out.append(a)
        else:
            out.append(jax.device_put(a, sharding) if sharding is not None else jnp.asarray(a))
    tree = jax.tree_util.tree_unflatten(treedef, out)
    return tree if host else with_keys(tree, like)
