"""The relay ↔ collector protocol (protocol/relay.md): control frames and batches.

It uses the frames of protocol/ogrt.proto (4-byte BE type, 4-byte BE length, payload) with
types of its own, 100 and up; a batch carries ordinary record frames (10–13) back to back.
"""
from __future__ import annotations

import struct

from ogrt.framing import FrameDecoder, FrameError, encode_frame

__all__ = ["HELLO", "WELCOME", "REFUSED", "BATCH", "ACK", "batch_frame", "ack_frame", "parse_batch",
           "parse_ack"]

HELLO = 100    # relay → collector, first frame: a MUNGE credential (ASCII)
WELCOME = 101  # collector → relay: the credential is accepted (empty payload)
REFUSED = 102  # collector → relay: why not (UTF-8 text); the collector then closes
BATCH = 103    # relay → collector: uint64 BE batch id, then record frames back to back
ACK = 104      # collector → relay: uint64 BE batch id, every output persisted or spooled it

_ID = struct.Struct(">Q")


def batch_frame(batch_id: int, frames: bytes) -> bytes:
    return encode_frame(BATCH, _ID.pack(batch_id) + frames)


def ack_frame(batch_id: int) -> bytes:
    return encode_frame(ACK, _ID.pack(batch_id))


def parse_batch(payload: bytes, max_frame_bytes: int) -> tuple[int, list[tuple[int, bytes]]]:
    """(batch id, its record frames); FrameError when it is not exactly that."""
    if len(payload) < _ID.size:
        raise FrameError("bad_batch", f"batch of {len(payload)} bytes has no id")
    decoder = FrameDecoder(max_frame_bytes)
    frames = decoder.feed(payload[_ID.size:])
    if decoder.buffered:
        raise FrameError("bad_batch", f"batch ends inside a frame ({decoder.buffered} bytes)")
    return _ID.unpack_from(payload)[0], frames


def parse_ack(payload: bytes) -> int:
    if len(payload) != _ID.size:
        raise FrameError("bad_ack", f"ack of {len(payload)} bytes")
    return int(_ID.unpack(payload)[0])
