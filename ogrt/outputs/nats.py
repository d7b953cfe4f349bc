"""`nats` output: every record published to a NATS JetStream stream, acknowledged by the stream.

Keys: the connection keys of ogrt/natsclient.py (`servers`, `stream`, credentials, TLS) and
`subject` ("ogrt.records": a record goes to `SUBJECT.start` or `SUBJECT.end`), `replicas`
(3; the stream is created with that many copies when it does not exist; at most the number of
`servers`), `retention` ("workqueue": a message leaves the stream once a sink acked it;
"limits": kept for several independent sink groups, until limits an operator sets), `duplicate_window`
(seconds the stream remembers message ids, 120), `ack_timeout` (10 s). The stream is created
without age or size limits: with `max_bytes` set, nats-server 2.9 was seen to delete the oldest
unconsumed messages although the discard policy was "new"; bound the storage with the servers'
`max_file_store` instead, which refuses new messages (they wait in the spool) and drops none.

Delivery: a batch counts as persisted only when the stream acknowledged every record of it
(the record is then stored on a majority of the replicas). A record is published with the
message id ``ID.EVENT`` (ogrt.natsclient.msg_id), so when an ack is lost and the runner writes
the batch again from its spool, the stream drops the copies it already holds (within
`duplicate_window`). Any missing ack, a timeout or a lost connection raises OutputError: the
runner spools the batch and retries; while the whole NATS cluster is down records pile up in
the spool (bounded by [spool] max_bytes) and are published when it is back.
A record larger than the servers' `max_payload` (NATS default 1 MB) is refused by the server:
the runner isolates and counts it as rejected; set max_payload to server.max_frame_bytes.

The nats-py client is asyncio: it runs in an event loop thread of its own; write() (called on
the runner's writer thread) hands it the batch and waits at most `ack_timeout` seconds.
A batch is published without waiting (at most `batch_records` acks outstanding), each message
with its own reply subject ``INBOX.BATCH.INDEX``; one subscription on ``INBOX.*.*`` counts the
stream's acks with a callback (nats-py's publish_async made a future per message and parsed
each ack into a dataclass: about a third of the publishing CPU). Acks of an earlier batch that
timed out are ignored; a "no responders" status (no stream on the subject) or an error ack
fails the batch.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ogrt import natsclient
from ogrt.outputs import options as opt
from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.jsonl import record_json
from ogrt.textenc import escape

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

EVENTS = ("start", "end")


class RecordTooLarge(ValueError):
    """One record exceeds the servers' max_payload (not retried: the runner rejects it)."""


class _Acks:
    """The stream's answers to one published batch."""

    def __init__(self, number: int, count: int, done: asyncio.Future[None]) -> None:
        self.number, self.left, self.done = number, count, done
        self.seen: set[str] = set()
        self.duplicates = 0
        self.error = ""


class NatsOutput(Output):
    type_name = "nats"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        o = self.options
        self.stream: str = o["stream"]
        self.subject: str = o["subject"]
        self.ack_timeout: float = o["ack_timeout"]
        self._loop: natsclient.LoopThread | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._inbox = ""
        self._acks: _Acks | None = None  # the batch being published
        self._batches = 0
        self._recheck = False  # a write failed: check the stream exists before the next one
        self.duplicates = 0  # records the stream already held (a republish after a lost ack)

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        out = opt.check(name, options, {
            **natsclient.KEYS,
            "subject": opt.Key((str,), "ogrt.records", _subject),
            "replicas": opt.Key((int,), 3, _replicas),
            "retention": opt.Key((str,), "workqueue", opt.one_of("workqueue", "limits")),
            "duplicate_window": opt.Key((int, float), 120.0, opt.positive),
            "ack_timeout": opt.Key((int, float), 10.0, opt.positive),
        })
        where = f"outputs.{name}"
        natsclient.check_replicas(where, out)
        natsclient.check_auth(where, out)
        return out

    # -- connection -------------------------------------------------------------------
    def open(self) -> None:
        if self._loop is None:
            self._loop = natsclient.LoopThread(f"nats-{self.name}")
        try:
            self._loop.run(self._connect(), self.options["connect_timeout"] * len(self.options["servers"]) + 15)
        except OutputError:
            raise
        except Exception as e:
            raise OutputError(f"nats {self.stream}: cannot connect / create the stream: "
                              f"{type(e).__name__}: {e}") from e

    async def _connect(self) -> None:
        if self._nc is None or self._nc.is_closed:
            self._nc = await natsclient.connect(self.options, f"ogrt-{self.name}-{self.worker_index}")
            self._js = self._nc.jetstream(timeout=self.ack_timeout)
            self._inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._inbox}.*.*", cb=self._on_ack)
        await self._ensure_stream()

    async def _ensure_stream(self) -> None:
        import nats.js.errors
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        assert self._js is not None
        o = self.options
        try:
            info = await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            config = StreamConfig(
                name=self.stream, subjects=[f"{self.subject}.>"], retention=RetentionPolicy(o["retention"]),
                storage=StorageType.FILE, num_replicas=o["replicas"], duplicate_window=o["duplicate_window"])
            try:
                await self._js.add_stream(config)
                log.info("output %s: created stream %s (%d replicas, %s retention, subjects %s.>)",
                         self.name, self.stream, o["replicas"], o["retention"], self.subject)
            except nats.js.errors.BadRequestError as e:  # another collector created it meanwhile?
                try:
                    await self._js.stream_info(self.stream)
                except nats.js.errors.NotFoundError:  # no: e.g. another stream holds the subjects
                    raise OutputError(f"nats: cannot create stream {self.stream} for {self.subject}.>: "
                                      f"{e.description or e}") from e
            return
        have = info.config.num_replicas or 1
        if have != o["replicas"]:
            log.warning("output %s: stream %s exists with %d replicas (config says %d); using it as it is",
                        self.name, self.stream, have, o["replicas"])

    # -- writing ----------------------------------------------------------------------
    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        if self._loop is None or self._nc is None or self._recheck:
            self.open()  # after a failure: the stream may have been deleted meanwhile
            self._recheck = False
        assert self._loop is not None
        try:
            self._loop.run(self._publish(records), self.ack_timeout + 1.0)
        except RecordTooLarge:
            raise
        except OutputError:
            self._recheck = True
            raise
        except Exception as e:
            self._recheck = True
            raise OutputError(f"nats {self.stream}: batch of {len(records)} not acknowledged: "
                              f"{type(e).__name__}: {e or 'timeout'}") from e

    async def _publish(self, records: Sequence[dict[str, Any]]) -> None:
        import nats.errors

        nc = self._nc
        assert nc is not None
        if not nc.is_connected:
            raise OutputError(f"nats {self.stream}: not connected (reconnecting)")
        limit = nc.max_payload
        bodies = []
        for r in records:
            body = record_json(r)
            if len(body) > limit:
                raise RecordTooLarge(f"record {r.get('id')} is {len(body)} bytes, more than the "
                                     f"NATS servers' max_payload {limit}")
            event = r["event"] if r.get("event") in EVENTS else "other"
            bodies.append((f"{self.subject}.{event}", body, {"Nats-Msg-Id": natsclient.msg_id(r)}))
        self._batches += 1
        acks = self._acks = _Acks(self._batches, len(bodies), asyncio.get_running_loop().create_future())
        prefix = f"{self._inbox}.{acks.number}."
        try:
            for i, (subject, body, headers) in enumerate(bodies):
                await nc.publish(subject, body, reply=f"{prefix}{i}", headers=headers)
            await asyncio.wait_for(asyncio.shield(acks.done), self.ack_timeout)
        except nats.errors.MaxPayloadError as e:
            raise RecordTooLarge(str(e)) from e
        except asyncio.TimeoutError:
            raise OutputError(f"nats {self.stream}: {acks.left} of {len(bodies)} records not "
                              f"acknowledged within {self.ack_timeout:g} s") from None
        finally:
            self._acks = None
        if acks.error:
            raise OutputError(f"nats {self.stream}: {acks.error}")
        self.duplicates += acks.duplicates

    async def _on_ack(self, msg: Any) -> None:
        """One answer of the stream: {"stream", "seq", "duplicate"?} or {"error": {...}}."""
        acks = self._acks
        _, number, index = msg.subject.rsplit(".", 2)
        if acks is None or number != str(acks.number) or index in acks.seen:
            return  # a late answer to a batch that already failed, or a repeat
        acks.seen.add(index)
        if not msg.data:  # a status: 503 no responders (no stream listens on the subject)
            status = (msg.headers or {}).get("Status", "?")
            acks.error = acks.error or (f"no stream on subject {self.subject}.* (status {status})"
                                        if status == "503" else f"status {status} instead of an ack")
        else:
            try:
                ack = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                ack = {"error": {"description": f"not an ack: {escape(msg.data[:200])}"}}
            if not isinstance(ack, dict) or "error" in ack:
                err = ack.get("error") if isinstance(ack, dict) else ack
                why = err.get("description", err) if isinstance(err, dict) else err
                acks.error = acks.error or f"the stream refused a record: {why}"
            elif ack.get("duplicate"):
                acks.duplicates += 1
        acks.left -= 1
        if acks.left == 0 and not acks.done.done():
            acks.done.set_result(None)

    def close(self) -> None:
        if self._loop is None:
            return
        nc, self._nc, self._js = self._nc, None, None
        self._loop.stop(nc.close() if nc is not None else None)
        self._loop = None


def _subject(value: str) -> str | None:
    tokens = value.split(".")
    if not value or any(not t or set(t) & set(" \t\r\n*>") for t in tokens):
        return "must be a NATS subject such as \"ogrt.records\" (no spaces, '*', '>' or empty tokens)"
    return None


def _replicas(value: int) -> str | None:
    return None if 1 <= value <= 5 else "must be between 1 and 5 (JetStream's limit)"
