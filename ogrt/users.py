"""uid → user name on the daemon host, via pwd, cached (bounded, with expiry)."""
from __future__ import annotations

import pwd
import threading
import time

from ogrt.textenc import escape

__all__ = ["UserCache"]


class UserCache:
    """Thread-safe LRU of getpwuid() results (hits and misses), entries live `ttl` seconds."""

    def __init__(self, max_entries: int = 4096, ttl: float = 600.0) -> None:
        self._max = max_entries
        self._ttl = ttl
        self._cache: dict[int, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, uid: int) -> str | None:
        now = time.monotonic()
        hit = self._cache.get(uid)  # a plain dict read is atomic under the GIL
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            name: str | None = escape(pwd.getpwuid(uid).pw_name.encode("utf-8", "surrogateescape"))
        except (KeyError, OverflowError, ValueError):
            name = None
        with self._lock:
            self._cache.pop(uid, None)
            self._cache[uid] = (now + self._ttl, name)  # newest last
            while len(self._cache) > self._max:
                del self._cache[next(iter(self._cache))]
        return name
