"""Through the real `ogrt server` process: records sent over TCP land in sqlite, postgresql,
json_tcp and jsonl identically; PostgreSQL stopped and restarted meanwhile loses none."""
from __future__ import annotations

import sqlite3

import psycopg

from ogrt.proto import ogrt_pb2
from ogrt.textenc import unescape
from tests.fixtures.server import end_msg, frame, start_msg
from tests.outputs.helpers import LineListener, expected_processes, read_processes, wait_for

NASTY = b"/opt/we\nird \"q\" back\\slash \xff\xfe/bin/x"


def frames(n: int, tag: int) -> tuple[bytes, list[bytes]]:
    data = b""
    uuids = []
    for i in range(n):
        s = start_msg(exe=NASTY + b"%d" % (i % 3), cwd=NASTY, args=[NASTY, b"-n", b"%d" % i],
                      env=[b"X=" + NASTY], modules=[b"gcc/12", NASTY],
                      libs=[ogrt_pb2.SharedObject(path=NASTY + b".so"),
                            ogrt_pb2.SharedObject(path=b"/lib/libc.so.6", signature=b"sig-%d" % tag)])
        e = end_msg(uuid=s.uuid, time_us=s.time_us + 2_000_000, start_time_us=s.time_us,
                    libs=[ogrt_pb2.SharedObject(path=NASTY + b"-late.so")])
        data += frame(12, s) + frame(13, e)
        uuids.append(s.uuid)
    return data, uuids


def _metric(srv, name: str, output: str) -> float:
    for k, v in srv.metrics().items():
        if k.startswith(name + "{") and f'"{output}"' in k:
            return v
    return 0.0


def test_every_output_through_the_daemon_with_postgresql_restarted(ogrt_server, postgres, tmp_path):
    dsn = postgres.new_database("e2e")
    db = tmp_path / "ogrt.db"
    listener = LineListener()
    listener.start()
    common = 'batch_records = 50\nflush_interval = 0.05\nreconnect_max_seconds = 0.5\n'
    srv = ogrt_server(extra_outputs=(
        f'[outputs.db]\ntype = "sqlite"\npath = "{db}"\n{common}'
        f'[outputs.pg]\ntype = "postgresql"\ndsn = "{dsn}"\nconnect_timeout = 2\n{common}'
        f'[outputs.tcp]\ntype = "json_tcp"\nhost = "127.0.0.1"\nport = {listener.port}\n{common}'))
    try:
        n = 0
        for tag in range(3):
            data, _ = frames(40, tag)
            srv.send_tcp(data)
            n += 80
            if tag == 0:
                wait_for(lambda: _metric(srv, "ogrt_output_persisted_total", "pg") >= 80,
                         what="first records in PostgreSQL")
                postgres.stop()
            if tag == 1:
                wait_for(lambda: _metric(srv, "ogrt_output_spool_depth", "pg") > 0,
                         what="spool depth while PostgreSQL is down")
                postgres.start()
        records = srv.records(n, timeout=30)
        assert len(records) == n
        wait_for(lambda: _metric(srv, "ogrt_output_persisted_total", "pg") >= n, timeout=30,
                 what="PostgreSQL caught up")
        assert srv.stop() == 0
    finally:
        postgres.start()
        listener.stop()
    assert _events(records) == {"start": n // 2, "end": n // 2}
    assert unescape(records[0]["cwd"]) == NASTY
    want = expected_processes(records)
    with sqlite3.connect(db) as conn:
        assert read_processes(conn) == want
    with psycopg.connect(dsn) as conn:
        assert read_processes(conn) == want
    assert listener.received() == records  # same records, same order


def _events(records):
    out: dict[str, int] = {}
    for r in records:
        out[r["event"]] = out.get(r["event"], 0) + 1
    return out


def test_two_workers_write_every_record_once(ogrt_server, postgres, tmp_path):
    dsn = postgres.new_database("w2")
    db = tmp_path / "ogrt.db"
    common = 'batch_records = 20\nflush_interval = 0.05\n'
    srv = ogrt_server(workers=2, jsonl=False, extra_outputs=(
        f'[outputs.db]\ntype = "sqlite"\npath = "{db}"\n{common}'
        f'[outputs.pg]\ntype = "postgresql"\ndsn = "{dsn}"\n{common}'))
    uuids = []
    for tag in range(8):  # several connections: the kernel spreads them over the workers
        data, u = frames(25, tag)
        srv.send_tcp(data)
        uuids += u
    want = sorted(ogrt_uuid(u) for u in uuids)

    def count_pg():
        with psycopg.connect(dsn) as c:
            try:
                return c.execute("SELECT count(end_time) FROM processes").fetchone()[0]
            except psycopg.errors.UndefinedTable:  # no batch written yet
                return 0

    wait_for(lambda: count_pg() >= len(uuids), timeout=30, what="all processes in PostgreSQL")
    assert srv.stop() == 0
    for conn in (sqlite3.connect(db), psycopg.connect(dsn)):
        with conn:
            rows = conn.execute("SELECT uuid, start_time IS NOT NULL, end_time IS NOT NULL "
                                "FROM processes ORDER BY uuid").fetchall()
            assert [r[0] for r in rows] == want
            assert all(r[1] and r[2] for r in rows)
            assert conn.execute("SELECT count(*) FROM process_libraries").fetchone()[0] == 3 * len(want)


def ogrt_uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def test_spool_survives_a_daemon_restart(ogrt_server, tmp_path):
    """json_tcp peer down: records spool; SIGTERM; a new daemon on the same state_dir
    replays them when the peer is back, in order."""
    probe = LineListener()
    probe.start()
    port = probe.port
    probe.stop()  # nobody listens there now
    state = tmp_path / "state"
    conf = f'[server]\nstate_dir = "{state}"\n'
    outputs = (f'[outputs.tcp]\ntype = "json_tcp"\nhost = "127.0.0.1"\nport = {port}\n'
               'batch_records = 20\nflush_interval = 0.05\nreconnect_max_seconds = 0.5\n')
    srv = ogrt_server(config_toml=conf, extra_outputs=outputs)
    data, _ = frames(30, 0)
    srv.send_tcp(data)
    records = srv.records(60, timeout=30)
    wait_for(lambda: _metric(srv, "ogrt_output_spool_depth", "tcp") >= 60, what="spooled")
    assert srv.stop() == 0
    assert list((state / "spool" / "tcp").rglob("seg-*.spool"))
    listener = LineListener(port)
    listener.start()
    try:
        srv2 = ogrt_server(config_toml=conf, extra_outputs=outputs)
        wait_for(lambda: len(listener.received()) >= 60, timeout=30, what="replayed records")
        assert srv2.stop() == 0
        assert listener.received() == records  # none lost, none twice, same order
    finally:
        listener.stop()
