"""A real `ogrt server` on real sockets: TCP streams, UDP datagrams, fragments, metrics."""
from __future__ import annotations

import random
import socket
import urllib.error
import urllib.request
import uuid as uuidlib

from ogrt.proto import ogrt_pb2
from ogrt.textenc import unescape
from tests.fixtures.server import end_msg, frame, start_msg

NASTY = b"/tmp/we\xffird\n\"quote'\\back\x00slash"


def _fragments(payload: bytes, n: int, uuid: bytes, mtype: int = 12) -> list[bytes]:
    size = -(-len(payload) // n)
    return [frame(14, ogrt_pb2.Fragment(uuid=uuid, type=mtype, index=i, count=n, total_length=len(payload),
                                        data=payload[i * size:(i + 1) * size])) for i in range(n)]


def test_tcp_udp_fragments_into_jsonl(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    srv = ogrt_server()
    rnd = random.Random(7)
    # many frames on one TCP connection, written in odd-sized pieces
    starts = [start_msg(pid=i) for i in range(300)]
    ends = [end_msg(uuid=m.uuid, pid=m.pid, exit_status=i % 3) for i, m in enumerate(starts)]
    stream = b"".join(frame(12, s) + frame(13, e) for s, e in zip(starts, ends))
    with socket.create_connection(("127.0.0.1", srv.port)) as c:
        pos = 0
        while pos < len(stream):
            step = rnd.randint(1, 5000)
            c.sendall(stream[pos:pos + step])
            pos += step
    # UDP datagrams from another loopback address
    udp = [start_msg(exe=b"/bin/udp") for _ in range(50)]
    for m in udp:
        srv.send_udp(frame(12, m), source="127.0.0.2")
    # one big record, split into fragments, sent shuffled
    libs = [ogrt_pb2.SharedObject(path=b"/very/long/path/" + b"x" * 150 + b"/lib%d.so" % i) for i in range(60)]
    big = start_msg(exe=NASTY, args=[NASTY, b"\xfe\xff"], env=[b"PATH=" + NASTY], libs=libs)
    pieces = _fragments(big.SerializeToString(), 5, big.uuid)
    rnd.shuffle(pieces)
    for p in pieces:
        srv.send_udp(p)

    want = 600 + 50 + 1
    recs = srv.records(want, timeout=20)
    m = srv.metrics()
    assert srv.stop() == 0
    recs = srv.records(want, timeout=1)
    assert len(recs) == want
    ids = [(r["event"], r["id"]) for r in recs]
    assert len(set(ids)) == want
    assert {str(uuidlib.UUID(bytes=s.uuid)) for s in starts} <= {i for e, i in ids if e == "start"}
    by_id = {(r["event"], r["id"]): r for r in recs}
    e0 = by_id[("end", str(uuidlib.UUID(bytes=ends[1].uuid)))]
    assert e0["exit_status"] == 1 and e0["peer"] == "127.0.0.1"
    u0 = by_id[("start", str(uuidlib.UUID(bytes=udp[0].uuid)))]
    assert u0["peer"] == "127.0.0.2" and u0["exe"] == "/bin/udp"
    b = by_id[("start", str(uuidlib.UUID(bytes=big.uuid)))]
    assert unescape(b["exe"]) == NASTY and unescape(b["args"][1]) == b"\xfe\xff"
    assert unescape(b["env"]["PATH"]) == NASTY and len(b["libs"]) == 60
    assert m['ogrt_records_total{event="start"}'] == 351 and m['ogrt_records_total{event="end"}'] == 300
    assert m['ogrt_received_frames_total{transport="tcp"}'] == 600
    assert m['ogrt_received_frames_total{transport="udp"}'] == 55
    assert m["ogrt_connections_total"] == 1 and m["ogrt_fragments_pending"] == 0
    assert not any(k.startswith("ogrt_rejected_total") for k in m)


def test_metrics_endpoint(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    srv = ogrt_server(jsonl=False, extra_outputs='[outputs.nothing]\ntype = "null"\n')
    for _ in range(3):
        srv.send_tcp(frame(12, start_msg()))
    assert srv.wait_metric('ogrt_output_persisted_total{output="nothing"}', 3) == 3
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    assert "# TYPE ogrt_records_total counter" in text
    assert 'ogrt_records_total{event="start"} 3' in text
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/other", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    # garbage on the metrics port does not hurt
    with socket.create_connection(("127.0.0.1", srv.metrics_port)) as c:
        c.sendall(b"\x00" * 100 + b"\r\n\r\n")
        c.recv(100)
    assert srv.metrics()["ogrt_connections_total"] == 3
    assert srv.stop() == 0


def test_dual_stack_address(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    if not socket.has_ipv6:
        import pytest
        pytest.skip("no IPv6 in this kernel")
    srv = ogrt_server('[server]\naddress = "::"\n')
    a, b = start_msg(), start_msg()
    srv.send_tcp(frame(12, a))  # IPv4 into the dual-stack socket
    with socket.create_connection(("::1", srv.port)) as c:
        c.sendall(frame(12, b))
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        c_msg = start_msg()
        u.sendto(frame(12, c_msg), ("::1", srv.port))
    assert srv.stop() == 0
    peers = {r["id"]: r["peer"] for r in srv.records(3, timeout=2)}
    assert peers[str(uuidlib.UUID(bytes=a.uuid))] == "127.0.0.1"
    assert peers[str(uuidlib.UUID(bytes=b.uuid))] == "::1"
    assert peers[str(uuidlib.UUID(bytes=c_msg.uuid))] == "::1"
