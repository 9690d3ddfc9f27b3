"""A progress bar for long calls: the CLI's sweeps and ``fit(verbose=1)``."""

from __future__ import annotations

import sys
import time
from typing import Any


class Bar:
    """tqdm when it is installed, else a carriage-return line on stderr.

    Drawn from the first report on: a call refused before any work leaves stderr to its
    one-line error. Its clock starts when the bar is made, not at the first report: the
    work before that report (compiling, the first chunk) counts in the rate. The total is
    the one each report gives (a successive-halving sweep learns its rungs' sizes).

    With ``compiled`` (the closed-form sweeps: one program), the first report says that
    the program is compiled and running: it prints ``compiled``, with the seconds taken,
    as its own line, and the bar's clock starts there, so its rate is the run's alone.
    """

    def __init__(
        self, total: int, unit: str = "step", desc: str = "sweep", compiled: str | None = None
    ):
        self.total, self.unit, self.desc, self.compiled = total, unit, desc, compiled
        self.bar: Any = None
        self.done = 0
        self.started = False
        self.t0 = time.monotonic()

    def _start(self, total: int) -> None:
        self.started = True
        self.total = total
        if self.compiled is not None:
            took = time.monotonic() - self.t0
            print(f"{self.desc}: {self.compiled} in {took:.2f} s; running:", file=sys.stderr)
            self.t0 = time.monotonic()
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit=self.unit, desc=self.desc)
            # tqdm's clock from the start of the work, not from this first report
            shift = time.monotonic() - self.t0
            self.bar.start_t -= shift
            self.bar.last_print_t -= shift
        except ImportError:
            self.bar = None

    def __call__(self, done: int, total: int, postfix: str = "") -> None:
        if not self.started:
            self._start(total)
            if self.compiled is not None and done == 0:
                return  # the compile's report: the run starts now
        if self.bar is not None:
            if total != self.bar.total:
                self.bar.total = total
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(done - self.done)
        else:
            tail = f" - {postfix}" if postfix else ""
            print(f"\r{self.desc}: {done}/{total} {self.unit}s{tail}", end="", file=sys.stderr)
        self.done = done

    def close(self) -> None:
        if self.done < 0 or not self.started:  # closed already, or never drawn
            self.done = -1
            return
        if self.bar is not None:
            self.bar.close()
        else:
            print(file=sys.stderr)
        self.done = -1
