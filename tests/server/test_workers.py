"""workers = N: SO_REUSEPORT worker processes; every record exactly once in every output."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
import uuid as uuidlib

from tests.fixtures.server import end_msg, frame, start_msg


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def test_two_workers_jsonl_and_sqlite_exactly_once(ogrt_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "w.sqlite"
    srv = ogrt_server(workers=2, extra_outputs=f'[outputs.db]\ntype = "sqlite"\npath = "{db}"\n')
    assert len(_children(srv.pid)) == 2
    starts = [start_msg() for _ in range(1500)]
    ends = [end_msg(uuid=m.uuid) for m in starts]
    for i in range(0, 1500, 30):  # 50 connections, spread over the workers by the kernel
        srv.send_tcp(b"".join(frame(12, m) for m in starts[i:i + 30]))
    for i in range(0, 1500, 100):  # UDP from 15 source ports
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for m in ends[i:i + 100]:
                u.sendto(frame(13, m), ("127.0.0.1", srv.port))
    m = srv.metrics()
    assert m["ogrt_workers"] == 2
    assert srv.stop() == 0
    recs = srv.records(3000, timeout=2)
    keys = [(r["event"], r["id"]) for r in recs]
    assert len(keys) == 3000 and len(set(keys)) == 3000
    assert {i for e, i in keys} == {str(uuidlib.UUID(bytes=s.uuid)) for s in starts}
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from processes").fetchone()[0] == 1500
        assert conn.execute("select count(*) from processes where end_time is not null "
                            "and start_time is not null").fetchone()[0] == 1500
    # both workers listened (each logs its own line)
    assert srv.stderr_text().count("listening on 127.0.0.1") == 2


def test_dead_worker_is_restarted(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    srv = ogrt_server(workers=2)
    before = _children(srv.pid)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = _children(srv.pid)
        if len(now) == 2 and before[0] not in now and srv.metric("ogrt_workers") == 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"worker not restarted: {_children(srv.pid)}\n{srv.stderr_text()}")
    msgs = [start_msg() for _ in range(200)]
    for i in range(0, 200, 10):
        srv.send_tcp(b"".join(frame(12, m) for m in msgs[i:i + 10]))
    assert srv.stop() == 0
    assert len(srv.records(200, timeout=2)) == 200
    assert "restarting it" in srv.stderr_text()


def test_spool_of_a_former_worker_is_replayed(ogrt_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Records spooled by worker 1 of 2 reach the output after a restart with workers = 1."""
    from ogrt.outputs.spool import Spool

    srv = ogrt_server(workers=1)
    orphan = srv.state_dir / "spool" / "jsonl" / "1"
    assert srv.stop() == 0
    msgs = [start_msg() for _ in range(5)]
    from ogrt.record import Decoder
    from ogrt.users import UserCache
    dec = Decoder(UserCache())
    recs = [dec.decode(12, m.SerializeToString(), "127.0.0.1") for m in msgs]
    spool = Spool(orphan, 1 << 20)
    spool.append(recs, time.time(), sync=True)
    spool.close()
    srv2 = ogrt_server(f'[server]\nstate_dir = "{srv.state_dir}"\n[outputs.jsonl]\npath = "{srv.jsonl_path}"\n')
    assert srv2.wait_metric('ogrt_output_persisted_total{output="jsonl"}', 5) == 5
    assert srv2.stop() == 0
    # srv2 wrote to srv's jsonl path
    assert {r["id"] for r in srv.records(5, timeout=1)} == {str(uuidlib.UUID(bytes=m.uuid)) for m in msgs}
    assert "spool of former worker 1" in srv2.stderr_text()
    assert "replaying 5 spooled records" in srv2.stderr_text()


def test_sigterm_with_workers_loses_nothing(ogrt_server) -> None:  # type: ignore[no-untyped-def]
    srv = ogrt_server(workers=2)
    msgs = [start_msg() for _ in range(4000)]
    socks = []
    for k in range(8):
        c = socket.create_connection(("127.0.0.1", srv.port))
        c.sendall(b"".join(frame(12, m) for m in msgs[k::8]))
        socks.append(c)
    for c in socks:
        c.close()
    assert srv.stop() == 0
    got = [r["id"] for r in srv.records(4000, timeout=2)]
    assert len(got) == 4000 and set(got) == {str(uuidlib.UUID(bytes=m.uuid)) for m in msgs}
