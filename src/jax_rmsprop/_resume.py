"""Resumable runs: the checkpoint that ``fit`` and training sweeps keep at their boundaries.

A checkpoint is one ``.npz`` file in the run's directory (``fit.npz``, ``sweep.npz``),
written atomically by ``save`` (a temporary file renamed into
place), so a write interrupted half-way leaves the last good one whole. Beside the arrays
it holds the call's *fingerprint*, a description of everything that decides the numbers
(shapes, digests of the values, hyperparameters), and the loop's position. A call that
finds a checkpoint with another fingerprint refuses it, naming what differs.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import checkpoint as ckpt
from ._host import to_host


class CheckpointMismatch(ValueError):
    """A checkpoint written by a different call: the message lists what differs."""


class CheckpointCorrupt(ValueError):
    """A checkpoint file that cannot be read (garbage, truncated, empty, another format)."""


def _why(err: BaseException, path: Path) -> str:
    """What is wrong with an unreadable checkpoint file, in words."""
    if isinstance(err, EOFError) or (path.exists() and path.stat().st_size == 0):
        return "the file is empty"
    if isinstance(err, zipfile.BadZipFile):
        return "not a complete .npz file: truncated, or another format"
    if isinstance(err, ValueError):  # NumPy's refusal of pickled data, never bypassed
        return "not an .npz file of arrays: another format, or pickled objects"
    return f"{type(err).__name__}: {str(err)[:80]}"


def _unreadable(call: str, path: Path, why: str) -> CheckpointCorrupt:
    return CheckpointCorrupt(
        f"`{call}(checkpoint=...)`: {path} is not a readable jax-rmsprop checkpoint ({why}); "
        "delete it (or pass --restart, or another directory) to start afresh."
    )


def describe(tree: Any) -> str:
    """The structure, shapes and dtypes of ``tree`` (no values), as text."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = ", ".join(f"{a.dtype}{list(np.shape(a))}" for a in leaves)
    return f"{treedef} [{shapes}]"


def digest(tree: Any) -> str:
    """A SHA-256 of ``tree``'s structure and every leaf's shape, dtype and bytes."""
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(tree)
    h.update(str(treedef).encode())
    for leaf in leaves:
        a = to_host(jax.random.key_data(leaf) if ckpt.is_key(leaf) else leaf)
        h.update(f"{a.dtype.name}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).view(np.uint8).tobytes())
    return h.hexdigest()[:16]


def fingerprint(
    *,
    functions: Mapping[str, Callable] | None = None,
    layouts: Mapping[str, Any] | None = None,
    digests: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    grid: tuple[Any, Any] | None = None,
    data: tuple[Any, Any, int] | None = None,
) -> dict[str, str]:
    """A call's fingerprint: what decides its numbers, as text, entry by entry.

    ``functions`` by ``module.qualname``; ``layouts`` by structure, shapes and dtypes;
    ``digests`` by a hash of their values (``None`` as ``"None"`` in both); ``texts`` as
    given; ``settings`` by ``repr``; ``grid``, ``(names, cells)``, as one entry; ``data``,
    ``(data, validation, batch_size)``, as ``data_entries``.
    """
    out = {k: name_of(f) for k, f in (functions or {}).items()}
    out |= {k: "None" if t is None else describe(t) for k, t in (layouts or {}).items()}
    out |= {k: "None" if t is None else digest(t) for k, t in (digests or {}).items()}
    out |= dict(texts or {})
    out |= {k: repr(v) for k, v in (settings or {}).items()}
    if grid is not None:
        out["grid"] = grid_entry(*grid)
    if data is not None:
        out |= data_entries(*data)
    return out


def stacked(tree: Any, *lead: int) -> Any:
    """``tree``'s abstract leaves with the leading axes ``lead`` (a restore template)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct((*lead, *a.shape), a.dtype), tree)


def data_entries(data: Any, validation: Any, batch_size: int) -> dict[str, str]:
    """A fingerprint's entries for training data: shapes, digests of values, batch size."""
    none = validation is None
    return {
        "data": describe(data),
        "data values": digest(data),
        "validation": "None" if none else describe(validation),
        "validation values": "None" if none else digest(validation),
        "batch_size": str(int(batch_size)),
    }


def grid_entry(names: Any, cells: Any) -> str:
    """A fingerprint's entry for a sweep's configurations: their names and a digest."""
    return f"{list(names)} {digest([np.asarray(c) for c in cells])}"


def name_of(fn: Callable) -> str:
    """``module.qualname`` of a function (of a ``Partial``'s function)."""
    fn = getattr(fn, "func", fn)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


PACE = 39  # after a write of w seconds the writer rests PACE * w: 2.5% of the time at most


class Resume:
    """The checkpoint file ``directory/<kind>.npz`` of one call, identified by ``fingerprint``.

    Writes happen in a background thread while the next epoch (or chunk) runs, paced so
    that they take at most 2.5% of the time: after a write of ``w`` seconds the writer
    rests ``39 w``, and the boundaries that end meanwhile are not written (``ready``
    says so, before anything is copied). A boundary that takes longer than that is
    always written; ``flush`` writes the last one given and waits for it.
    """

    def __init__(self, directory: str | os.PathLike, kind: str, fingerprint: dict[str, str]):
        self.path = Path(directory) / f"{kind}.npz"
        self.fingerprint = fingerprint
        self.call = kind
        self._cv = threading.Condition()
        self._waiting: tuple[Any, Callable[[], dict]] | None = None
        self._busy = False  # writing or resting
        self._flushing = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # a killed write's
            stale.unlink(missing_ok=True)

    def ready(self) -> bool:
        """Whether a boundary given now would be written (the writer is idle)."""
        return not self._busy

    def load(self, like: Callable[[dict], Any], host: bool = False) -> tuple[Any, dict] | None:
        """``(arrays, position)`` from the checkpoint, or ``None`` if there is none yet.

        ``like(position)`` gives the template of the arrays (see ``checkpoint.restore``,
        as is ``host``).

        Raises:
          CheckpointMismatch: the checkpoint was written by a call with another
            fingerprint; the message lists every entry that differs, with both values.
          CheckpointCorrupt: the file cannot be read as a checkpoint of this library.
        """
        if not self.path.exists():
            return None
        try:
            meta = ckpt.metadata(self.path)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise _unreadable(self.call, self.path, _why(err, self.path)) from None
        if not isinstance(meta, dict) or "fingerprint" not in meta or "position" not in meta:
            raise _unreadable(self.call, self.path, "it holds no fingerprint")
        stored = meta["fingerprint"]
        differs = [
            f"{k}: {stored.get(k, '(absent)')!s} in the checkpoint, "
            f"{self.fingerprint.get(k, '(absent)')!s} in this call"
            for k in sorted(set(stored) | set(self.fingerprint))
            if stored.get(k) != self.fingerprint.get(k)
        ]
        if differs:
            raise CheckpointMismatch(
                f"`{self.call}(checkpoint=...)`: {self.path} was written by a different call "
                "(delete it, or pass another directory, to start afresh):\n  "
                + "\n  ".join(differs)
            )
        position = meta["position"]
        try:
            return ckpt.restore(self.path, like(position), host), position
        except (OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise _unreadable(self.call, self.path, _why(err, self.path)) from None

    def save(self, arrays: Any, position: Callable[[], dict]) -> None:
        """Writes ``arrays`` and the loop's ``position()`` (JSON) atomically, in the background.

        ``arrays`` must not be donated afterwards (pass copies); ``position`` is called in
        the writer, so reading device values there does not hold up the caller.
        """
        with self._cv:
            self._raise()
            self._waiting = (arrays, position)
            if not self._busy:
                self._busy = True
                # not a daemon: the interpreter lets it finish its write before it exits
                self._thread = threading.Thread(target=self._write)
                self._thread.start()

    def _write(self) -> None:
        while True:
            with self._cv:
                if self._waiting is None or self._error is not None:
                    self._busy = False
                    self._cv.notify_all()
                    return
                arrays, position = self._waiting
                self._waiting = None
            start = time.perf_counter()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                meta = {"fingerprint": self.fingerprint, "position": position()}
                ckpt.save(self.path, arrays, meta, packed=True)
            except BaseException as err:  # re-raised in the caller's thread
                with self._cv:
                    self._error = err
            del arrays, position  # the device buffers are freed here, not at thread exit
            rest = PACE * (time.perf_counter() - start)
            with self._cv:
                self._cv.wait_for(lambda: self._flushing, timeout=rest)

    def flush(self) -> None:
        """Waits until the last state given to ``save`` is written."""
        with self._cv:
            self._flushing = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._cv:
            self._flushing = False
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
