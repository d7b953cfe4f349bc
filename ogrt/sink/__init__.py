"""`ogrt sink`: consume records from NATS JetStream into the configured outputs (ogrt/sink/consumer.py)."""
from __future__ import annotations

import asyncio
import sys

from ogrt.filemodes import restrict_umask
from ogrt.lifecycle import setup_logging
from ogrt.sink.config import SinkConfig

__all__ = ["run"]


def run(config: SinkConfig) -> int:
    """Run in the foreground until SIGTERM/SIGINT (the batch in hand is finished); exit code."""
    from ogrt.sink.consumer import READY_LINE, Sink, serve

    setup_logging(config.sink.log_level)
    restrict_umask()  # as the daemon: the outputs' files 0640, directories 0750 at most

    def ready(sink: Sink) -> None:
        print(f"{READY_LINE} stream={sink.source['stream']} durable={sink.source['durable']}",
              file=sys.stderr, flush=True)

    return asyncio.run(serve(config, ready))
