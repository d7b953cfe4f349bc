"""The relay's way to the collectors: batches over one long-lived TCP connection.

Record frames are collected into batches (`batch_records`, `batch_bytes`, `flush_interval`).
A sealed batch is kept in memory and sent while a collector connection is up, the spool is
empty and the memory held stays under `max_memory_bytes`; otherwise it goes to the spool
(ogrt/outputs/spool.py, one entry per batch) at once. A batch leaves memory or the spool only
when the collector ACKs it (protocol/relay.md: every output persisted or spooled it).

Connections go along `upstream`, starting at the node's primary (a stable hash of the host
name, as the library picks its collector): each opens with a fresh MUNGE credential and waits
for WELCOME. On a refusal, a failed connect, a dropped connection or an ACK later than
`ack_timeout`, every batch held in memory (unacked first, in order) is written to the spool
and the next collector is tried; after a full round without success the relay waits (0.1 s
doubling to 5 s). With a connection up the spool is replayed in order, one batch at a time,
before memory batches flow again, so batches reach the collectors in the order they were sealed.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ogrt import munge
from ogrt.config import RelayConfig
from ogrt.framing import FrameDecoder, FrameError, encode_frame
from ogrt.metrics import Counters, sample
from ogrt.outputs.spool import Spool
from ogrt.ratelimit import RateLimitedLog
from ogrt.relay.wire import ACK, HELLO, REFUSED, WELCOME, batch_frame, parse_ack

__all__ = ["Forwarder", "Batch", "primary_index"]

log = logging.getLogger("ogrt.relay")

BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
WELCOME_TIMEOUT = 15.0  # s: the collector asks its munged


def primary_index(n: int, hostname: str | None = None) -> int:
    """This node's first collector of n: a stable hash of its host name."""
    return zlib.crc32((hostname or socket.gethostname()).encode()) % n if n else 0


@dataclass
class Batch:
    id: int
    data: bytes  # record frames back to back
    records: int
    from_spool: bool = False
    sent_at: float = 0.0


class _Refused(Exception):
    pass


class Forwarder:
    def __init__(self, config: RelayConfig, counters: Counters,
                 credential: Callable[[str], bytes] = munge.encode) -> None:
        self.config = config
        self.counters = counters
        self.credential = credential
        self.ratelog = RateLimitedLog(log, interval=10.0, burst=1)
        self.spool = Spool(config.spool_dir, config.spool_max_bytes)
        if self.spool.entries:
            log.warning("replaying %d spooled batches from %s", self.spool.entries, config.spool_dir)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.queue: deque[Batch] = deque()  # sealed, not sent
        self.inflight: dict[int, Batch] = {}  # sent, not acked (in send order)
        self.memory = 0  # bytes of queue + inflight memory batches
        self.spool_head: Batch | None = None
        self.next_id = 1
        self.connected = False
        self.draining = False
        self.upstream = "-"
        self.wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    # -- batching --------------------------------------------------------------------------
    def add(self, frame: bytes) -> None:
        if self.pending and self.pending_bytes + len(frame) > self.config.batch_bytes:
            self.seal()  # a batch stays within batch_bytes, or is one record
        self.pending.append(frame)
        self.pending_bytes += len(frame)
        if len(self.pending) >= self.config.batch_records or self.pending_bytes >= self.config.batch_bytes:
            self.seal()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.config.flush_interval, self.seal)

    def seal(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.pending:
            return
        batch = Batch(self.next_id, b"".join(self.pending), len(self.pending))
        self.next_id += 1
        self.pending, self.pending_bytes = [], 0
        if (not self.connected or self.spool.depth or self.draining
                or self.memory + len(batch.data) > self.config.max_memory_bytes):
            self._to_spool([batch])
            return
        self.queue.append(batch)
        self.memory += len(batch.data)
        self.wake.set()

    def _to_spool(self, batches: list[Batch]) -> None:
        now = time.time()
        for b in batches:
            try:
                ok = self.spool.append([base64.b64encode(b.data).decode()], now, sync=False)
            except OSError as e:
                ok = False
                log.error("cannot write the spool %s: %s", self.config.spool_dir, e)
            if ok:
                self.counters.inc("ogrt_relay_spooled_total", b.records)
            else:
                self.counters.inc("ogrt_relay_dropped_total", b.records)
                self.ratelog.log(logging.ERROR, "dropped", "SPOOL FULL (%s, %d bytes): DROPPED %d records",
                                 self.config.spool_dir, self.spool.bytes, b.records)
        if batches:
            try:
                self.spool.sync()
            except OSError as e:
                log.error("cannot fsync the spool %s: %s", self.config.spool_dir, e)

    def _memory_to_spool(self) -> None:
        """Every memory batch (unacked ones first: they are older) into the spool."""
        held = [b for b in self.inflight.values() if not b.from_spool] + list(self.queue)
        self.inflight.clear()
        self.queue.clear()
        self.memory = 0
        self.spool_head = None  # its entry is still the spool's head
        self._to_spool(held)

    # -- acks ------------------------------------------------------------------------------
    def acked(self, batch_id: int) -> None:
        b = self.inflight.pop(batch_id, None)
        if b is None:
            return
        if b.from_spool:
            self.spool.pop()
            self.spool_head = None
        else:
            self.memory -= len(b.data)
        self.counters.inc("ogrt_relay_forwarded_total", b.records)
        self.wake.set()

    # -- connections -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        ups = self.config.upstream
        i = primary_index(len(ups))
        failures = 0
        backoff = BACKOFF_MIN
        while not stop.is_set():
            host, port = ups[i]
            self.upstream = f"{host}:{port}"
            welcomed = False
            try:
                welcomed = await self._session(host, port, stop)
            except _Refused as e:
                self._failed("refused", "collector %s refused the relay: %s", self.upstream, e)
            except asyncio.TimeoutError:
                self._failed("timeout", "collector %s: no answer in time", self.upstream)
            except (OSError, FrameError, EOFError, munge.MungeError) as e:
                self._failed("connection", "collector %s: %s: %s", self.upstream, type(e).__name__, e)
            if stop.is_set():
                break
            failures = 0 if welcomed else failures + 1
            if welcomed:
                backoff = BACKOFF_MIN
            i = (i + 1) % len(ups)
            if failures and failures % len(ups) == 0:  # a round without success: wait
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _failed(self, reason: str, fmt: str, *args: object) -> None:
        self.counters.inc(sample("ogrt_relay_upstream_failures_total", reason=reason))
        self.ratelog.log(logging.WARNING, reason, fmt, *args)

    async def _session(self, host: str, port: int, stop: asyncio.Event) -> bool:
        """One connection: True when the collector welcomed it (it ended later)."""
        timeout = self.config.connect_timeout
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        sender: asyncio.Task[None] | None = None
        welcomed = False
        try:
            credential = await self.loop.run_in_executor(None, self.credential, self.config.munge_socket)
            writer.write(encode_frame(HELLO, credential))
            decoder = FrameDecoder(1 << 16)
            frames = await asyncio.wait_for(self._frames(reader, decoder), WELCOME_TIMEOUT)
            mtype, payload = frames.pop(0)
            if mtype == REFUSED:
                raise _Refused(payload.decode(errors="replace"))
            if mtype != WELCOME:
                raise FrameError("bad_frame", f"expected WELCOME, got frame type {mtype}")
            welcomed = True
            self.connected = True
            log.info("connected to collector %s", self.upstream)
            sender = asyncio.create_task(self._send(writer))
            stopping = asyncio.create_task(stop.wait())
            read: asyncio.Task[list[tuple[int, bytes]]] | None = None
            try:
                while True:
                    for mtype, payload in frames:
                        if mtype == ACK:
                            self.acked(parse_ack(payload))
                        elif mtype == REFUSED:
                            raise _Refused(payload.decode(errors="replace"))
                    if read is None:
                        read = asyncio.create_task(self._frames(reader, decoder))
                    done, _ = await asyncio.wait({read, stopping, sender}, timeout=0.25,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if stopping in done:
                        return welcomed
                    if sender in done:
                        sender.result()  # its error (a write failed)
                        raise EOFError("the sender ended")
                    frames = []
                    if read in done:
                        frames, read = read.result(), None
                    oldest = next(iter(self.inflight.values()), None)
                    if oldest is not None and time.monotonic() - oldest.sent_at > self.config.ack_timeout:
                        raise asyncio.TimeoutError
            finally:
                stopping.cancel()
                if read is not None:
                    read.cancel()
        finally:
            self.connected = False
            if sender is not None:
                sender.cancel()
            writer.close()
            if welcomed and not self.draining:
                self._memory_to_spool()

    @staticmethod
    async def _frames(reader: asyncio.StreamReader, decoder: FrameDecoder) -> list[tuple[int, bytes]]:
        while True:
            data = await reader.read(65536)
            if not data:
                raise EOFError("the collector closed the connection")
            frames = decoder.feed(data)
            if frames:
                return frames

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        while True:
            if self.queue:
                b = self.queue.popleft()
            elif (self.spool.depth and self.spool_head is None and not self.inflight
                  and not self.draining):
                head = self.spool.peek()
                if head is None:
                    continue
                b = Batch(self.next_id, base64.b64decode(head[0][0]), 0, from_spool=True)
                self.next_id += 1
                b.records = _count_frames(b.data)
                self.spool_head = b
            else:
                self.wake.clear()
                await self.wake.wait()
                continue
            b.sent_at = time.monotonic()
            self.inflight[b.id] = b
            writer.write(batch_frame(b.id, b.data))
            await writer.drain()

    # -- stopping ----------------------------------------------------------------------------
    async def drain(self, timeout: float) -> None:
        """SIGTERM: seal what is pending, let the connection deliver what memory holds for up to
        `timeout` s (no spool replay starts), then spool whatever is left."""
        self.seal()
        self.draining = True
        deadline = time.monotonic() + timeout
        while self.connected and (self.queue or any(not b.from_spool for b in self.inflight.values())):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """After run() ended: memory batches to the spool, spool closed."""
        self.seal()
        self._memory_to_spool()
        self.spool.close()

    def gauges(self) -> dict[str, float]:
        return {"ogrt_relay_spool_batches": float(self.spool.entries),
                "ogrt_relay_memory_bytes": float(self.memory),
                "ogrt_relay_upstream_connected": 1.0 if self.connected else 0.0}


def _count_frames(data: bytes) -> int:
    n = off = 0
    while off + 8 <= len(data):
        off += 8 + int.from_bytes(data[off + 4:off + 8], "big")
        n += 1
    return n
