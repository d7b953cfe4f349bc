"""Delivery through the relay when collectors or the relay go away: nothing lost, nothing twice
(per collector), spool replayed in order. Real munged, collectors, relay; real programs under
the library built with TRANSPORT=relay (2,000 of them), forked Python senders for the load."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

from tests.fixtures.preload import closed_port, preload_env
from tests.fixtures.server import free_port
from tests.relay.helpers import pairs, relay_server, restart_server, spawn_programs, start_senders


def _sqlite(path: object) -> str:
    return f'[outputs.db]\ntype = "sqlite"\npath = "{path}"\nbatch_records = 500\nflush_interval = 0.05\n'


def _processes(path: object) -> tuple[int, int, int]:
    """(rows, rows with both records, verified rows) of the processes table."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*), count(end_time), sum(verified) FROM processes "
                          "WHERE start_time IS NOT NULL").fetchone()


def test_collector_stopped_10s_while_2000_processes_run(munged, ogrt_server, ogrt_relay, relay_lib, tmp_path):
    """2,000 real processes under the library built with TRANSPORT=relay."""
    m = munged()
    db = tmp_path / "db.sqlite"
    srv = relay_server(ogrt_server, m.socket, outputs=_sqlite(db), relay_port=free_port(udp_too=False))
    relay_lib.socket.unlink(missing_ok=True)
    relay = ogrt_relay([f"127.0.0.1:{srv.relay_port}"], munge_socket=m.socket, socket=str(relay_lib.socket))
    assert srv.stop() == 0
    stopped = time.monotonic()
    # a record that fell back to the direct path would go to this closed port: lost, and seen
    env = preload_env(relay_lib.lib, closed_port())
    pids, codes = spawn_programs(env, 2000, ["/bin/true"])
    assert codes == [0] * 2000
    assert relay.wait_metric("ogrt_relay_spooled_total", 4000) == 4000  # no collector: all on disk
    time.sleep(max(0.0, 10.0 - (time.monotonic() - stopped)))
    srv = restart_server(srv)
    try:
        recs = srv.records(4000, timeout=60)
        keys = [(r["id"], r["event"]) for r in recs]
        assert len(keys) == 4000 and len(set(keys)) == 4000
        assert {r["pid"] for r in recs} == set(pids)
        assert {e for _, e in keys} == {"start", "end"} and len({i for i, _ in keys}) == 2000
        assert all(r["verified"] and r["exe"] == "/usr/bin/true" for r in recs if r["event"] == "start")
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


def test_relay_killed_then_restarted_replays_its_spool(munged, ogrt_server, ogrt_relay, relay_lib, tmp_path):
    """Real programs under the TRANSPORT=relay library: unharmed and recorded (directly) while
    the relay is dead; the restarted relay replays what it had spooled."""
    m = munged()
    srv = relay_server(ogrt_server, m.socket, relay_port=free_port(udp_too=False))
    relay_lib.socket.unlink(missing_ok=True)
    relay = ogrt_relay([f"127.0.0.1:{srv.relay_port}"], munge_socket=m.socket, socket=str(relay_lib.socket))
    env = preload_env(relay_lib.lib, srv.port)
    assert srv.stop() == 0
    pids, codes = spawn_programs(env, 300, ["/bin/true"])
    assert codes == [0] * 300
    assert relay.wait_metric("ogrt_relay_spooled_total", 600) == 600
    relay.stop(signal.SIGKILL)  # its socket file stays, nobody reads it
    srv = restart_server(srv)
    try:
        out = subprocess.run(["/bin/echo", "unharmed"], env=env, capture_output=True, timeout=30)
        assert (out.returncode, out.stdout, out.stderr) == (0, b"unharmed\n", b"")
        direct = srv.records(2)
        assert [(r["event"], r["verified"], r["exe"] if r["event"] == "start" else None) for r in direct] \
            == [("start", False, "/usr/bin/echo"), ("end", False, None)]
        relay = ogrt_relay.again(relay)
        recs = srv.records(602, timeout=60)
        relayed = [r for r in recs if r["verified"]]
        assert len(relayed) == 600 and {r["pid"] for r in relayed} == set(pids)
        # SIGTERM drains: what the relay holds when it is told to stop reaches the collector
        more, codes = spawn_programs(env, 100, ["/bin/true"])
        assert codes == [0] * 100
        assert relay.stop() == 0
        recs = srv.records(802, timeout=30)
        assert len(recs) == 802 and {r["pid"] for r in recs if r["verified"]} == set(pids) | set(more)
    finally:
        srv.kill()
