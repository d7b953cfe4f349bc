"""The frame decoder and the fragment reassembler, in-process, driven by hypothesis."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogrt.fragments import FragmentError, Reassembler
from ogrt.framing import FrameDecoder, FrameError, encode_frame, parse_datagram
from ogrt.proto import ogrt_pb2

MAX = 4096
frames_st = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=300)), max_size=20)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, prev = [], 0
    for p in points + [len(data)]:
        pieces.append(data[prev:p])
        prev = p
    return pieces


@settings(max_examples=300, deadline=None)
@given(frames_st, st.lists(st.integers(0, 10_000), max_size=30))
def test_any_split_gives_the_same_frames(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(t, p) for t, p in frames)
    dec = FrameDecoder(MAX)
    out: list[tuple[int, bytes]] = []
    for piece in _split(stream, cuts):
        out += dec.feed(piece)
    assert out == frames
    assert dec.buffered == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_only_frames_or_frame_error(chunks: list[bytes]) -> None:
    dec = FrameDecoder(MAX)
    for chunk in chunks:
        try:
            for _, payload in dec.feed(chunk):
                assert len(payload) <= MAX
        except FrameError as e:
            assert e.reason == "too_large"
            return
        assert dec.buffered < MAX + 8 + 64


def test_too_large_is_rejected_before_buffering() -> None:
    dec = FrameDecoder(MAX)
    with pytest.raises(FrameError) as ei:
        dec.feed(encode_frame(13, b"ok") + struct.pack(">II", 12, MAX + 1))
    assert ei.value.reason == "too_large"
    assert ei.value.frames == [(13, b"ok")]  # what came before is still delivered


def test_byte_at_a_time_is_linear() -> None:
    big = encode_frame(12, b"x" * 200_000)
    dec = FrameDecoder(1 << 20)
    out = []
    for i in range(0, len(big), 7):
        out += dec.feed(big[i:i + 7])
    assert out == [(12, b"x" * 200_000)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_datagram_parser(data: bytes) -> None:
    try:
        mtype, payload = parse_datagram(data, MAX)
    except FrameError as e:
        assert e.reason in ("truncated_header", "too_large", "bad_length")
    else:
        assert data == encode_frame(mtype, payload)


def _pieces(payload: bytes, n: int, uuid: bytes = b"u" * 16, mtype: int = 12) -> list[bytes]:
    size = -(-len(payload) // n)
    return [ogrt_pb2.Fragment(uuid=uuid, type=mtype, index=i, count=n, total_length=len(payload),
                              data=payload[i * size:(i + 1) * size]).SerializeToString() for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=2, max_size=2000), st.integers(2, 8), st.randoms())
def test_fragments_join_in_any_order(payload: bytes, n: int, rnd) -> None:  # type: ignore[no-untyped-def]
    pieces = _pieces(payload, n)
    rnd.shuffle(pieces)
    r = Reassembler(MAX)
    results = [r.add(p, "10.0.0.1") for p in pieces]
    assert [x for x in results if x is not None] == [(12, payload)]
    assert len(r) == 0 and r.bytes == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=30))
def test_fragment_garbage_is_bounded(blobs: list[bytes]) -> None:
    dropped: list[str] = []
    r = Reassembler(MAX, max_bytes=500, max_entries=4, on_drop=lambda reason, n: dropped.append(reason))
    for b in blobs:
        try:
            r.add(b, "10.0.0.2")
        except FragmentError:
            pass
        assert r.bytes <= 500 + 80 and len(r) <= 5


def test_fragment_bounds_and_timeout() -> None:
    now = [0.0]
    dropped: list[str] = []
    r = Reassembler(MAX, max_entries=2, timeout=5.0, clock=lambda: now[0],
                    on_drop=lambda reason, n: dropped.append(reason))
    for i in range(3):
        r.add(_pieces(b"abcdef", 3, uuid=bytes([i]) * 16)[0], "p")
    assert dropped == ["fragment_evicted"] and len(r) == 2
    now[0] = 10.0
    r.expire()
    assert dropped.count("fragment_timeout") == 2 and len(r) == 0 and r.bytes == 0
    with pytest.raises(FragmentError):  # index out of range
        r.add(ogrt_pb2.Fragment(uuid=b"u" * 16, type=12, index=3, count=3, total_length=6).SerializeToString(), "p")
    with pytest.raises(FragmentError):  # more than max_frame_bytes joined
        r.add(ogrt_pb2.Fragment(uuid=b"u" * 16, type=12, index=0, count=3, total_length=MAX + 1).SerializeToString(), "p")


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([10, 11, 12, 13, 14, 99]), st.binary(max_size=300))
def test_payload_decoder_only_raises_record_error(mtype: int, payload: bytes) -> None:
    import json

    from ogrt.record import Decoder, RecordError

    try:
        rec = Decoder(lambda uid: None).decode(mtype, payload, "10.0.0.1")
    except RecordError as e:
        assert e.reason in ("unknown_type", "bad_payload", "bad_uuid", "bad_time", "bad_job")
    else:
        json.dumps(rec)  # whatever parsed is JSON-ready text
