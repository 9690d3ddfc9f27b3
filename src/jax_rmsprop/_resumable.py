"""The one resumable loop of ``fit``, ``sweep`` and ``tune``.

    with resumable("fit", directory, "fit", fingerprint) as loop:
        got = loop.load(like)                      # (arrays, position) or None
        for epoch in ...:
            ...                                     # one epoch (or chunk) on the devices
            loop.boundary(copies, position, last)   # written in the background when due
            if loop.requested:                      # Ctrl-C / SIGTERM: stop here
                break

It owns, for all three: the checkpoint (``_resume.Resume``: load with the fingerprint
check, atomic writes paced to <= 2.5% of the time, in a background thread), Ctrl-C and
SIGTERM (``_signals.Interrupts``: recorded, acted on at the next boundary; a second
Ctrl-C raises ``KeyboardInterrupt`` at once), and leaving: the last boundary given is
written and waited for however the block ends, and a multi-process collective that
fails because another process died becomes ``ProcessLost`` (``_faults.translate``).
What a call does with an interruption (``FitInterrupted``, ``SweepInterrupted``) stays
with the call.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax

from ._faults import translate
from ._resume import Resume
from ._signals import Interrupts


class Loop:
    """A running loop's checkpoint (if any) and the interruption it was asked for."""

    def __init__(self, resume: Resume | None, signals: Interrupts):
        self._resume, self._signals = resume, signals

    @property
    def path(self) -> Path | None:
        """The checkpoint file, or ``None`` without a checkpoint."""
        return None if self._resume is None else self._resume.path

    @property
    def requested(self) -> str | None:
        """The signal (``"SIGINT"``, ``"SIGTERM"``) that asked to stop, or ``None``."""
        return self._signals.requested

    def load(self, like: Callable[[dict], Any], host: bool = False) -> tuple[Any, dict] | None:
        """``(arrays, position)`` from the checkpoint, or ``None`` (none yet, or no checkpoint).

        See ``Resume.load`` (``CheckpointMismatch``, ``CheckpointCorrupt``).
        """
        return None if self._resume is None else self._resume.load(like, host)

    def boundary(
        self, arrays: Callable[[], Any], position: Callable[[], dict], last: bool = False
    ) -> None:
        """Saves ``arrays()`` and ``position()`` if the writer is idle, or if ``last``.

        ``arrays`` is called only then (copies of donated buffers cost nothing otherwise);
        a boundary where the loop stops (its end, or ``requested``) passes ``last``.
        """
        if self._resume is not None and (last or self._resume.ready()):
            self._resume.save(arrays(), position)


@contextlib.contextmanager
def resumable(
    call: str,
    directory: str | os.PathLike | None,
    kind: str,
    fingerprint: Callable[[], dict[str, str]],
) -> Iterator[Loop]:
    """The loop's context: ``fingerprint()`` is computed only with a ``directory``."""
    resume = None if directory is None else Resume(directory, kind, fingerprint())
    with Interrupts() as signals:
        loop = Loop(resume, signals)
        try:
            yield loop
        except jax.errors.JaxRuntimeError as err:  # another process died?
            raise translate(err, call, loop.path) from err
        finally:  # what was given is written, however the loop ended
            if resume is not None:
                resume.flush()
