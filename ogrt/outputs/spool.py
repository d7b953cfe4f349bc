"""Bounded on-disk spool: a FIFO of record batches that survives a daemon restart.

Layout of a spool directory (one per output and worker):

    seg-0000000000000001.spool   append-only segment files, replayed in number order
    cursor                       "SEGMENT OFFSET": where replay resumes (absent: at the start)

Each entry in a segment is a 20-byte header then the payload:

    uint32 BE  payload length
    uint32 BE  CRC-32 of (the 12 bytes below + payload)
    uint32 BE  number of records in the batch
    float64 BE time the batch was submitted (Unix seconds; for the latency metric)
    payload    orjson array of record dicts

When the spool is opened, every entry after the cursor is checked; an entry that is cut
short or fails its CRC (a torn tail after a crash) ends its segment: the file is cut there
and the loss is logged. Replay is at-least-once: an entry is removed (the cursor moves
past it) only after the output wrote it; the cursor is saved at most every 0.5 s during
replay (and at close), so a crash replays at most the last 0.5 s of entries again (the
SQL outputs upsert by uuid, so that adds no rows there).
"""
from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import orjson

from ogrt.filemodes import FILE_MODE, make_dirs

log = logging.getLogger(__name__)

CURSOR_INTERVAL = 0.5  # seconds between cursor writes during replay
HEADER = struct.Struct(">IIId")
_TAIL = struct.Struct(">Id")  # the CRC-covered part of the header
_SEG_RE = re.compile(r"^seg-(\d{16})\.spool$")


def _seg_name(n: int) -> str:
    return f"seg-{n:016d}.spool"


class Spool:
    """Thread-safe FIFO of batches on disk, bounded by `max_bytes`."""

    def __init__(self, directory: Path | str, max_bytes: int, segment_bytes: int = 0) -> None:
        self.dir = Path(directory)
        self.max_bytes = int(max_bytes)
        self.segment_bytes = segment_bytes or max(1 << 20, min(64 << 20, self.max_bytes // 16))
        self._lock = threading.Lock()
        self._segments: list[int] = []       # existing segment numbers, ascending
        self._head_off = 0                    # read offset in self._segments[0]
        self._tail_fd: int | None = None      # append fd of self._segments[-1]
        self._tail_size = 0
        self._records = 0
        self._entries = 0
        self._bytes = 0
        self._peeked: tuple[int, int, int, int] | None = None  # seg, off, entry length, records
        self._read: tuple[int, Any] | None = None  # (segment number, open file) for replay
        self._cursor_at = 0.0                 # monotonic time of the last cursor write
        self.torn_bytes = 0                   # bytes cut away when opening (torn tails)
        self._open()

    # -- opening and checking ------------------------------------------------------
    def _open(self) -> None:
        make_dirs(self.dir)
        segs = sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _SEG_RE.match(p.name)))
        cur_seg, cur_off = self._read_cursor()
        for n in [s for s in segs if s < cur_seg]:
            self._unlink(n)
        segs = [s for s in segs if s >= cur_seg]
        self._segments = segs
        self._head_off = cur_off if segs and segs[0] == cur_seg else 0
        for i, n in enumerate(segs):
            self._scan(n, self._head_off if i == 0 else 0)
        if self.torn_bytes:
            log.error("spool %s: cut %d bytes of torn or corrupt entries (crash during a write?)",
                      self.dir, self.torn_bytes)
        if self._records == 0:
            self._reset()

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.dir / "cursor").read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _scan(self, n: int, start: int) -> None:
        """Count the valid entries of segment n from `start`; cut the file at the first bad one."""
        path = self.dir / _seg_name(n)
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            off = start
            f.seek(off)
            while off < size:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    break
                length, crc, count, _t = HEADER.unpack(head)
                if off + HEADER.size + length > size:
                    break
                payload = f.read(length)
                if zlib.crc32(payload, zlib.crc32(head[8:])) != crc:
                    break
                off += HEADER.size + length
                self._records += count
                self._entries += 1
            if off < size:
                self.torn_bytes += size - off
                f.truncate(off)
            self._bytes += off - start

    def _unlink(self, n: int) -> None:
        try:
            os.unlink(self.dir / _seg_name(n))
        except FileNotFoundError:
            pass

    def _write_cursor(self, force: bool = True) -> None:
        """Persist the replay position (at most every CURSOR_INTERVAL s unless forced: after a
        crash, the entries replayed since are replayed again, which is allowed)."""
        now = time.monotonic()
        if not force and now - self._cursor_at < CURSOR_INTERVAL:
            return
        self._cursor_at = now
        tmp = self.dir / "cursor.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(f"{self._segments[0]} {self._head_off}\n")
        os.replace(tmp, self.dir / "cursor")

    def _close_read(self) -> None:
        if self._read is not None:
            self._read[1].close()
            self._read = None

    def _reset(self) -> None:
        """Empty spool: remove every file so a fresh segment starts next time."""
        self._close_read()
        if self._tail_fd is not None:
            os.close(self._tail_fd)
            self._tail_fd = None
        for n in self._segments:
            self._unlink(n)
        self._segments = []
        self._head_off = 0
        self._bytes = self._records = self._entries = 0
        self._peeked = None
        try:
            os.unlink(self.dir / "cursor")
        except FileNotFoundError:
            pass

    # -- public API ----------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Records waiting in the spool."""
        return self._records

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def entries(self) -> int:
        return self._entries

    def append(self, records: list[dict[str, Any]], submitted: float, sync: bool = True) -> bool:
        """Add a batch at the tail. False (nothing written) when it would exceed max_bytes."""
        payload = orjson.dumps(records)
        tail = _TAIL.pack(len(records), submitted)
        crc = zlib.crc32(payload, zlib.crc32(tail))
        entry = struct.pack(">II", len(payload), crc) + tail + payload
        with self._lock:
            if self._bytes + len(entry) > self.max_bytes:
                return False
            if self._tail_fd is None or self._tail_size >= self.segment_bytes:
                self._new_segment()
            assert self._tail_fd is not None
            start = self._tail_size
            try:
                view = memoryview(entry)
                while view:
                    view = view[os.write(self._tail_fd, view):]
                if sync:
                    os.fsync(self._tail_fd)
            except OSError:
                os.ftruncate(self._tail_fd, start)
                raise
            self._tail_size += len(entry)
            self._bytes += len(entry)
            self._records += len(records)
            self._entries += 1
        return True

    def sync(self) -> None:
        """fsync what append(sync=False) wrote."""
        with self._lock:
            if self._tail_fd is not None:
                os.fsync(self._tail_fd)

    def _new_segment(self) -> None:
        if self._tail_fd is not None:
            os.close(self._tail_fd)
        n = self._segments[-1] + 1 if self._segments else 1
        fd = os.open(self.dir / _seg_name(n), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        if not self._segments:
            self._head_off = 0
        self._segments.append(n)
        self._tail_fd, self._tail_size = fd, os.fstat(fd).st_size
        if len(self._segments) == 1:
            self._write_cursor()

    def peek(self) -> tuple[list[dict[str, Any]], float] | None:
        """The oldest batch and its submit time, without removing it; None when empty."""
        with self._lock:
            while self._records and self._segments:
                n = self._segments[0]
                path = self.dir / _seg_name(n)
                if self._read is None or self._read[0] != n:
                    self._close_read()
                    self._read = (n, open(path, "rb"))
                f = self._read[1]
                f.seek(self._head_off)
                head = f.read(HEADER.size)
                if len(head) == HEADER.size:
                    length, crc, count, t = HEADER.unpack(head)
                    payload = f.read(length)
                    if len(payload) == length and zlib.crc32(payload, zlib.crc32(head[8:])) == crc:
                        self._peeked = (n, self._head_off, HEADER.size + length, count)
                        return orjson.loads(payload), t
                    log.error("spool %s: corrupt entry in %s at %d, skipping the rest",
                              self.dir, path.name, self._head_off)
                # end of (or corrupt) head segment: move to the next one
                if len(self._segments) == 1:
                    self._reset()
                    return None
                self._drop_head_segment()
            return None

    def _drop_head_segment(self) -> None:
        n = self._segments.pop(0)
        self._close_read()
        self._unlink(n)
        self._head_off = 0
        self._write_cursor()

    def pop(self) -> None:
        """Remove the batch returned by the last peek()."""
        with self._lock:
            if self._peeked is None:
                return
            n, off, length, count = self._peeked
            self._peeked = None
            if not self._segments or self._segments[0] != n or self._head_off != off:
                return
            self._head_off += length
            self._bytes -= length
            self._records -= count
            self._entries -= 1
            if self._records == 0:
                self._reset()
                return
            size = (self._tail_size if len(self._segments) == 1 and self._tail_fd is not None
                    else os.stat(self.dir / _seg_name(n)).st_size)
            if self._head_off >= size and len(self._segments) > 1:
                self._drop_head_segment()
            else:
                self._write_cursor(force=False)

    def close(self) -> None:
        with self._lock:
            self._close_read()
            if self._segments:
                self._write_cursor()
            if self._tail_fd is not None:
                os.close(self._tail_fd)
                self._tail_fd = None
