"""The node relay end to end: real munged, real `ogrt server` collectors, real `ogrt relay`,
senders as separate processes (of another uid where it matters)."""
from __future__ import annotations

import sqlite3
import struct
import uuid as uuidlib

from ogrt.proto import ogrt_pb2
from tests.fixtures.server import frame, start_msg
from tests.relay.helpers import NOBODY, relay_server, send


def _sqlite(path: str) -> str:
    return f'[outputs.db]\ntype = "sqlite"\npath = "{path}"\nbatch_records = 200\nflush_interval = 0.05\n'


def test_kernel_identity_replaces_the_claim(munged, ogrt_server, ogrt_relay, tmp_path):
    m = munged()
    srv = relay_server(ogrt_server, m.socket, outputs=_sqlite(str(tmp_path / "db.sqlite")))
    relay = ogrt_relay([f"127.0.0.1:{srv.relay_port}"], munge_socket=m.socket)
    u = uuidlib.uuid4()
    # user A (nobody) claims to be user B (uid 4242, pid 1, gid 4242)
    big = start_msg(uuid=u.bytes, uid=4242, gid=4242, pid=1, user=b"victim",
                    args=[b"x" * 1000, b"y" * 1000])
    payload = big.SerializeToString()
    half = len(payload) // 2
    pieces = [ogrt_pb2.Fragment(uuid=u.bytes, type=12, index=i, count=2, total_length=len(payload),
                                data=payload[i * half:(i + 1) * half if i == 0 else None])
              for i in range(2)]
    # another sender (root) tries to slip its own second piece into A's record first
    forged = ogrt_pb2.Fragment(uuid=u.bytes, type=12, index=1, count=2, total_length=len(payload),
                               data=b"\0" * (len(payload) - half))
    send(relay.socket, [frame(14, forged)])
    pid = send(relay.socket, [frame(14, pieces[0]), frame(14, pieces[1]),
                              frame(13, ogrt_pb2.ProcessEnd(uuid=u.bytes, uid=4242, pid=1, time_us=2,
                                                            start_time_us=1))], user=NOBODY)
    srv.send_tcp(frame(12, start_msg()))  # a direct record
    recs = srv.records(3)
    by = {(r["id"], r["event"]): r for r in recs}
    start, end = by[(str(u), "start")], by[(str(u), "end")]
    assert (start["uid"], start["gid"], start["pid"], start["verified"]) == (NOBODY, NOBODY, pid, True)
    assert start["user"] == "nobody" and start["args"] == ["x" * 1000, "y" * 1000]
    assert (end["uid"], end["pid"], end["verified"]) == (NOBODY, pid, True)
    direct = [r for r in recs if r["id"] != str(u)]
    assert [r["verified"] for r in direct] == [False]
    assert relay.metric("ogrt_relay_identity_corrected_total") == 2
    assert relay.metric("ogrt_fragments_pending") == 1  # root's lone piece, never joined with A's
    srv.wait_metric('ogrt_output_persisted_total{output="db"}', 3)
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        rows = dict(db.execute("SELECT uuid, verified FROM processes"))
    assert rows[str(u)] == 1 and rows[direct[0]["id"]] == 0
    assert relay.stop() == 0 and srv.stop() == 0


def _exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes to the relay listener; its first answer frame."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(data)
        out = b""
        while len(out) < 8 or len(out) < 8 + struct.unpack(">I", out[4:8])[0]:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out


def _munge(socket_path: str, user: int | None = None) -> bytes:
    import subprocess

    return subprocess.run(["munge", "--socket", socket_path, "--string", "ogrt-relay-1"], capture_output=True,
                          check=True, timeout=30, user=user, group=user, extra_groups=[] if user is not None
                          else None).stdout.strip()


def test_relay_connections_without_a_valid_credential_are_refused(munged, ogrt_server, ogrt_relay):
    from ogrt.relay.wire import BATCH, HELLO, REFUSED, WELCOME, batch_frame

    m, other = munged(), munged()
    srv = relay_server(ogrt_server, m.socket)
    port = srv.relay_port
    records = frame(12, start_msg())
    cases = {
        "relay_no_credential": batch_frame(1, records),  # no HELLO at all
        "relay_bad_credential": frame(HELLO, b"MUNGE:garbage:") + batch_frame(1, records),
    }
    for reason, data in cases.items():
        answer = _exchange(port, data)
        assert struct.unpack(">I", answer[:4])[0] == REFUSED and reason.encode() in answer
    good = _munge(m.socket)
    for reason, cred in [("relay_bad_credential", _munge(other.socket)),  # another cluster's key
                         ("relay_user_not_allowed", _munge(m.socket, user=NOBODY))]:
        answer = _exchange(port, frame(HELLO, cred) + batch_frame(1, records))
        assert struct.unpack(">I", answer[:4])[0] == REFUSED and reason.encode() in answer, answer
    # a valid credential is welcomed once; the same credential again is a replay
    assert struct.unpack(">I", _exchange(port, frame(HELLO, good))[:4])[0] == WELCOME
    assert b"relay_bad_credential" in _exchange(port, frame(HELLO, good))
    # a relay whose munged has another key is refused: nothing it holds is stored
    relay = ogrt_relay([f"127.0.0.1:{port}"], munge_socket=other.socket)
    send(relay.socket, [records])
    assert relay.wait_metric('ogrt_relay_upstream_failures_total{reason="refused"}', 1) >= 1
    metrics = srv.metrics()
    assert metrics['ogrt_rejected_total{reason="relay_no_credential"}'] == 1
    assert metrics['ogrt_rejected_total{reason="relay_bad_credential"}'] >= 4
    assert metrics['ogrt_rejected_total{reason="relay_user_not_allowed"}'] == 1
    assert metrics.get('ogrt_records_total{event="start"}', 0) == 0 and srv.records(0) == []
    assert relay.wait_metric("ogrt_relay_spooled_total", 1) == 1  # kept for a collector that takes it
    assert BATCH != HELLO


def test_direct_reject_takes_only_relay_records(munged, ogrt_server, ogrt_relay):
    m = munged()
    srv = relay_server(ogrt_server, m.socket, server='direct = "reject"\nrelay_users = ["nobody"]')
    srv.send_tcp(frame(12, start_msg()) + frame(13, start_msg()))
    srv.send_udp(frame(12, start_msg()))
    assert srv.wait_metric('ogrt_rejected_total{reason="direct_rejected"}', 3) == 3
    relay = ogrt_relay([f"127.0.0.1:{srv.relay_port}"], munge_socket=m.socket,
                       extra={"max_frame_bytes": 2048, "batch_bytes": 1024})
    small = [frame(12, start_msg()) for _ in range(10)]  # ~300 bytes each
    # a record that fits a datagram of max_frame_bytes but not a batch of it is refused, counted
    huge = frame(12, start_msg(cwd=b"x" * (2030 - len(start_msg(cwd=b"").SerializeToString()))))
    assert 2048 - 16 < len(huge) <= 2048
    send(relay.socket, small + [huge])
    recs = srv.records(10)
    assert len(recs) == 10 and all(r["verified"] for r in recs)
    assert relay.wait_metric('ogrt_rejected_total{reason="too_large"}', 1) == 1
    assert srv.metric("ogrt_relay_batches_acked_total") >= max(2, sum(map(len, small)) // 1024)  # <= batch_bytes each
