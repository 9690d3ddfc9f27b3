"""Ctrl-C and SIGTERM during a long call, taken at the next epoch boundary.

A scheduler or a preempted cloud machine sends SIGTERM; a user presses Ctrl-C. Raising at
once would leave the epoch in flight half-done and its donated inputs gone, so
``Interrupts`` only records the signal (and says so on stderr); the loop checks ``requested``
after each epoch, saves, and stops. A second Ctrl-C raises ``KeyboardInterrupt`` at once.
Handlers are installed only in the main thread (Python delivers signals there) and the
previous ones are restored on exit.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any


class Interrupts:
    """A context that turns SIGINT and SIGTERM into a request to stop at a boundary."""

    def __init__(self) -> None:
        self.requested: str | None = None  # the signal's name once one arrived
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.requested is None:  # said at once: the work in flight may take a while
            print(
                f"\n{signal.Signals(signum).name}: stopping once the work in flight (an "
                "epoch, a chunk, a batch of trials) has finished, keeping it (Ctrl-C again: "
                "stop now, losing it)",
                file=sys.stderr,
                flush=True,
            )
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during ``fit``, ``sweep`` or ``tune``, after saving what finished.

    One type to catch for all three ([`FitInterrupted`][jax_rmsprop.FitInterrupted] and
    [`SweepInterrupted`][jax_rmsprop.SweepInterrupted] are its
    kinds). Uncaught, it ends a script as Ctrl-C does.

    Attributes:
      partial: what finished (a [`History`][jax_rmsprop.History],
        [`SweepResult`][jax_rmsprop.SweepResult] or [`TuneResult`][jax_rmsprop.TuneResult]).
      checkpoint: the checkpoint file holding it (run the same call to go on), or
        ``None`` without ``checkpoint``.
    """

    partial: Any
    checkpoint: Any


class FitInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during [`fit`][jax_rmsprop.fit], stopped at an epoch boundary.

    Attributes:
      partial: the [`History`][jax_rmsprop.History] of the epochs that finished.
      checkpoint: the checkpoint file holding them (the same call resumes from the next
        epoch), or ``None`` without ``checkpoint``.
      signal: ``"SIGINT"`` or ``"SIGTERM"``.
    """

    def __init__(self, partial: Any, checkpoint: Any, signal_name: str):
        epochs = len(partial.loss) if partial is not None else 0
        super().__init__(f"fit interrupted by {signal_name} after {epochs} epochs")
        self.partial = partial
        self.checkpoint = checkpoint
        self.signal = signal_name
