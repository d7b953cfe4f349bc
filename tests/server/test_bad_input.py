"""Every byte from the network is untrusted: bad input is rejected or bounded, counted by
reason, and never costs a valid record from another peer."""
from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
import uuid as uuidlib

from tests.fixtures.server import frame, start_msg

MAX_FRAME = 65536


def _closed_by_server(c: socket.socket, timeout: float = 10.0) -> bool:
    c.settimeout(timeout)
    try:
        return c.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_bad_frames_are_counted_and_valid_ones_survive(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    srv = ogrt_server(f"[server]\nmax_frame_bytes = {MAX_FRAME}\nidle_timeout = 1.0\n")
    good: list[str] = []

    def valid(**kw) -> bytes:  # type: ignore[no-untyped-def]
        m = start_msg(**kw)
        good.append(str(uuidlib.UUID(bytes=m.uuid)))
        return frame(12, m)

    # a length over max_frame_bytes: the connection is closed
    c = socket.create_connection(("127.0.0.1", srv.port))
    c.sendall(valid() + struct.pack(">II", 12, MAX_FRAME + 1) + b"x" * 100)
    assert _closed_by_server(c)
    c.close()
    assert srv.wait_metric('ogrt_rejected_total{reason="too_large"}', 1) == 1
    # unknown types and unparsable payloads are skipped; the stream goes on
    with socket.create_connection(("127.0.0.1", srv.port)) as c:
        c.sendall(frame(99, b"whatever") + frame(10, b"") + valid() + frame(12, b"\xff\xff\xff\xff")
                  + frame(13, b"\x0a\x03abc") + frame(14, b"") + valid())
    # truncated header then close; truncated header over UDP; bad length over UDP
    srv.send_tcp(b"\x00\x00\x00")
    srv.send_udp(b"\x00\x00\x00\x0c")
    srv.send_udp(struct.pack(">II", 12, 500) + b"short")
    # random datagrams
    rnd = random.Random(1)
    for _ in range(200):
        srv.send_udp(rnd.randbytes(rnd.randint(0, 1500)))
    # half a frame, then a stall: closed after idle_timeout
    stall = socket.create_connection(("127.0.0.1", srv.port))
    stall.sendall(frame(12, start_msg())[:30])
    t0 = time.monotonic()
    assert _closed_by_server(stall)
    assert 0.5 < time.monotonic() - t0 < 8
    stall.close()
    # a valid record from another peer meanwhile
    srv.send_tcp(valid(), source="127.0.0.3")
    srv.send_udp(valid(), source="127.0.0.3")

    m = srv.metrics()
    assert srv.stop() == 0
    got = {r["id"] for r in srv.records(len(good), timeout=2)}
    assert got == set(good)

    def rej(reason: str) -> float:
        return m.get(f'ogrt_rejected_total{{reason="{reason}"}}', 0)

    assert rej("too_large") >= 1
    assert rej("unknown_type") >= 2
    assert rej("bad_payload") >= 1 and rej("bad_uuid") >= 1
    assert rej("truncated_frame") == 1
    assert rej("idle_timeout") == 1
    assert rej("truncated_header") >= 1 and rej("bad_length") >= 1
    rejects = sum(v for k, v in m.items() if k.startswith("ogrt_rejected_total"))
    assert rejects >= 1 + 2 + 2 + 1 + 2 + 200 + 1  # every bad frame and datagram is counted
    err = srv.stderr_text()
    assert "rejected (too_large)" in err
    assert rej("too_large") > 10 and err.count("rejected (too_large)") <= 5  # the log is rate-limited


def test_idle_connections_and_a_flood_are_bounded(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    srv = ogrt_server("[server]\nmax_connections = 400\nmax_connections_per_peer = 200\nidle_timeout = 30.0\n")
    # ~1,000 idle connections from one peer: 200 are held, the rest are refused
    idle = []
    for _ in range(1000):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", srv.port))
        except OSError:
            s.close()
            continue
        idle.append(s)
    assert srv.wait_metric('ogrt_rejected_total{reason="max_connections_per_peer"}', 800, timeout=20) >= 700
    assert srv.metric("ogrt_connections_open") == 200

    # a flood of valid records from one peer on several connections and UDP...
    flood_ids: list[str] = []
    payloads = []
    for _ in range(4):
        ms = [start_msg() for _ in range(2500)]
        flood_ids += [str(uuidlib.UUID(bytes=m.uuid)) for m in ms]
        payloads.append(b"".join(frame(12, m) for m in ms))

    errors: list[BaseException] = []

    def flood(data: bytes) -> None:
        try:
            with socket.create_connection(("127.0.0.1", srv.port), source_address=("127.0.0.4", 0)) as c:
                c.sendall(data)
        except OSError as e:
            errors.append(e)

    udp_frames = [frame(12, start_msg()) for _ in range(5000)]

    def udp_flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.4", 0))
            for f in udp_frames:
                u.sendto(f, ("127.0.0.1", srv.port))

    threads = [threading.Thread(target=flood, args=(p,)) for p in payloads] + [threading.Thread(target=udp_flood)]
    for t in threads:
        t.start()
    # ... while another peer sends its records
    other = [start_msg(hostname=b"other") for _ in range(10)]
    for m in other:
        srv.send_tcp(frame(12, m), source="127.0.0.9")
    for t in threads:
        t.join(60)
    rss_mb = _rss_kb(srv.pid) / 1024
    for s in idle:
        s.close()
    assert srv.stop() == 0
    assert not errors
    recs = srv.records(len(flood_ids) + 10, timeout=5)
    ids = {r["id"] for r in recs}
    missing = set(flood_ids) - ids
    assert not missing, (len(missing), srv.stderr_text()[-3000:])
    assert {str(uuidlib.UUID(bytes=m.uuid)) for m in other} <= ids
    assert set(flood_ids) <= ids  # TCP loses nothing
    assert rss_mb < 200, f"daemon RSS {rss_mb:.0f} MB"


def test_memory_limit_for_incomplete_frames(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    srv = ogrt_server("[server]\nmax_frame_bytes = 1048576\nmax_buffered_bytes = 2097152\n")
    conns = []
    for _ in range(6):  # each announces 1 MB and sends 600 kB of it: 3.6 MB > 2 MB budget
        c = socket.create_connection(("127.0.0.1", srv.port))
        c.sendall(struct.pack(">II", 12, 1 << 20) + os.urandom(600_000))
        conns.append(c)
    assert srv.wait_metric('ogrt_rejected_total{reason="memory_limit"}', 1) >= 1
    srv.send_tcp(frame(12, start_msg()), source="127.0.0.5")
    for c in conns:
        c.close()
    assert srv.stop() == 0
    assert len(srv.records(1, timeout=2)) == 1
