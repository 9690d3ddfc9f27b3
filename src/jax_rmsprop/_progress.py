"""A progress bar for long calls: the CLI's sweeps and ``fit(verbose=1)``."""

from __future__ import annotations

import sys
from typing import Any


class Bar:
    """tqdm when it is installed, else a carriage-return line on stderr.

    Drawn from the first report on: a call refused before any work leaves stderr to its
    one-line error.
    """

    def __init__(self, total: int, unit: str = "step", desc: str = "sweep"):
        self.total, self.unit, self.desc = total, unit, desc
        self.bar: Any = None
        self.done = 0
        self.started = False

    def __call__(self, done: int, total: int, postfix: str = "") -> None:
        if not self.started:
            self.started = True
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=self.total, unit=self.unit, desc=self.desc)
            except ImportError:
                self.bar = None
        if self.bar is not None:
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
