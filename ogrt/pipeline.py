"""Frames → records → every output runner.

One Ingest per receiving thread (the event loop for TCP, the UDP receiver thread), so its
counters and pending batch need no lock. Records are collected and handed to the output
runners in batches (flush()); the record dicts are shared by the outputs, which must not
modify them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from ogrt.metrics import Counters, sample
from ogrt.proto.ogrt_pb2 import PROCESS_END, PROCESS_START
from ogrt.ratelimit import RateLimitedLog
from ogrt.record import Decoder, RecordError, UserResolver

__all__ = ["Ingest", "Sink"]

log = logging.getLogger("ogrt.ingest")


class Sink(Protocol):
    def submit(self, records: list[dict[str, Any]]) -> None: ...


class Ingest:
    def __init__(self, sinks: Sequence[Sink], resolve_user: UserResolver, transport: str,
                 ratelog: RateLimitedLog, max_pending: int = 2000, direct: str = "accept") -> None:
        self.sinks = list(sinks)
        self.counters = Counters()
        self.transport = transport
        self.ratelog = ratelog
        self.max_pending = max_pending
        #: "reject": process records (straight from libraries) are refused and counted
        self.reject_direct = direct == "reject"
        self.pending: list[dict[str, Any]] = []
        self.room_wait = 0.0  # see flush()
        self._decode = Decoder(resolve_user).decode
        self._k_frames = sample("ogrt_received_frames_total", transport=transport)
        self._k_bytes = sample("ogrt_received_bytes_total", transport=transport)
        self._k_event = {e: sample("ogrt_records_total", event=e)
                         for e in ("start", "end", "job_start", "job_end")}
        self._k_reject: dict[str, str] = {}

    def received(self, nbytes: int, nframes: int) -> None:
        values = self.counters.values
        values[self._k_bytes] = values.get(self._k_bytes, 0) + nbytes
        if nframes:
            values[self._k_frames] = values.get(self._k_frames, 0) + nframes

    def frame(self, mtype: int, payload: bytes, peer: str) -> None:
        """Decode one frame (process or job record); a bad one is counted and logged (rate-limited)."""
        if self.reject_direct and (mtype == PROCESS_START or mtype == PROCESS_END):
            self.reject("direct_rejected", peer, "[server] direct = \"reject\": records only through a relay")
            return
        try:
            record = self._decode(mtype, payload, peer)
        except RecordError as e:
            self.reject(e.reason, peer, str(e))
            return
        values = self.counters.values
        key = self._k_event[record["event"]]
        values[key] = values.get(key, 0) + 1
        self.pending.append(record)
        if len(self.pending) >= self.max_pending:
            self.flush()

    def frames(self, frames: list[tuple[int, bytes]], peer: str) -> None:
        """frame() for many frames of one peer, with the loop's lookups hoisted."""
        if self.reject_direct:
            kept = [f for f in frames if f[0] != PROCESS_START and f[0] != PROCESS_END]
            if len(kept) < len(frames):
                self.reject("direct_rejected", peer, "[server] direct = \"reject\": records only through a relay",
                            len(frames) - len(kept))
                frames = kept
        decode = self._decode
        pending = self.pending
        starts = ends = 0
        jobs: list[str] = []
        for mtype, payload in frames:
            try:
                record = decode(mtype, payload, peer)
            except RecordError as e:
                self.reject(e.reason, peer, str(e))
                continue
            pending.append(record)
            if mtype == PROCESS_START:
                starts += 1
            elif mtype == PROCESS_END:
                ends += 1
            else:
                jobs.append(record["event"])
            if len(pending) >= self.max_pending:
                self.flush()
                pending = self.pending
        values = self.counters.values
        if starts:
            key = self._k_event["start"]
            values[key] = values.get(key, 0) + starts
        if ends:
            key = self._k_event["end"]
            values[key] = values.get(key, 0) + ends
        for event in jobs:
            key = self._k_event[event]
            values[key] = values.get(key, 0) + 1

    def reject(self, reason: str, peer: str, detail: str, n: int = 1) -> None:
        key = self._k_reject.get(reason)
        if key is None:
            key = self._k_reject[reason] = sample("ogrt_rejected_total", reason=reason)
        self.counters.inc(key, n)
        self.ratelog.warning(reason, "rejected (%s) from %s over %s: %s", reason, peer, self.transport, detail)

    def flush(self) -> None:
        """Hand the pending records to every sink. With room_wait > 0 (only for a thread
        that may block, never the event loop) first wait up to that long for queue room in
        sinks that offer wait_room(), so a busy output is not made to spill to its spool."""
        batch = self.pending
        if not batch:
            return
        self.pending = []
        sinks = self.sinks
        if self.room_wait > 0:
            deadline = time.monotonic() + self.room_wait
            for sink in sinks:
                wait_room = getattr(sink, "wait_room", None)
                if wait_room is not None:
                    wait_room(len(batch), max(0.0, deadline - time.monotonic()))
        if len(sinks) == 1:
            sinks[0].submit(batch)
        else:
            for sink in sinks:
                sink.submit(list(batch))
