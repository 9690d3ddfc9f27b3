"""The order of a sampler's asks and tells in ``tune(sampler=...)``'s batches.

Serially (``tune``'s default), batch k+1 is asked after batch k is told: the sampler
sees every result so far, and the device idles while it works. With
``tune(ask_ahead=True)``, batch k+1 is asked in a thread while batch k trains (the host
proposes while the device computes), and batch k is told once batch k+1 is on the
device (the thread joined first; batch k+2's asks begin after). So the study's calls
come in one fixed order, whatever the timing: batch k+1 is asked after batch k is asked
and batch k-1 told; it sees batch k as pending trials (the
"lies" of ``TPESampler(constant_liar=True)``) instead of their results. The same seeds
give the same trials from run to run, but not the trials of the serial order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from ._storage import ask


class Serial:
    """Asks each batch when it is needed (after the previous one is told)."""

    def __init__(self, study: Any, space: Mapping[str, Any]):
        self.study, self.space = study, dict(space)
        self.sampler_s = 0.0  # seconds in ``study.ask`` (in the thread, for ``AskAhead``)

    def _ask(self, n: int) -> list:
        t = time.perf_counter()
        asked = [ask(self.study, self.space) for _ in range(n)]  # (each beats at once)
        self.sampler_s += time.perf_counter() - t
        return asked

    def batch(self, size: int, left: int) -> list:
        """The next batch to train: ``min(size, left)`` trials, ``left`` still to train."""
        return self._ask(min(size, left))

    def begin(self) -> None:
        """Begins asking the batch after the one ``batch`` gave (once this one's told)."""

    def settle(self) -> None:
        """Returns when the study is the caller's alone again (before a tell)."""

    def unused(self) -> list:
        """Trials asked but never handed over (to be told ``FAIL`` when a tuning stops)."""
        return []

    def ahead(self) -> list:
        """Trials asked for the next batch so far (their heartbeats go on meanwhile)."""
        return []


class AskAhead(Serial):
    """Asks the next batch in a thread while the caller trains this one."""

    def __init__(self, study: Any, space: Mapping[str, Any]):
        super().__init__(study, space)
        self._thread: threading.Thread | None = None
        self._asked: list = []
        self._error: BaseException | None = None
        self._next = 0  # the size of the batch ``begin`` asks

    def batch(self, size: int, left: int) -> list:
        """The trials asked ahead (or asked now, the first time); ``begin`` asks the next."""
        self.settle()
        got, self._asked = self._asked, []
        got = got or self._ask(min(size, left))
        self._next = max(min(size, left - len(got)), 0)
        return got

    def begin(self) -> None:
        if self._next > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._ask_in_thread, args=(self._next,), name="tune-ask-ahead",
                daemon=True,
            )  # fmt: skip
            self._thread.start()
        self._next = 0

    def _ask_in_thread(self, n: int) -> None:
        try:
            self._asked = self._ask(n)
        except BaseException as err:  # raised in the caller's thread, at ``settle``
            self._error = err

    def settle(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def ahead(self) -> list:
        return list(self._asked)

    def unused(self) -> list:
        self.settle()
        got, self._asked = self._asked, []
        return got


def asking(study: Any, space: Mapping[str, Any], ask_ahead: bool) -> Serial:
    """The asking order ``tune(ask_ahead=...)`` chose."""
    return (AskAhead if ask_ahead else Serial)(study, space)
