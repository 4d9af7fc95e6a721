"""A dependency-free progress bar for long runs (stderr; plain lines when not a terminal)."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, total: int, label: str, enabled: bool = True, stream=None):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_decile = -1

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        frac = done / self.total if self.total else 1.0
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        text = (f"{self.label:>12} {done:>6}/{self.total} {100 * frac:5.1f}% "
                f"{elapsed:6.1f}s elapsed, {eta:6.1f}s left  {note}")
        if self.tty:
            width = 24
            fill = int(width * frac)
            self.stream.write("\r" + f"[{'#' * fill}{'.' * (width - fill)}] " + text)
            self.stream.flush()
        elif int(frac * 10) > self._last_decile:
            self._last_decile = int(frac * 10)
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
