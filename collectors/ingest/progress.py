"""A one-line progress bar (rows, MB/s, share done) on a terminal; silent when output is not a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None, every_s: float = 0.2):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.every_s = every_s
        self._name = ""
        self._total = 0
        self._start = 0.0
        self._last = 0.0
        self._shown = False

    def start(self, name: str, total_bytes: int) -> None:
        self._name, self._total = name, total_bytes
        self._start = self._last = time.monotonic()

    def update(self, done_bytes: int, rows: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-6)
        share = done_bytes / self._total if self._total else 1.0
        width = 24
        filled = int(width * min(share, 1.0))
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"\r{self._name[-40:]:<40} [{bar}] {share:6.1%}  {rows:>12,} rows  "
            f"{done_bytes / elapsed / 1e6:7.1f} MB/s"
        )
        self.stream.write(line)
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()
        self._shown = False
