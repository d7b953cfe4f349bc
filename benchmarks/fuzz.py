#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris) of what the relay and the collector parse from others.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python benchmarks/fuzz.py --seconds 300          # prints runs, coverage, findings

One input drives, from its bytes: the TCP frame decoder (fed in input-chosen pieces), the UDP
datagram parser, the fragment reassembler (bounded small so eviction paths run), the record
decoder (every record must also serialize to JSON, as the outputs do), the relay's identity
corrector (with input-chosen kernel credentials) and the relay batch parser. Allowed outcomes
are the documented errors (FrameError, FragmentError, RecordError: a counted rejection);
anything else is a crash, and an input running longer than --timeout s is a hang. libFuzzer
writes each finding to <out>/crash-* or timeout-*; each one found becomes a regression test in
tests/relay/test_fuzz_regressions.py. Not part of `make test`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

try:
    import atheris
except ImportError:  # pragma: no cover
    sys.exit("benchmarks/fuzz.py needs atheris: .venv/bin/pip install -e '.[fuzz]'")

with atheris.instrument_imports(include=["ogrt"]):
    import orjson

    from ogrt.fragments import FragmentError, Reassembler
    from ogrt.framing import FrameDecoder, FrameError, parse_datagram
    from ogrt.metrics import Counters
    from ogrt.ratelimit import RateLimitedLog
    from ogrt.record import Decoder, RecordError
    from ogrt.relay.receive import Corrector
    from ogrt.relay.wire import parse_batch

MAX_FRAME = 1 << 16


class _Quiet:
    def warning(self, *a: object) -> None: ...
    def log(self, *a: object) -> None: ...


_ratelog = RateLimitedLog(_Quiet())  # type: ignore[arg-type]
_decoder = Decoder(lambda uid: "user" if uid == 0 else None)
_corrector = Corrector(Counters(), _ratelog)
_clock = [0.0]
_reassembler = Reassembler(MAX_FRAME, max_bytes=4096, max_entries=8, timeout=5.0, clock=lambda: _clock[0])


def check_frames(frames: list[tuple[int, bytes]]) -> None:
    for mtype, payload in frames:
        try:
            rec = _decoder.decode(mtype, payload, "fuzz")
        except RecordError:
            continue
        orjson.dumps(rec)  # every record must be JSON-ready, as the outputs write it


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    what = fdp.ConsumeIntInRange(0, 4)
    if what == 0:  # a TCP stream in pieces
        dec = FrameDecoder(fdp.ConsumeIntInRange(8, MAX_FRAME))
        while fdp.remaining_bytes():
            piece = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 4096))
            try:
                frames = dec.feed(piece)
            except FrameError as e:
                check_frames(e.frames)
                return
            assert dec.buffered <= dec.max_frame_bytes + 8 + len(piece)
            check_frames(frames)
    elif what == 1:  # one datagram
        try:
            check_frames([parse_datagram(fdp.ConsumeBytes(fdp.remaining_bytes()), MAX_FRAME)])
        except FrameError:
            pass
    elif what == 2:  # fragments from a few senders, time moving on
        while fdp.remaining_bytes():
            _clock[0] += fdp.ConsumeIntInRange(0, 3)
            peer = str(fdp.ConsumeIntInRange(0, 2))
            try:
                joined = _reassembler.add(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)), peer)
            except FragmentError:
                continue
            assert 0 <= _reassembler.bytes <= _reassembler.max_bytes + 512
            if joined is not None:
                check_frames([joined])
    elif what == 3:  # the relay's corrector, then the collector decoding its output
        cred = (fdp.ConsumeIntInRange(0, 1 << 22), fdp.ConsumeIntInRange(0, 0xFFFFFFFE),
                fdp.ConsumeIntInRange(0, 0xFFFFFFFE))
        mtype = fdp.ConsumeIntInRange(9, 15)
        out = _corrector.correct(mtype, fdp.ConsumeBytes(fdp.remaining_bytes()), cred)
        if out is not None:
            check_frames([parse_datagram(out, 1 << 30)])
    else:  # a relay batch
        try:
            _, frames = parse_batch(fdp.ConsumeBytes(fdp.remaining_bytes()), MAX_FRAME)
        except FrameError:
            return
        check_frames(frames)


def seeds(directory: Path) -> None:
    """A few realistic inputs to start from (records as the library sends them)."""
    from ogrt.framing import encode_frame
    from ogrt.proto import ogrt_pb2

    start = ogrt_pb2.ProcessStart(uuid=b"u" * 16, time_us=1_700_000_000_000_000, exe=b"/bin/true", pid=7,
                                  uid=1000, gid=1000, hostname=b"n1", args=[b"true", b"\xff"],
                                  env=[b"A=b"], libs=[ogrt_pb2.SharedObject(path=b"/lib/libc.so.6")])
    end = ogrt_pb2.ProcessEnd(uuid=b"u" * 16, time_us=1_700_000_000_100_000, start_time_us=1_700_000_000_000_000,
                              pid=7, uid=1000, exit_status=0)
    payload = start.SerializeToString()
    frag = ogrt_pb2.Fragment(uuid=b"u" * 16, type=12, index=0, count=2, total_length=len(payload),
                             data=payload[:40]).SerializeToString()
    for i, body in enumerate([encode_frame(12, payload) + encode_frame(13, end.SerializeToString()), frag,
                              b"\0" * 8 + encode_frame(12, payload)]):
        for what in range(5):
            (directory / f"seed-{i}-{what}").write_bytes(bytes([what]) * 8 + body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=180, help="total fuzzing time (default 180)")
    ap.add_argument("--timeout", type=int, default=5, help="seconds per input before it counts as a hang")
    ap.add_argument("--out", default=None, help="directory for the corpus and findings (default: a temp dir)")
    args, rest = ap.parse_known_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="ogrt-fuzz-"))
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds(corpus)
    os.chdir(out)
    print(f"fuzzing {args.seconds} s; corpus and findings in {out}", flush=True)
    argv = [sys.argv[0], f"-max_total_time={args.seconds}", f"-timeout={args.timeout}", "-rss_limit_mb=2048",
            f"-artifact_prefix={out}/", "-print_final_stats=1", *rest, str(corpus)]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
