"""`ogrt sink`: records from a JetStream stream into the configured outputs, acked once persisted.

All sinks with the same `durable` share one durable pull consumer: the stream hands each
message to one of them. The loop takes up to `batch` delivered messages (ogrt/sink/pull.py keeps
the next pull request open, so the server delivers the next batch meanwhile), writes the valid
records to every output (on one writer thread, so outputs keep their thread affinity), and only
then acks them. Per message:

- not a record (not a JSON object with `event` start/end and a canonical uuid `id`): counted
  in ``ogrt_sink_rejected_total{reason="malformed"}`` and terminated (acked for good, never
  redelivered);
- an output raises OutputError (backend down): the whole batch is nak'ed with a delay (the
  back-off, 0.1 s doubling up to `retry_max_seconds`) and redelivered, to this sink or another;
  nothing is acked that is not persisted by every output;
- an output refuses a record itself (any other error; found by writing the batch's records one
  at a time): counted in ``ogrt_output_rejected_total`` and terminated.

Redelivery (a nak, an ack lost, a sink killed between write and ack) writes a record again.
The SQL outputs upsert by uuid, so a process stays one row. Each output also remembers the
message ids (uuid.event) it wrote recently (the last `MEMO` ones) and does not write those again,
so a redelivery to the same sink process does not add a second JSON line; a redelivery to
another sink (or after a restart) does: JSON outputs behind sinks are at-least-once, and the
(`id`, `event`) pair identifies copies.

A sink idle for IDLE_CHECK fetches checks that its consumer still exists; when it (or its stream)
was deleted, it binds again (creating the consumer once the stream exists).

SIGTERM/SIGINT: the batch in hand, and what the open pull request still delivers, is written
and acked, then the sink exits 0.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from ogrt import natsclient
from ogrt.metrics import merge, sample, serve_metrics
from ogrt.outputs import OUTPUT_TYPES, Output, OutputError
from ogrt.ratelimit import RateLimitedLog
from ogrt.sink.config import SinkConfig
from ogrt.sink.pull import Puller, delivered

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["Sink", "parse_record", "READY_LINE"]

log = logging.getLogger("ogrt.sink")

READY_LINE = "ogrt sink ready"
BACKOFF_MIN = 0.1
MEMO = 200_000  # message ids remembered per output
IDLE_CHECK = 10  # empty fetches in a row after which the sink checks that its consumer exists
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def parse_record(data: bytes) -> dict[str, Any] | None:
    """The record a message holds, or None when it is not one."""
    try:
        rec = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if (not isinstance(rec, dict) or rec.get("event") not in ("start", "end")
            or not isinstance(rec.get("id"), str) or not _UUID.match(rec["id"])):
        return None
    return rec


class _Target:
    """One output of the sink with its counters and its memo of recently written ids."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.opened = False
        self.written: dict[str, None] = {}  # insertion-ordered: oldest first
        self.persisted = 0
        self.write_errors = 0
        self.rejected = 0

    def remember(self, ids: Sequence[str]) -> None:
        written = self.written
        for i in ids:
            written[i] = None
        while len(written) > MEMO:
            del written[next(iter(written))]


class Sink:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.source = config.source
        self.targets = [_Target(OUTPUT_TYPES[oc.type](oc.name, oc.options)) for oc in config.outputs]
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="sink-writer")
        self.ratelog = RateLimitedLog(log, interval=10.0, burst=1)
        self.nc: Client | None = None
        self.js: Any = None  # the JetStream context (consumer info, creation)
        self.puller: Puller | None = None
        self.backoff = BACKOFF_MIN
        self.counts = {"received": 0, "acked": 0, "redelivered": 0, "nacked": 0,
                       "malformed": 0, "refused": 0}
        self._metrics_server: asyncio.base_events.Server | None = None

    # -- start -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Serve /metrics (OSError when its address is taken)."""
        if self.config.metrics.address is not None:
            host, port = self.config.metrics.address
            self._metrics_server = await serve_metrics(host, port, self.collect)

    async def bind(self, stop: asyncio.Event) -> bool:
        """Connect and bind the consumer, retrying until `stop` (the stream appears when the
        first collector publishes); False when stopped first."""
        delay = BACKOFF_MIN
        while not stop.is_set():
            try:
                await self._bind()
                return True
            except Exception as e:
                self.ratelog.log(logging.WARNING, "bind", "cannot bind consumer %s on stream %s yet "
                                 "(%s: %s); retrying", self.source["durable"], self.source["stream"],
                                 type(e).__name__, e)
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, 5.0)
        return False

    async def _bind(self) -> None:
        import nats.js.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        s = self.source
        if self.nc is None or self.nc.is_closed:
            self.nc = await natsclient.connect(s, f"ogrt-sink-{s['durable']}")
        js = self.nc.jetstream(timeout=10.0)
        stream, durable = s["stream"], s["durable"]
        try:
            await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(stream, ConsumerConfig(
                durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                ack_wait=s["ack_wait"], max_deliver=-1, max_ack_pending=s["max_ack_pending"]))
            log.info("created durable consumer %s on stream %s", durable, stream)
        if self.puller is not None:
            await self.puller.close()
        self.js = js
        self.puller = Puller(self.nc, stream, durable, s["batch"], s["fetch_timeout"])
        await self.puller.start()

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Take batches, write, ack until `stop`. The next batch is delivered while the outputs
        persist this one (ogrt/sink/pull.py); each is acked only after every output persisted
        it. On `stop` the messages delivered meanwhile are written and acked too (nothing is
        left delivered but unacked, which would go to another sink after ack_wait)."""
        idle = 0
        while not stop.is_set():
            assert self.puller is not None
            try:
                msgs = await self.puller.next_batch()
            except (asyncio.TimeoutError, LookupError):
                idle += 1
                if self.puller.gone or (idle % IDLE_CHECK == 0 and not await self._consumer_exists()):
                    log.warning("consumer %s on stream %s is gone (deleted?); binding again",
                                self.source["durable"], self.source["stream"])
                    if not await self.bind(stop):
                        return
                continue
            except Exception as e:  # connection lost, cluster electing: the client reconnects
                self.ratelog.log(logging.WARNING, "fetch", "fetch failed (%s: %s); retrying",
                                 type(e).__name__, e)
                await _sleep_unless(stop, 0.5)
                continue
            idle = 0
            await self._handle(msgs, stop)
        if self.puller is not None:
            rest = await self.puller.finish()
            if rest:
                await self._handle(rest, stop)

    async def _handle(self, msgs: list[Msg], stop: asyncio.Event) -> None:
        import nats.errors

        try:
            await self.handle(msgs, stop)
        except (OSError, nats.errors.Error) as e:  # acks not sent: the batch comes back
            self.ratelog.log(logging.WARNING, "ack", "cannot ack a batch of %d (%s: %s); it will "
                             "be redelivered", len(msgs), type(e).__name__, e)

    async def _consumer_exists(self) -> bool:
        """False only when the server says the consumer (or its stream) does not exist."""
        import nats.js.errors

        try:
            await asyncio.wait_for(self.js.consumer_info(self.source["stream"], self.source["durable"]), 5.0)
        except nats.js.errors.NotFoundError:
            return False
        except Exception:  # unreachable, electing a leader: not known to be gone
            pass
        return True

    async def handle(self, msgs: list[Msg], stop: asyncio.Event) -> None:
        """Write a fetched batch to every output, then ack it (or nak it for redelivery)."""
        good: list[tuple[Msg, dict[str, Any], str]] = []
        seen: set[str] = set()
        for m in msgs:
            self.counts["received"] += 1
            if delivered(m.reply) > 1:
                self.counts["redelivered"] += 1
            rec = parse_record(m.data)
            if rec is None:
                self.counts["malformed"] += 1
                self.ratelog.log(logging.WARNING, "malformed", "message %s of %d bytes on %s is "
                                 "not a record; rejected", _seq(m), len(m.data), m.subject)
                await m.term()
                continue
            mid = natsclient.msg_id(rec)
            if mid in seen:  # the same record twice in one batch (republished after the window)
                await m.ack()
                continue
            seen.add(mid)
            good.append((m, rec, mid))
        refused: set[str] = set()
        for target in self.targets:
            todo = [(rec, mid) for _, rec, mid in good if mid not in target.written and mid not in refused]
            if not todo:
                continue
            ok = await asyncio.get_running_loop().run_in_executor(self.writer, self._write, target,
                                                                  todo, refused)
            if not ok:
                for m, _, _ in good:
                    await m.nak(delay=self.backoff)
                self.counts["nacked"] += len(good)
                await self._flush()
                await _sleep_unless(stop, self.backoff)
                self.backoff = min(self.backoff * 2, self.config.sink.retry_max_seconds)
                return
        for m, _, mid in good:
            if mid in refused:
                await m.term()
            else:
                await m.ack()
                self.counts["acked"] += 1
        self.counts["refused"] += len(refused)
        await self._flush()
        self.backoff = BACKOFF_MIN

    def _write(self, target: _Target, todo: list[tuple[dict[str, Any], str]], refused: set[str]) -> bool:
        """On the writer thread: persist `todo`; False when the backend is unavailable."""
        out = target.output
        try:
            if not target.opened:
                out.open()
                target.opened = True
            out.write([rec for rec, _ in todo])
        except OutputError as e:
            target.write_errors += 1
            self.ratelog.log(logging.ERROR, f"down {out.name}", "output %s unavailable (%s); batch "
                             "nak'ed for redelivery in %.1f s", out.name, e, self.backoff)
            return False
        except Exception as e:
            log.warning("output %s refused a batch of %d (%s: %s); writing its records one by one",
                        out.name, len(todo), type(e).__name__, e)
            return self._write_each(target, todo, refused)
        target.remember([mid for _, mid in todo])
        target.persisted += len(todo)
        return True

    def _write_each(self, target: _Target, todo: list[tuple[dict[str, Any], str]], refused: set[str]) -> bool:
        out = target.output
        for rec, mid in todo:
            try:
                out.write([rec])
            except OutputError:
                target.write_errors += 1
                return False
            except Exception as e:
                target.rejected += 1
                refused.add(mid)
                self.ratelog.log(logging.ERROR, f"refused {out.name}", "output %s: REJECTED record %s "
                                 "(%s: %s)", out.name, mid, type(e).__name__, e)
                continue
            target.remember([mid])
            target.persisted += 1
        return True

    async def _flush(self) -> None:
        """Hand the acks to the server now (a lost ack only means a redelivery)."""
        if self.nc is not None and self.nc.is_connected:
            try:
                await self.nc.flush(timeout=5)
            except Exception as e:
                self.ratelog.log(logging.WARNING, "flush", "acks not flushed (%s: %s); those "
                                 "messages will be redelivered", type(e).__name__, e)

    # -- metrics -----------------------------------------------------------------------------
    async def collect(self) -> dict[str, float]:
        c = self.counts
        snap: dict[str, float] = {
            "ogrt_sink_received_total": c["received"],
            "ogrt_sink_acked_total": c["acked"],
            "ogrt_sink_redelivered_total": c["redelivered"],
            "ogrt_sink_nacked_total": c["nacked"],
            sample("ogrt_sink_rejected_total", reason="malformed"): c["malformed"],
            sample("ogrt_sink_rejected_total", reason="refused"): c["refused"],
        }
        for t in self.targets:
            name = t.output.name
            snap[sample("ogrt_output_persisted_total", output=name)] = t.persisted
            snap[sample("ogrt_output_write_errors_total", output=name)] = t.write_errors
            snap[sample("ogrt_output_rejected_total", output=name)] = t.rejected
        if self.js is not None:
            try:
                info = await asyncio.wait_for(
                    self.js.consumer_info(self.source["stream"], self.source["durable"]), 2.0)
                snap["ogrt_sink_lag"] = info.num_pending or 0
                snap["ogrt_sink_ack_pending"] = info.num_ack_pending or 0
            except Exception:  # NATS unreachable: the lag is unknown, not 0
                pass
        return merge([snap])

    # -- stop --------------------------------------------------------------------------------
    async def close(self) -> None:
        await self._flush()
        if self.nc is not None:
            try:
                await asyncio.wait_for(self.nc.close(), 10.0)
            except Exception:
                pass
        loop = asyncio.get_running_loop()
        for t in self.targets:
            if t.opened:
                try:
                    await loop.run_in_executor(self.writer, t.output.close)
                except Exception:
                    log.exception("output %s: error while closing", t.output.name)
        self.writer.shutdown(wait=False)
        if self._metrics_server is not None:
            self._metrics_server.close()


async def _quiet(aw: Any) -> None:
    try:
        await asyncio.wait_for(aw, 5.0)
    except Exception:
        pass


def _seq(m: Msg) -> str:
    try:
        return str(m.metadata.sequence.stream)
    except Exception:
        return "?"


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def serve(config: SinkConfig, on_ready: Any = None, stop: asyncio.Event | None = None) -> int:
    from ogrt.lifecycle import install_stop_signals

    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    sink = Sink(config)
    t0 = time.monotonic()
    try:
        await sink.start()
        if on_ready is not None:
            on_ready(sink)
        if await sink.bind(stop):
            log.info("consuming stream %s as %s", sink.source["stream"], sink.source["durable"])
            await sink.run(stop)
    except OSError as e:
        log.error("cannot start: %s", e)
        return 1
    finally:
        await sink.close()
    log.info("stopped after %.1f s: %d acked, %d redelivered, %d rejected", time.monotonic() - t0,
             sink.counts["acked"], sink.counts["redelivered"],
             sink.counts["malformed"] + sink.counts["refused"])
    return 0
