"""The node relay end to end: real munged, real `ogrt server` collectors, real `ogrt relay`,
senders as separate processes (of another uid where it matters)."""
from __future__ import annotations

import json
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
