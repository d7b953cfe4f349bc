"""`ogrt relay`: the node-local relay (issue 11; README "Node relay", protocol/relay.md).

Lifecycle: bind the Unix datagram socket (`[relay] socket`, mode 0666), say "ready" on
stderr, take datagrams (ogrt/relay/receive.py) and forward them in batches
(ogrt/relay/forward.py) until SIGTERM/SIGINT; then remove the socket file (libraries fall
back to their direct transport), read what the socket still holds, deliver what memory holds
for up to `drain_timeout` s, spool the rest and exit 0.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections import deque

from ogrt.config import Config

__all__ = ["run", "serve", "READY_LINE"]

READY_LINE = "ogrt relay ready"
log = logging.getLogger("ogrt.relay")


async def serve(config: Config, stop: asyncio.Event | None = None) -> int:
    from ogrt.lifecycle import install_stop_signals
    from ogrt.metrics import Counters, merge, serve_metrics
    from ogrt.relay.forward import Forwarder
    from ogrt.relay.receive import DatagramSocket, bind_datagram_socket

    rc = config.relay
    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    loop = asyncio.get_running_loop()
    counters = Counters()
    try:
        forwarder = Forwarder(rc, counters)
        sock, queued = bind_datagram_socket(rc.socket, rc.rcvbuf, rc.queue_length)
    except OSError as e:
        log.error("cannot start: %s", e)
        return 1
    # the reader thread hands record frames to the loop through a deque, one wake-up at a time
    handed: deque[bytes] = deque()
    scheduled = [False]

    def take() -> None:
        scheduled[0] = False
        while handed:
            forwarder.add(handed.popleft())

    def emit(frame: bytes) -> None:  # the reader thread
        handed.append(frame)
        if not scheduled[0]:
            scheduled[0] = True
            loop.call_soon_threadsafe(take)

    rx_counters = Counters()
    rx = DatagramSocket(sock, emit, rx_counters, rc.max_frame_bytes, rc.fragment_timeout, rc.fragment_max_bytes,
                        queued)
    reader = threading.Thread(target=rx.run, name="relay-socket", daemon=True)
    reader.start()

    async def collect() -> dict[str, float]:
        return merge([counters.snapshot(), rx_counters.snapshot(), forwarder.gauges(),
                      {"ogrt_fragments_pending": float(len(rx.reassembler))}])

    metrics_server = None
    if rc.metrics is not None:
        metrics_server = await serve_metrics(rc.metrics[0], rc.metrics[1], collect)
    forward_stop = asyncio.Event()
    runner = asyncio.create_task(forwarder.run(forward_stop))
    print(f"{READY_LINE} socket={rc.socket} upstream={','.join(f'{h}:{p}' for h, p in rc.upstream)}",
          file=sys.stderr, flush=True)
    await stop.wait()
    log.info("stopping: removing %s, draining", rc.socket)
    try:
        os.unlink(rc.socket)
    except OSError:
        pass
    rx.stop()
    await loop.run_in_executor(None, reader.join)
    while rx.read_all():
        pass
    sock.close()
    take()
    await forwarder.drain(rc.drain_timeout)
    forward_stop.set()
    await runner
    forwarder.close()
    if metrics_server is not None:
        metrics_server.close()
    log.info("stopped: %d batches in the spool", forwarder.spool.entries)
    return 0


def run(config: Config) -> int:
    from ogrt.filemodes import restrict_umask
    from ogrt.lifecycle import setup_logging

    setup_logging(config.relay.log_level)
    restrict_umask()
    return asyncio.run(serve(config))
