"""A one-line progress indicator on standard error, shown only on a terminal.

Each stage prints ``nnr: <what> ... <seconds>`` and keeps the seconds ticking while the work
runs (a background thread redraws the line), then ends the line with the time it took.
Nothing is printed when standard error is not a terminal or progress is turned off.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, TextIO


class Progress:
    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None,
                 interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.interval = interval

    @contextmanager
    def stage(self, what: str) -> Iterator[None]:
        """Time the work inside the ``with`` block under the label ``what``."""
        start = time.perf_counter()
        if not self.enabled:
            yield
            return
        done = threading.Event()

        def draw(end: str = "") -> None:
            self.stream.write(f"\r\033[Knnr: {what} ... {time.perf_counter() - start:.1f} s{end}")
            self.stream.flush()

        def tick() -> None:
            while not done.wait(self.interval):
                draw()
        thread = threading.Thread(target=tick, daemon=True)
        draw()
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            draw("\n")
