"""TCP receiver: many frames per connection, bounded connections, memory and idleness."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import sys
import termios

from ogrt.config import ServerConfig
from ogrt.allowlist import PeerFilter
from ogrt.framing import FrameDecoder, FrameError
from ogrt.pipeline import Ingest

__all__ = ["TcpReceiver", "peer_text", "transport_peer"]

log = logging.getLogger("ogrt.tcp")


def peer_text(host: str) -> str:
    """An IPv4-mapped IPv6 address (from a dual-stack socket) as plain IPv4."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host.partition("%")[0]


def transport_peer(transport: asyncio.BaseTransport) -> str:
    """The peer address of a connection's transport as text ("?" when unknown)."""
    peername = transport.get_extra_info("peername")
    return peer_text(peername[0]) if peername else "?"


class _Connection(asyncio.Protocol):
    __slots__ = ("rx", "transport", "peer", "decoder", "last_active", "held", "closed_for")

    def __init__(self, rx: TcpReceiver) -> None:
        self.rx = rx
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.decoder = FrameDecoder(rx.max_frame_bytes)
        self.last_active = 0.0
        self.held = 0  # bytes of an incomplete frame this connection holds
        self.closed_for: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        rx = self.rx
        self.peer = transport_peer(transport)
        per_peer = rx.per_peer.get(self.peer, 0)
        if not rx.allowed(self.peer):
            reason, detail = "not_allowed", "address outside [server] allowed_networks"
        elif rx.closing:
            reason, detail = "shutting_down", "the daemon is stopping"
        elif per_peer >= rx.max_connections_per_peer:
            reason, detail = "max_connections_per_peer", f"{per_peer} connections open from this peer"
        elif len(rx.connections) >= rx.max_connections:
            reason, detail = "max_connections", f"{len(rx.connections)} connections open"
        else:
            reason = None
        if reason is not None:
            self.closed_for = reason
            rx.ingest.reject(reason, self.peer, detail)
            transport.abort()
            return
        rx.connections.add(self)
        rx.per_peer[self.peer] = per_peer + 1
        if rx.paused:
            transport.pause_reading()
        rx.ingest.counters.inc("ogrt_connections_total")
        self.last_active = rx.loop.time()

    def data_received(self, data: bytes) -> None:
        rx = self.rx
        if self.closed_for is not None:
            return
        self.last_active = rx.loop.time()
        try:
            frames = self.decoder.feed(data)
        except FrameError as e:
            rx.ingest.received(len(data), len(e.frames))
            if e.frames:
                rx.ingest.frames(e.frames, self.peer)
                rx.schedule_flush()
            self._close(e.reason, str(e))
            return
        rx.ingest.received(len(data), len(frames))
        if frames:
            rx.ingest.frames(frames, self.peer)
            rx.schedule_flush()
        held = self.decoder.buffered
        if held != self.held:
            rx.buffered += held - self.held
            self.held = held
            if rx.buffered > rx.max_buffered_bytes:
                self._close("memory_limit",
                            f"incomplete frames of all connections exceed max_buffered_bytes={rx.max_buffered_bytes}")

    def unread(self) -> int:
        """Bytes the kernel holds for this connection that we have not read yet."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return 0
        try:
            buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int.from_bytes(buf, sys.byteorder)

    def eof_received(self) -> bool:
        return False  # close our side too

    def _close(self, reason: str, detail: str) -> None:
        self.closed_for = reason
        self.rx.ingest.reject(reason, self.peer, detail)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        rx = self.rx
        if self in rx.connections:
            rx.connections.discard(self)
            left = rx.per_peer[self.peer] - 1
            if left:
                rx.per_peer[self.peer] = left
            else:
                del rx.per_peer[self.peer]
            if self.held:
                rx.buffered -= self.held
                if self.closed_for is None:
                    rx.ingest.reject("truncated_frame", self.peer,
                                     f"connection closed inside a frame ({self.held} bytes held)")
                self.held = 0
            if rx.closing and not rx.connections:
                rx.all_closed.set()


class TcpReceiver:
    """Owns the listening socket and every connection of one process; limits from `[server]`."""

    def __init__(self, ingest: Ingest, config: ServerConfig) -> None:
        self.ingest = ingest
        self.max_frame_bytes = config.max_frame_bytes
        self.max_connections = config.max_connections
        self.max_connections_per_peer = config.connections_per_peer
        self.allowed = PeerFilter(config.allowed_networks).allowed
        self.per_peer: dict[str, int] = {}
        self.idle_timeout = config.idle_timeout
        self.max_buffered_bytes = config.max_buffered_bytes
        self.connections: set[_Connection] = set()
        self.buffered = 0
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self.all_closed = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self._sock: socket.socket | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self.paused = False
        self._paused_since = 0.0

    async def start(self, sock: socket.socket) -> None:
        self._sock = sock
        self._server = await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=4096)
        self._sweeper = asyncio.create_task(self._sweep())

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.ingest.flush()
        if not self.paused and self._queues_high(0.75):
            self._pause()

    # -- soft back-pressure: when an output's in-memory queue is nearly full, stop reading
    # for a few milliseconds so its writer catches up, instead of spilling to the spool at
    # once. Never longer than PAUSE_MAX: then reading resumes and the runner spools.
    PAUSE_STEP = 0.005
    PAUSE_MAX = 0.1

    def _queues_high(self, fraction: float) -> bool:
        for sink in self.ingest.sinks:
            limit = getattr(sink, "queue_limit", 0)
            if limit and sink.stats()["queue_depth"] > fraction * limit:
                return True
        return False

    def _pause(self) -> None:
        self.ingest.counters.inc("ogrt_tcp_read_pauses_total")
        self.paused = True
        self._paused_since = self.loop.time()
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.pause_reading()
        self.loop.call_later(self.PAUSE_STEP, self._maybe_resume)

    def _maybe_resume(self) -> None:
        if self.loop.time() - self._paused_since < self.PAUSE_MAX and self._queues_high(0.5) and not self.closing:
            self.loop.call_later(self.PAUSE_STEP, self._maybe_resume)
            return
        self.paused = False
        for conn in self.connections:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()

    async def _sweep(self) -> None:
        interval = min(1.0, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.close_idle(self.idle_timeout, "idle_timeout")

    def close_idle(self, idle: float, reason: str, unread_too: bool = True) -> None:
        """Close connections without data for `idle` s (with unread_too=False, only those
        whose kernel receive buffer is empty: data waiting there is not idleness)."""
        limit = self.loop.time() - idle
        for conn in [c for c in self.connections if c.last_active <= limit]:
            if not unread_too and conn.unread() > 0:
                continue
            if reason == "idle_timeout" or conn.held:
                conn._close(reason, f"no data for {idle:g} s" + (f", {conn.held} bytes of a frame held"
                                                                   if conn.held else ""))
            elif conn.transport is not None:
                conn.closed_for = "shutdown"
                conn.transport.abort()

    async def stop(self, grace: float) -> None:
        """Stop accepting; let open connections deliver what they send, then close them.

        A connection is closed once it has been quiet for a short while (everything it
        sent before is decoded) or when `grace` runs out.
        """
        # connections the kernel completed but we did not accept yet hold records too:
        # accept them all, then close the listening socket (no await in between)
        backlog: list[socket.socket] = []
        if self._sock is not None:
            while True:
                try:
                    conn, _ = self._sock.accept()
                except (BlockingIOError, InterruptedError, OSError):
                    break
                backlog.append(conn)
        if self._server is not None:
            self._server.close()
        for conn in backlog:
            conn.setblocking(False)
            try:
                await self.loop.connect_accepted_socket(lambda: _Connection(self), conn)
            except OSError:
                conn.close()
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = self.loop.time() + grace
        quiet = 0.3
        while self.connections and self.loop.time() < deadline:
            self.close_idle(quiet, "shutdown_truncated", unread_too=False)
            if not self.connections:
                break
            self.all_closed.clear()
            try:
                await asyncio.wait_for(self.all_closed.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass
        self.close_idle(-1.0, "shutdown_truncated")  # grace is over: close the rest
        await asyncio.sleep(0)
        self.ingest.flush()
