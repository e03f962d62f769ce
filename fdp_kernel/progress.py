"""Progress for long steps, on standard error: a live line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.start = time.perf_counter()
        self._live = enabled and self.stream.isatty()

    def step(self, message: str) -> None:
        """Announce a new step."""
        if self.enabled:
            self.stream.write(f"[{self._elapsed()}] {message}\n")
            self.stream.flush()

    def count(self, message: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` within a step (a live line on a terminal)."""
        if not self.enabled:
            return
        if self._live:
            self.stream.write(f"\r[{self._elapsed()}] {message} {done}/{total}")
            if done == total:
                self.stream.write("\n")
            self.stream.flush()
        elif done == total or done % max(1, total // 4) == 0:
            self.stream.write(f"[{self._elapsed()}] {message} {done}/{total}\n")
            self.stream.flush()

    def _elapsed(self) -> str:
        seconds = time.perf_counter() - self.start
        return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


class Silent(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False)
