"""Rate-limited logging: bad input from the network must not flood the log."""
from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """At most `burst` messages per key per `interval` seconds; later says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, burst: int = 5) -> None:
        self._log = logger
        self._interval = interval
        self._burst = burst
        self._state: dict[str, list[float]] = {}  # key → [window start, count in window]
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            state = self._state.get(key)
            if state is None or now - state[0] >= self._interval:
                suppressed = int(state[1]) - self._burst if state is not None and state[1] > self._burst else 0
                if len(self._state) > 1024:  # keys are reasons, but stay bounded anyway
                    self._state.clear()
                self._state[key] = [now, 1]
            else:
                state[1] += 1
                suppressed = 0
                if state[1] > self._burst:
                    return
        if suppressed:
            self._log.log(level, "(%d similar messages about %s suppressed)", suppressed, key)
        self._log.log(level, msg, *args)
