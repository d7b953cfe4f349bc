"""Joining UDP Fragment messages (type FRAGMENT) back into ProcessStart/ProcessEnd payloads.

Pieces are keyed by (sender IP, uuid, type) and held in memory bounded by total bytes,
number of pending records and age; whatever exceeds a bound is evicted (oldest first)
and counted. Not thread-safe: each UDP receiver owns one Reassembler.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ogrt.framing import FrameError, parse_datagram
from ogrt.proto import ogrt_pb2
from ogrt.proto.ogrt_pb2 import FRAGMENT, PROCESS_END, PROCESS_START

__all__ = ["FragmentError", "Reassembler"]

MAX_PIECES = 4096


class FragmentError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class _Pending:
    count: int
    total_length: int
    started: float
    pieces: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """add() a Fragment payload; returns (type, joined payload) when the last piece arrives."""

    def __init__(
        self,
        max_frame_bytes: int,
        max_bytes: int = 64 << 20,
        max_entries: int = 16384,
        timeout: float = 10.0,
        on_drop: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.timeout = timeout
        self._on_drop = on_drop or (lambda reason, n: None)
        self._clock = clock
        self._pending: OrderedDict[tuple[str, bytes, int], _Pending] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, payload: bytes, peer: str) -> tuple[int, bytes] | None:
        msg = ogrt_pb2.Fragment()  # fresh: re-parsing one upb message grows its arena
        try:
            msg.ParseFromString(payload)
        except Exception as exc:
            raise FragmentError("bad_payload", f"fragment does not parse: {exc}") from None
        mtype, index, count, total = msg.type, msg.index, msg.count, msg.total_length
        if mtype not in (PROCESS_START, PROCESS_END):
            raise FragmentError("bad_fragment", f"fragment of message type {mtype}")
        if not 2 <= count <= MAX_PIECES or index >= count:
            raise FragmentError("bad_fragment", f"fragment {index} of {count}")
        if total > self.max_frame_bytes:
            raise FragmentError("too_large", f"fragmented record of {total} bytes exceeds max_frame_bytes")
        if len(msg.uuid) != 16:
            raise FragmentError("bad_uuid", f"fragment uuid has {len(msg.uuid)} bytes")
        now = self._clock()
        self.expire(now)
        key = (peer, msg.uuid, mtype)
        entry = self._pending.get(key)
        if entry is None:
            entry = _Pending(count, total, now)
            self._pending[key] = entry
        elif entry.count != count or entry.total_length != total:
            self._drop(key, "fragment_mismatch")
            raise FragmentError("fragment_mismatch", "fragments of one record disagree on count or length")
        data = msg.data
        if index in entry.pieces:
            raise FragmentError("fragment_duplicate", f"fragment {index} of {count} arrived twice")
        if entry.size + len(data) > total:
            self._drop(key, "fragment_mismatch")
            raise FragmentError("fragment_mismatch", "fragments exceed their announced total length")
        entry.pieces[index] = data
        entry.size += len(data)
        self.bytes += len(data)
        if len(entry.pieces) == count:
            del self._pending[key]
            self.bytes -= entry.size
            if entry.size != total:
                raise FragmentError("fragment_mismatch", "joined fragments differ from their total length")
            return mtype, b"".join(entry.pieces[i] for i in range(count))
        while self.bytes > self.max_bytes or len(self._pending) > self.max_entries:
            self._drop(next(iter(self._pending)), "fragment_evicted")
        return None

    def datagram(self, data: bytes, key: str, reject: Callable[[str, str], None]) -> tuple[int, bytes] | None:
        """One datagram's record as (type, payload): its frame's, or the one its Fragment
        completes (pieces joined per `key`, the sender); None while pieces are missing, or
        when the datagram is bad: then reject(reason, detail) was called."""
        try:
            mtype, payload = parse_datagram(data, self.max_frame_bytes)
        except FrameError as e:
            reject(e.reason, str(e))
            return None
        if mtype != FRAGMENT:
            return mtype, payload
        try:
            return self.add(payload, key)
        except FragmentError as e:
            reject(e.reason, str(e))
            return None

    def expire(self, now: float | None = None) -> None:
        """Drop records whose first piece is older than `timeout` (oldest are first)."""
        if now is None:
            now = self._clock()
        limit = now - self.timeout
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if entry.started > limit:
                break
            self._drop(key, "fragment_timeout")

    def _drop(self, key: tuple[str, bytes, int], reason: str) -> None:
        entry = self._pending.pop(key)
        self.bytes -= entry.size
        self._on_drop(reason, 1)
