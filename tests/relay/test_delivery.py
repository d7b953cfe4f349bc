"""Delivery through the relay when collectors or the relay go away: nothing lost, nothing twice
(per collector), spool replayed in order. Real munged, collectors, relay; 2,000 forked senders."""
from __future__ import annotations

import signal
import sqlite3
import time

from tests.fixtures.server import free_port
from tests.relay.helpers import fork_senders, pairs, relay_server, restart_server, start_senders


def _sqlite(path: object) -> str:
    return f'[outputs.db]\ntype = "sqlite"\npath = "{path}"\nbatch_records = 500\nflush_interval = 0.05\n'


def _processes(path: object) -> tuple[int, int, int]:
    """(rows, rows with both records, verified rows) of the processes table."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*), count(end_time), sum(verified) FROM processes "
                          "WHERE start_time IS NOT NULL").fetchone()


def test_collector_stopped_10s_while_2000_processes_run(munged, ogrt_server, ogrt_relay, tmp_path):
    m = munged()
    db = tmp_path / "db.sqlite"
    srv = relay_server(ogrt_server, m.socket, outputs=_sqlite(db), relay_port=free_port(udp_too=False))
    relay = ogrt_relay([f"127.0.0.1:{srv.relay_port}"], munge_socket=m.socket)
    assert srv.stop() == 0
    stopped = time.monotonic()
    procs = pairs(2000)
    assert fork_senders(relay.socket, procs, tmp_path) == "done 0"
    assert relay.wait_metric("ogrt_relay_spooled_total", 4000) == 4000  # no collector: all on disk
    time.sleep(max(0.0, 10.0 - (time.monotonic() - stopped)))
    srv = restart_server(srv)
    try:
        recs = srv.records(4000, timeout=60)
        keys = [(r["id"], r["event"]) for r in recs]
        assert len(keys) == 4000 and set(keys) == {(u, e) for _, _, u in procs for e in ("start", "end")}
        assert all(r["verified"] for r in recs)
        srv.wait_metric('ogrt_output_persisted_total{output="db"}', 4000)
        assert _processes(db) == (2000, 2000, 2000)
        assert relay.wait_metric("ogrt_relay_forwarded_total", 4000) == 4000
        assert relay.metric("ogrt_relay_spool_batches") == 0
    finally:
        srv.kill()


def test_collector_killed_under_load_loses_nothing(munged, ogrt_server, ogrt_relay, tmp_path):
    m = munged()
    db = tmp_path / "db.sqlite"  # both collectors write one database: a process is one row
    a = relay_server(ogrt_server, m.socket, outputs=_sqlite(db))
    b = relay_server(ogrt_server, m.socket, outputs=_sqlite(db))
    relay = ogrt_relay([f"127.0.0.1:{a.relay_port}", f"127.0.0.1:{b.relay_port}"], munge_socket=m.socket,
                       extra={"batch_records": 100})
    procs = pairs(3000)
    senders = start_senders(relay.socket, procs, tmp_path)
    first = next(s for s in (a, b) for _ in range(200)
                 if s.metric("ogrt_relay_connections_open") or time.sleep(0.05))
    other = b if first is a else a
    first.wait_metric('ogrt_output_persisted_total{output="db"}', 500, timeout=60)
    first.stop(signal.SIGKILL)
    out, _ = senders.communicate(timeout=300)
    assert out.strip().endswith("done 0")
    assert relay.wait_metric("ogrt_relay_forwarded_total", 6000, timeout=60) == 6000
    other.wait_metric('ogrt_relay_batches_acked_total', 1)
    keys = {(r["id"], r["event"]) for s in (a, b) for r in s.records(0)}
    assert keys == {(u, e) for _, _, u in procs for e in ("start", "end")}
    assert _processes(db) == (3000, 3000, 3000)


def test_relay_killed_then_restarted_replays_its_spool(munged, ogrt_server, ogrt_relay, tmp_path):
    m = munged()
    srv = relay_server(ogrt_server, m.socket, relay_port=free_port(udp_too=False))
    relay = ogrt_relay([f"127.0.0.1:{srv.relay_port}"], munge_socket=m.socket)
    assert srv.stop() == 0
    procs = pairs(300)
    assert fork_senders(relay.socket, procs, tmp_path) == "done 0"
    assert relay.wait_metric("ogrt_relay_spooled_total", 600) == 600
    relay.stop(signal.SIGKILL)
    # the socket file is left behind without a reader: a send is refused at once (the library
    # then takes its direct transport), it does not block
    late = pairs(1)
    assert fork_senders(relay.socket, late, tmp_path) == "done 1"
    srv = restart_server(srv)
    try:
        relay = ogrt_relay.again(relay)
        recs = srv.records(600, timeout=60)
        assert {(r["id"], r["event"]) for r in recs} == {(u, e) for _, _, u in procs for e in ("start", "end")}
        assert len(recs) == 600
        # SIGTERM drains: what the relay holds when it is told to stop reaches the collector
        more = pairs(200)
        assert fork_senders(relay.socket, more, tmp_path) == "done 0"
        assert relay.stop() == 0
        assert len(srv.records(1000, timeout=30)) == 1000
    finally:
        srv.kill()
