"""Ingestion progress for a person: one line rewritten in place on a terminal, a dated line now and then in a log."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from ingest.progress import Progress

LOG_EVERY_S = 15.0  # a non-interactive log gets a line this often, not one per batch


class ProgressLine:
    def __init__(self, stream: TextIO | None = None, log_every_s: float = LOG_EVERY_S):
        self.stream, self.log_every_s = stream or sys.stderr, log_every_s
        self.interactive = self.stream.isatty()
        self.started = time.monotonic()
        self._logged_at: float | None = None  # the first batch is logged at once: the job has started
        self._width = 0
        self._unlogged: str | None = None  # the latest line a log has not had yet: it gets it at the end
        # On a terminal a log record would be written after the line, on the same row: clear the row first (the next
        # update draws the line again under it).
        self._handlers = [h for name in ("", "ray", "ray.data") for h in logging.getLogger(name).handlers]
        if self.interactive:
            for handler in self._handlers:
                handler.addFilter(self._clear_row)

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        line = f"ingest: {progress.summary()}, {elapsed:.0f} s"
        if self.interactive:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        elif self._logged_at is None or now - self._logged_at >= self.log_every_s:
            self._log(line)
            self._logged_at = now
        else:
            self._unlogged = line
        self.stream.flush()

    def _clear_row(self, record: logging.LogRecord) -> bool:
        if self._width:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._width = 0
        return True

    def _log(self, line: str) -> None:
        self.stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self._unlogged = None

    def close(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self._clear_row)
        if self.interactive and self._width:
            self.stream.write("\n")
        elif self._unlogged:
            self._log(self._unlogged)
        self.stream.flush()
