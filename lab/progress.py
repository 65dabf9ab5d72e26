"""Progress reporting that works in JupyterLab, in a terminal, and in papermill's saved notebooks.

``tqdm.auto`` draws a live bar in JupyterLab and in terminals. Under papermill a widget bar is
frozen at "0%" in the saved notebook, so batch runs use plain text: ``text`` writes a line every
10% to stderr (for terminals), ``quiet`` writes one line to stdout when the batch is done (for
notebooks that are shared: a stderr stream shows as a pink box in JupyterLab and in the HTML
report, and reads like an error). ``PROMPTLAB_PROGRESS`` (``auto``, ``text``, ``quiet``,
``off``) sets the default; ``python -m lab run-notebook`` sets it to ``quiet`` for the kernels it
starts.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Literal

from .errors import ParameterError
from .names import terminal_text

ProgressMode = Literal["auto", "text", "quiet", "off"] | bool | None


def _mode(progress: ProgressMode) -> str:
    if progress is None:
        progress = os.environ.get("PROMPTLAB_PROGRESS", "auto")  # type: ignore[assignment]
    if progress is True:
        return "auto"
    if progress is False:
        return "off"
    if progress not in ("auto", "text", "quiet", "off"):
        raise ParameterError(f"progress must be 'auto', 'text', 'quiet' or 'off', got {progress!r}")
    return str(progress)


class Progress:
    def __init__(self, total: int, desc: str, progress: ProgressMode = None):
        self.total = total
        self.done = 0
        self.desc = desc = terminal_text(desc)  # a name from a file never drives the terminal
        self.mode = _mode(progress)
        self._bar = None
        self._next_pct = 10
        self._t0 = time.monotonic()
        self._closed = False
        self.counts = {"answered": 0, "escaped": 0, "error": 0}
        if self.mode == "auto" and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="call", leave=True)

    def update(self, outcome: str) -> None:
        self.done += 1
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self._bar is not None:
            self._bar.set_postfix(self.counts, refresh=False)
            self._bar.update(1)
        elif self.mode == "text" and self.total:
            pct = 100 * self.done // self.total
            if pct >= self._next_pct or self.done == self.total:
                self._line()
                self._next_pct = (pct // 10 + 1) * 10

    def line(self) -> str:
        """``<desc>: 8/8 calls (answered 6, escaped 2, error 0) in 3.1s``."""
        elapsed = time.monotonic() - self._t0
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"{self.desc}: {self.done}/{self.total} calls ({counts}) in {elapsed:.1f}s"

    def _line(self) -> None:
        print(self.line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "quiet" and self.total and not self._closed:
            print(self.line(), file=sys.stdout, flush=True)
        self._closed = True
