"""Incremental decoder for the OGRT frame stream (protocol/ogrt.proto).

A frame is a 4-byte big-endian type, a 4-byte big-endian length and `length` bytes of
payload. FrameDecoder takes the bytes of a TCP stream in arbitrary pieces and returns
whole frames; it never holds more than one frame (≤ max_frame_bytes) plus one header.
"""
from __future__ import annotations

import struct

__all__ = ["HEADER", "FrameError", "FrameDecoder", "parse_datagram", "encode_frame"]

HEADER = 8
_unpack = struct.Struct(">II").unpack_from
_pack = struct.Struct(">II").pack


class FrameError(ValueError):
    """The stream or datagram cannot be decoded; `reason` names it for metrics."""

    def __init__(self, reason: str, detail: str, frames: list[tuple[int, bytes]] | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.frames = frames or []  # complete frames that came before the error (TCP)


def encode_frame(mtype: int, payload: bytes) -> bytes:
    return _pack(mtype, len(payload)) + payload


class FrameDecoder:
    """Feed stream bytes, get (type, payload) frames back.

    Raises FrameError("too_large") when a header announces more than max_frame_bytes: the
    stream cannot be trusted after that and the caller closes it (the error's `frames` are
    the complete frames that came before it, still valid).
    """

    __slots__ = ("max_frame_bytes", "_buf", "_need")

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()  # an incomplete frame (amortized appends: no quadratic copies)
        self._need = 0  # bytes _buf must reach before another parse attempt is worthwhile

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held (0 when the stream ended on a frame boundary)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            buf: bytes = bytes(self._buf)
            self._buf = bytearray()
        else:
            buf = data
        frames: list[tuple[int, bytes]] = []
        off = 0
        end = len(buf)
        limit = self.max_frame_bytes
        need = HEADER
        while end - off >= HEADER:
            mtype, length = _unpack(buf, off)
            if length > limit:
                self._need = 0
                raise FrameError("too_large", f"frame of {length} bytes exceeds max_frame_bytes={limit}", frames)
            stop = off + HEADER + length
            if stop > end:
                need = HEADER + length
                break
            frames.append((mtype, buf[off + HEADER:stop]))
            off = stop
        if off < end:
            self._buf = bytearray(buf[off:] if off else buf)
            self._need = need
        return frames


def parse_datagram(data: bytes, max_frame_bytes: int) -> tuple[int, bytes]:
    """One UDP datagram = exactly one frame."""
    n = len(data)
    if n < HEADER:
        raise FrameError("truncated_header", f"datagram of {n} bytes is shorter than a frame header")
    mtype, length = _unpack(data, 0)
    if length > max_frame_bytes:
        raise FrameError("too_large", f"frame of {length} bytes exceeds max_frame_bytes={max_frame_bytes}")
    if length != n - HEADER:
        raise FrameError("bad_length", f"frame header says {length} bytes, datagram carries {n - HEADER}")
    return mtype, data[HEADER:]
