"""Batches from a JetStream durable pull consumer, with the next pull already under way.

nats-py's `PullSubscription.fetch()` waits for each message with its own task and timer
(`asyncio.wait_for` per message): at a few thousand messages per second that was most of the
sink's CPU (cProfile of a sink in benchmarks/scaleout.py). `Puller` speaks the pull protocol
over a plain subscription instead: a pull request (``$JS.API.CONSUMER.MSG.NEXT.STREAM.DURABLE``
with ``{"batch": N, "expires": ns}``, reply to an inbox of ours) makes the server deliver up to
N messages to the inbox, where a callback appends them to a buffer; one request is kept open
whenever the buffer holds less than a batch, so the server delivers the next batch while the
outputs persist the current one. The server ends a request with a status message (408 request
expired, 404 no messages, 409 ...) or once it delivered N; a request unanswered for `expires`
plus a margin (a status lost in a reconnect) counts as ended too.

Messages wait in the buffer at most about one batch's write time; their ack_wait runs from
delivery, so keep ``ack_wait`` well above the time a batch takes (the default 60 s is).
`next_batch()` returns what the buffer holds (up to `batch`) as soon as it holds anything,
else waits for a delivery at most `timeout` seconds (then TimeoutError). Status 409 with
"Consumer Deleted" sets `gone` (the caller binds again).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["Puller", "delivered"]

MARGIN = 2.0  # seconds past a request's expiry after which it counts as ended without a status


def delivered(reply: str | None) -> int:
    """How many times JetStream delivered the message (its ack subject's delivery count), 0 if unknown.
    ``$JS.ACK.stream.consumer.delivered.sseq.cseq.ts.pending`` or, with a domain and account
    hash, ``$JS.ACK.domain.hash.stream.consumer.delivered.sseq.cseq.ts.pending.token``."""
    tokens = (reply or "").split(".")
    try:
        if len(tokens) == 9:
            return int(tokens[4])
        if len(tokens) >= 12:
            return int(tokens[6])
    except ValueError:
        pass
    return 0


class Puller:
    def __init__(self, nc: Client, stream: str, durable: str, batch: int, timeout: float) -> None:
        self.nc, self.batch, self.timeout = nc, batch, timeout
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = nc.new_inbox()
        self.buffer: list[Msg] = []
        self.open_until = 0.0  # monotonic time after which the open request counts as ended
        self.wanted = 0  # messages the open request may still deliver
        self.gone = False  # the server said the consumer was deleted
        self.sub: Any = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        self.sub = await self.nc.subscribe(self.inbox, cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.data and msg.headers and "Status" in msg.headers:  # the server's word on a request
            code, why = msg.headers.get("Status", ""), msg.headers.get("Description", "")
            if code in ("404", "408", "409"):
                self.wanted = 0
                if code == "409" and "deleted" in why.lower():
                    self.gone = True
                self._arrived.set()
            return  # 100 (heartbeat): none asked for
        self.buffer.append(msg)
        self.wanted = max(0, self.wanted - 1)
        self._arrived.set()

    async def _request(self) -> None:
        """Keep one request open while the buffer holds less than a batch."""
        now = time.monotonic()
        if self.wanted > 0 and now < self.open_until:
            return
        if len(self.buffer) >= self.batch or not self.nc.is_connected:
            return
        expires = max(self.timeout, 0.05)
        self.wanted, self.open_until = self.batch, now + expires + MARGIN
        body = orjson.dumps({"batch": self.batch, "expires": int(expires * 1e9)})
        await self.nc.publish(self.api, body, reply=self.inbox)

    async def next_batch(self) -> list[Msg]:
        """Up to `batch` delivered messages; TimeoutError when none came within `timeout`."""
        deadline = time.monotonic() + self.timeout
        while not self.buffer:
            if self.gone:
                raise LookupError("consumer deleted")
            self._arrived.clear()
            await self._request()
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            try:
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass  # re-check: the request may have ended without a word (reconnect)
        out, self.buffer = self.buffer[:self.batch], self.buffer[self.batch:]
        await self._request()  # the next batch comes while the caller writes this one
        return out

    async def finish(self) -> list[Msg]:
        """Stop pulling: wait until the open request ended (at most `timeout` plus a margin;
        a message it delivers later would wait for ack_wait and go to another sink),
        unsubscribe, and return the messages delivered but not taken (to write and ack)."""
        while self.wanted > 0 and time.monotonic() < self.open_until and self.nc.is_connected:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        await self.close()
        out, self.buffer = self.buffer, []
        return out

    async def close(self) -> None:
        if self.sub is not None:
            sub, self.sub = self.sub, None
            try:
                await asyncio.wait_for(sub.unsubscribe(), 5.0)
            except Exception:
                pass
