"""What every `ogrt server` process (single, supervisor or worker) does the same way."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

__all__ = ["READY_LINE", "setup_logging", "install_stop_signals"]

#: printed on stderr once every socket is bound (tests and scripts wait for it)
READY_LINE = "ogrt server ready"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        stream=sys.stderr,
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop` (call from inside the running loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
