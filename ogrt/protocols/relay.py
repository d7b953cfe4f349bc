"""The collector's relay listener (`[server] relay_port`; protocol/relay.md).

A connection opens with a HELLO frame carrying a MUNGE credential; it is decoded by the
local munged (ogrt/munge.py) and accepted when valid and made by root or a user of
`[server] relay_users`; otherwise REFUSED, counted, closed. Then each BATCH's records are
decoded, marked `verified: true` (the relay put the kernel's pid/uid/gid in them) and handed
to every output runner as an `Acked` list; once every output has persisted or spooled the
batch, ACK goes back. A batch an output dropped (spool full) is not acked: the relay sends it
again after its ack timeout.

Redelivery (the relay resends what a dropped connection left unacked) is deduplicated twice:
SQL outputs upsert by uuid; and the listener remembers the (id, event) of the last MEMO
records it acked and does not hand those to the outputs again (a resend to the same collector
process adds no JSON line; one to another collector may: JSON outputs are at-least-once).
"""
from __future__ import annotations

import asyncio
import logging
import pwd
import socket
from collections.abc import Sequence
from typing import Any

from ogrt import munge
from ogrt.allowlist import PeerFilter
from ogrt.config import ServerConfig
from ogrt.framing import FrameDecoder, FrameError, encode_frame
from ogrt.metrics import sample
from ogrt.outputs.runner import Acked
from ogrt.pipeline import Ingest
from ogrt.protocols.tcp import transport_peer
from ogrt.record import Decoder, RecordError, UserResolver
from ogrt.relay.wire import BATCH, HELLO, REFUSED, WELCOME, ack_frame, parse_batch

__all__ = ["RelayReceiver"]

log = logging.getLogger("ogrt.relay-listener")

HELLO_TIMEOUT = 10.0  # s for the HELLO frame and its decoding
MAX_UNACKED = 64  # batches per connection handed to the outputs and not yet settled
MEMO = 200_000  # (id, event) pairs remembered


class _Group:
    """One batch handed to n runners: ACK once all of them settled it well."""

    __slots__ = ("conn", "batch_id", "left", "ok", "keys")

    def __init__(self, conn: _RelayConnection, batch_id: int, n: int, keys: list[tuple[str, str]]) -> None:
        self.conn, self.batch_id, self.left, self.ok, self.keys = conn, batch_id, n, True, keys

    def settled(self, ok: bool) -> None:  # a runner's thread
        self.conn.rx.loop.call_soon_threadsafe(self._one, ok)

    def _one(self, ok: bool) -> None:
        self.ok = self.ok and ok
        self.left -= 1
        if self.left == 0:
            self.conn.batch_settled(self)


class _RelayConnection(asyncio.Protocol):
    def __init__(self, rx: RelayReceiver) -> None:
        self.rx = rx
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.decoder = FrameDecoder(rx.max_frame_bytes)
        self.state = "hello"  # hello → checking → open → closed
        self.unsettled = 0
        self.paused = False
        self._early: list[tuple[int, bytes]] = []  # frames that came before the credential was checked
        self._hello_timer: asyncio.TimerHandle | None = None

    # -- opening ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        rx = self.rx
        self.peer = transport_peer(transport)
        if not rx.allowed(self.peer):
            self._refuse("not_allowed", "address outside [server] allowed_networks")
            return
        if rx.closing or len(rx.connections) >= rx.max_connections:
            self._refuse("max_connections", f"{len(rx.connections)} relay connections open")
            return
        rx.connections.add(self)
        rx.ingest.counters.inc("ogrt_relay_connections_total")
        self._hello_timer = rx.loop.call_later(HELLO_TIMEOUT, self._hello_late)

    def _hello_late(self) -> None:
        if self.state in ("hello", "checking"):
            self._refuse("relay_no_credential", f"no valid HELLO within {HELLO_TIMEOUT:g} s")

    def _refuse(self, reason: str, detail: str) -> None:
        self.rx.ingest.reject(reason, self.peer, detail)
        self.state = "closed"
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(REFUSED, f"{reason}: {detail}".encode()))
            self.transport.close()

    async def _check(self, credential: bytes) -> None:
        rx = self.rx
        try:
            who = await rx.loop.run_in_executor(None, munge.decode, credential, rx.munge_socket)
        except munge.MungeError as e:
            self._refuse("relay_bad_credential", str(e))
            return
        if who.uid != 0 and who.uid not in rx.relay_uids():
            self._refuse("relay_user_not_allowed", f"credential of uid {who.uid}, not root or [server] relay_users")
            return
        if self.state != "checking" or self.transport is None or self.transport.is_closing():
            return
        self.state = "open"
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        log.info("relay %s connected (MUNGE uid %d)", self.peer, who.uid)
        self.transport.write(encode_frame(WELCOME, b""))
        self.transport.resume_reading()
        rest, self._early = self._early, []
        for mtype, payload in rest:
            self._frame(mtype, payload)

    # -- frames ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state == "closed":
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as e:
            for mtype, payload in e.frames:
                self._frame(mtype, payload)
            self._refuse(e.reason, str(e))
            return
        self.rx.ingest.received(len(data), 0)
        for mtype, payload in frames:
            if self.state == "closed":
                return
            self._frame(mtype, payload)

    def _frame(self, mtype: int, payload: bytes) -> None:
        if self.state == "hello":
            if mtype != HELLO:
                self._refuse("relay_no_credential", f"first frame has type {mtype}, not HELLO")
                return
            self.state = "checking"
            assert self.transport is not None
            self.transport.pause_reading()
            self.rx.loop.create_task(self._check(payload))
        elif self.state == "checking":
            self._early.append((mtype, payload))
        elif mtype == BATCH:
            self._batch(payload)
        else:
            self._refuse("relay_bad_frame", f"frame type {mtype} on a relay connection")

    def _batch(self, payload: bytes) -> None:
        rx = self.rx
        try:
            batch_id, frames = parse_batch(payload, rx.max_frame_bytes)
        except FrameError as e:
            self._refuse(e.reason, str(e))
            return
        records: list[dict[str, Any]] = []
        keys: list[tuple[str, str]] = []
        memo = rx.memo
        for mtype, body in frames:
            try:
                rec = rx.decode(mtype, body, self.peer)
            except RecordError as e:
                rx.ingest.reject(e.reason, self.peer, str(e))
                continue
            key = (rec.get("id") or rec.get("job_id") or "", rec["event"])
            if key in memo:
                rx.ingest.counters.inc("ogrt_relay_duplicates_total")
                continue
            if "verified" in rec:
                rec["verified"] = True
            rx.ingest.counters.inc(rx.k_event[rec["event"]])
            records.append(rec)
            keys.append(key)
        rx.ingest.counters.inc(rx.k_frames, len(frames))
        if not records or not rx.sinks:
            self._send_ack(batch_id)
            return
        group = _Group(self, batch_id, len(rx.sinks), keys)
        self.unsettled += 1
        if self.unsettled >= MAX_UNACKED and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        for sink in rx.sinks:
            sink.submit(Acked(records, group.settled))

    def batch_settled(self, group: _Group) -> None:
        self.unsettled -= 1
        if self.paused and self.unsettled < MAX_UNACKED // 2 and self.transport is not None:
            self.paused = False
            if self.state == "open":
                self.transport.resume_reading()
        if not group.ok:  # an output dropped it: the relay resends after its ack timeout
            self.rx.ingest.counters.inc("ogrt_relay_batches_unacked_total")
            return
        self.rx.remember(group.keys)
        self._send_ack(group.batch_id)

    def _send_ack(self, batch_id: int) -> None:
        self.rx.ingest.counters.inc("ogrt_relay_batches_acked_total")
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ack_frame(batch_id))

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "closed"
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        self.rx.connections.discard(self)
        if self.rx.closing and not self.rx.connections:
            self.rx.all_closed.set()


class RelayReceiver:
    """The relay listener of one collector process; outputs are `sinks` (OutputRunners)."""

    def __init__(self, sinks: Sequence[Any], ingest: Ingest, users: UserResolver, config: ServerConfig) -> None:
        self.sinks = list(sinks)
        self.ingest = ingest  # counters and the rejection log, transport "relay"
        self.decode = Decoder(users).decode
        self.max_frame_bytes = config.max_frame_bytes
        self.max_connections = config.max_connections
        self.munge_socket = config.munge_socket
        self.relay_users = config.relay_users
        self.allowed = PeerFilter(config.allowed_networks).allowed
        self.connections: set[_RelayConnection] = set()
        self.memo: dict[tuple[str, str], None] = {}
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self.all_closed = asyncio.Event()
        self.k_frames = sample("ogrt_received_frames_total", transport="relay")
        self.k_event = {e: sample("ogrt_records_total", event=e) for e in ("start", "end", "job_start", "job_end")}
        self._server: asyncio.base_events.Server | None = None

    def relay_uids(self) -> set[int]:
        out = set()
        for name in self.relay_users:
            try:
                out.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
        return out

    def remember(self, keys: list[tuple[str, str]]) -> None:
        memo = self.memo
        for k in keys:
            memo[k] = None
        while len(memo) > MEMO:
            del memo[next(iter(memo))]

    async def start(self, sock: socket.socket) -> None:
        self._server = await self.loop.create_server(lambda: _RelayConnection(self), sock=sock, backlog=1024)

    def pause(self) -> None:
        """Stop accepting and reading (shutdown): what was read is settled by the runners' stop."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.pause_reading()
            conn.state = "closed" if conn.state != "open" else conn.state

    async def close(self) -> None:
        """After the runners stopped: let the acks they caused go out, then close."""
        await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self.connections:
            try:
                await asyncio.wait_for(self.all_closed.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
