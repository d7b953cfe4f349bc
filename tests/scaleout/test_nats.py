"""Scale-out through NATS JetStream, with real processes only: three clustered nats-server
processes (tests/fixtures/nats.py), `ogrt server` collectors with a `nats` output, `ogrt sink`
processes, a real PostgreSQL. Frames are the test fixtures' ProcessStart/ProcessEnd, over TCP."""
from __future__ import annotations

import asyncio
import importlib.util
import socket
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from typing import Any

import psycopg
import pytest

from tests.fixtures.server import end_msg, frame, start_msg
from tests.outputs.helpers import wait_for

pytestmark = pytest.mark.slow


# -- helpers ----------------------------------------------------------------------------------
def make_pairs(n: int) -> tuple[list[bytes], list[str]]:
    """`n` processes: one start+end frame pair each, and their uuids as text."""
    chunks, ids = [], []
    for i in range(n):
        s = start_msg(pid=1000 + i % 30000, args=[b"prog", b"%d" % i])
        e = end_msg(uuid=s.uuid, pid=s.pid, time_us=s.time_us + 5000, start_time_us=s.time_us)
        chunks.append(frame(12, s) + frame(13, e))
        ids.append(str(uuidlib.UUID(bytes=s.uuid)))
    return chunks, ids


class Sender(threading.Thread):
    """Sends frame pairs to collectors round-robin, `per_chunk` pairs per TCP connection,
    pausing `pause` s between connections (load spread over time, so failures hit it)."""

    def __init__(self, ports: list[int], pairs: list[bytes], per_chunk: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.ports, self.pairs, self.per_chunk, self.pause = ports, pairs, per_chunk, pause
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for k, i in enumerate(range(0, len(self.pairs), self.per_chunk)):
                data = b"".join(self.pairs[i:i + self.per_chunk])
                with socket.create_connection(("127.0.0.1", self.ports[k % len(self.ports)]), timeout=30) as c:
                    c.sendall(data)
                self.sent = min(len(self.pairs), i + self.per_chunk)
                time.sleep(self.pause)
        except BaseException as e:  # reported by the test
            self.error = e


def nats_output(urls: list[str], **extra: Any) -> str:
    opts = {"type": "nats", "servers": urls, "replicas": 3, "batch_records": 500, "flush_interval": 0.05,
            "reconnect_max_seconds": 1.0, "ack_timeout": 5.0, **extra}
    from tests.fixtures.server import to_toml
    return to_toml({"outputs": {"js": opts}})


def collector(ogrt_server: Any, urls: list[str]) -> Any:
    return ogrt_server(nats_output(urls), jsonl=False)


def jsonl_sink(ogrt_sink: Any, urls: list[str], path: Any, **source: Any) -> Any:
    return ogrt_sink(urls, outputs={"j": {"type": "jsonl", "path": str(path)}}, source=source)


def db_state(dsn: str) -> dict[str, tuple[bool, bool]]:
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute("SELECT uuid, start_time IS NOT NULL, end_time IS NOT NULL "
                                "FROM processes").fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
    state: dict[str, tuple[bool, bool]] = {}
    for u, s, e in rows:
        assert u not in state, f"process {u} stored twice"
        state[u] = (s, e)
    return state


def complete(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            return conn.execute("SELECT count(*) FROM processes WHERE start_time IS NOT NULL "
                                "AND end_time IS NOT NULL").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def out_metric(handle: Any, name: str) -> float:
    return sum(v for k, v in handle.metrics().items() if k.startswith(name))


def assert_exactly_once(dsn: str, ids: list[str]) -> None:
    state = db_state(dsn)
    assert len(state) == len(ids)
    assert set(state) == set(ids)
    missing = [u for u, (s, e) in state.items() if not (s and e)]
    assert not missing, f"{len(missing)} processes lack their start or end, e.g. {missing[:3]}"


# -- the tests --------------------------------------------------------------------------------
def test_nats_server_and_sink_killed_under_load_all_records_once(nats_cluster, ogrt_server, ogrt_sink,
                                                                 postgres):
    n = 20_000
    dsn = postgres.new_database("nats_kill")
    collectors = [collector(ogrt_server, nats_cluster.urls) for _ in range(2)]
    db = {"db": {"type": "postgresql", "dsn": dsn, "batch_records": 1000}}
    src = {"batch": 500, "ack_wait": 5.0}
    sinks = [ogrt_sink(nats_cluster.urls, outputs=db, source=src) for _ in range(2)]
    pairs, ids = make_pairs(n)
    sender = Sender([c.port for c in collectors], pairs, per_chunk=250, pause=0.05)
    sender.start()
    wait_for(lambda: sender.sent >= n // 3, 120, "a third of the load sent")
    leader = nats_cluster.stream_leader("OGRT")
    assert leader is not None
    nats_cluster.kill(leader)  # SIGKILL the NATS server leading the stream ...
    sinks[0].kill()            # ... and one sink, while records flow
    wait_for(lambda: sender.sent >= n // 2, 120, "half of the load sent")
    nats_cluster.start(leader)  # the server comes back with its store and catches up
    sender.join(180)
    assert sender.error is None and sender.sent == n
    wait_for(lambda: complete(dsn) >= n, 150, f"{n} complete processes in PostgreSQL")
    assert_exactly_once(dsn, ids)
    for c in collectors:
        assert out_metric(c, "ogrt_output_dropped_total") == 0
        assert out_metric(c, "ogrt_output_rejected_total") == 0
    survivor = sinks[1].metrics()
    assert survivor['ogrt_sink_rejected_total{reason="malformed"}'] == 0
    assert survivor["ogrt_sink_acked_total"] > 0
    assert sinks[1].stop() == 0
    for c in collectors:
        assert c.stop() == 0


def test_whole_cluster_down_10s_collectors_spool_then_drain(nats_cluster, ogrt_server, ogrt_sink, postgres):
    n = 4_000
    dsn = postgres.new_database("nats_down")
    collectors = [collector(ogrt_server, nats_cluster.urls) for _ in range(2)]
    sink = ogrt_sink(nats_cluster.urls, outputs={"db": {"type": "postgresql", "dsn": dsn}},
                     source={"ack_wait": 5.0})
    pairs, ids = make_pairs(n)
    sender = Sender([c.port for c in collectors], pairs, per_chunk=100, pause=0.05)
    sender.start()
    wait_for(lambda: sender.sent >= n // 4, 60, "a quarter of the load sent")
    nats_cluster.stop_all()
    down_at = time.monotonic()
    wait_for(lambda: time.monotonic() - down_at >= 10, 20, "10 s with the cluster down")
    spooled = sum(out_metric(c, "ogrt_output_spooled_total") for c in collectors)
    assert spooled > 0, "records sent while NATS was down must have gone to the spool"
    nats_cluster.start_all()
    sender.join(120)
    assert sender.error is None and sender.sent == n
    wait_for(lambda: complete(dsn) >= n, 120, f"{n} complete processes in PostgreSQL")
    assert_exactly_once(dsn, ids)
    for c in collectors:
        wait_for(lambda c=c: out_metric(c, "ogrt_output_spool_depth") == 0, 30, "spool drained")
        assert out_metric(c, "ogrt_output_dropped_total") == 0
        assert c.stop() == 0
    assert sink.stop() == 0


def _publish_raw(urls: list[str], items: list[tuple[str, bytes]]) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(urls)
        js = nc.jetstream()
        for subject, body in items:
            await js.publish(subject, body)
        await nc.close()

    asyncio.run(go())


def test_malformed_message_counted_acked_and_sink_goes_on(nats_cluster, ogrt_server, ogrt_sink, tmp_path):
    jsonl = tmp_path / "sink.jsonl"
    coll = collector(ogrt_server, nats_cluster.urls)
    sink = jsonl_sink(ogrt_sink, nats_cluster.urls, jsonl, ack_wait=2.0)
    first, first_ids = make_pairs(3)
    coll.send_tcp(b"".join(first))
    wait_for(lambda: sink.metric("ogrt_sink_acked_total") >= 6, 30, "first records acked")
    bad = [("ogrt.records.start", b"not json at all"),
           ("ogrt.records.start", b'{"event": "start", "id": "no-uuid"}'),
           ("ogrt.records.end", b'["a", "list"]'),
           ("ogrt.records.end", b"\xff\xfe" * 100)]
    _publish_raw(nats_cluster.urls, bad)
    later, later_ids = make_pairs(2)
    coll.send_tcp(b"".join(later))
    wait_for(lambda: sink.metric("ogrt_sink_acked_total") >= 10, 30, "later records acked")
    m = sink.metrics()
    assert m['ogrt_sink_rejected_total{reason="malformed"}'] == len(bad)
    time.sleep(3)  # longer than ack_wait: a message not acked would come back now
    m = sink.metrics()
    assert m["ogrt_sink_redelivered_total"] == 0
    assert m['ogrt_sink_rejected_total{reason="malformed"}'] == len(bad)
    assert m["ogrt_sink_ack_pending"] == 0 and m["ogrt_sink_lag"] == 0
    import json
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert sorted((r["id"], r["event"]) for r in lines) == sorted(
        (u, e) for u in first_ids + later_ids for e in ("start", "end"))
    assert sink.stop() == 0
    assert "not a record; rejected" in sink.stderr_text()


BAD_OUTPUTS = [
    ({"servers": []}, "outputs.js.servers", "at least one server"),
    ({"servers": ["nats://127.0.0.1:4222"]}, "outputs.js.replicas", "3 replicas need at least 3 servers"),
    ({"servers": ["nats://a:1", "nats://b:2"], "replicas": 2, "stream": "a.b"}, "outputs.js.stream", "without"),
    ({"servers": ["http://127.0.0.1:4222"], "replicas": 1}, "outputs.js.servers", "not a NATS server URL"),
    ({"servers": ["nats://127.0.0.1"], "replicas": 1}, "outputs.js.servers", "not a NATS server URL"),
    ({"servers": ["nats://a:1"], "replicas": 1, "creds": "/x", "user": "u"}, "outputs.js.creds", "not both"),
    ({"servers": ["nats://a:1"], "replicas": 1, "subject": "ogrt.>"}, "outputs.js.subject", "NATS subject"),
] + ([] if importlib.util.find_spec("nkeys") else [  # the suite's venv has no nkeys
    ({"servers": ["nats://a:1"], "replicas": 1, "creds": "/x"}, "outputs.js.creds", "needs the Python package `nkeys`")])


@pytest.mark.parametrize("opts,key,why", BAD_OUTPUTS, ids=[b[1] + ":" + b[2] for b in BAD_OUTPUTS])
def test_bad_nats_output_named_by_check_config(tmp_path, opts, key, why):
    from tests.fixtures.server import to_toml
    conf = tmp_path / "ogrt.conf"
    conf.write_text(to_toml({"server": {"state_dir": str(tmp_path)}, "outputs": {"js": {"type": "nats", **opts}}}))
    r = subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{key}:" in r.stderr and why in r.stderr


BAD_SINKS = [
    ({"source": {"type": "nats", "servers": []}, "outputs": {"n": {"type": "null"}}},
     "source.servers", "at least one server"),
    ({"source": {"type": "kafka", "servers": ["nats://a:1"]}, "outputs": {"n": {"type": "null"}}},
     "source.type", "must be one of"),
    ({"source": {"type": "nats", "servers": ["nats://a:1"], "batch": 0}, "outputs": {"n": {"type": "null"}}},
     "source.batch", "between"),
    ({"source": {"type": "nats", "servers": ["nats://a:1"]}, "outputs": {}}, "outputs", "at least one"),
    ({"source": {"type": "nats", "servers": ["nats://a:1"]},
      "outputs": {"n": {"type": "nats", "servers": ["nats://a:1"], "replicas": 1}}},
     "outputs.n.type", "not back to NATS"),
]


@pytest.mark.parametrize("cfg,key,why", BAD_SINKS, ids=[b[1] + ":" + b[2] for b in BAD_SINKS])
def test_bad_sink_config_named_by_check_config(tmp_path, cfg, key, why):
    from tests.fixtures.server import to_toml
    conf = tmp_path / "sink.conf"
    conf.write_text(to_toml({"sink": {"state_dir": str(tmp_path)}, **cfg}))
    r = subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{key}:" in r.stderr and why in r.stderr
    r = subprocess.run([sys.executable, "-m", "ogrt", "sink", "--config", str(conf)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and f"{key}:" in r.stderr


def jsonl_keys(path: Any) -> list[tuple[str, str]]:
    import json
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [(r["id"], r["event"]) for r in map(json.loads, text.splitlines())]


def test_output_down_batches_nacked_redelivered_then_persisted_once(nats_cluster, ogrt_server, ogrt_sink,
                                                                    postgres, tmp_path):
    n = 1_500
    dsn = postgres.new_database("nats_nak")
    jsonl = tmp_path / "sink.jsonl"
    coll = collector(ogrt_server, nats_cluster.urls)
    sink = ogrt_sink(nats_cluster.urls, source={"ack_wait": 5.0},
                     outputs={"j": {"type": "jsonl", "path": str(jsonl)},
                              "db": {"type": "postgresql", "dsn": dsn, "connect_timeout": 2}})
    pairs, ids = make_pairs(n)
    coll.send_tcp(b"".join(pairs[:500]))
    wait_for(lambda: complete(dsn) >= 500, 60, "the first 500 processes stored")
    postgres.stop()
    try:
        coll.send_tcp(b"".join(pairs[500:]))
        wait_for(lambda: sink.metric("ogrt_sink_nacked_total") > 0, 60, "batches nak'ed while PostgreSQL is down")
        assert sink.metric('ogrt_output_write_errors_total{output="db"}') > 0
        assert len(jsonl_keys(jsonl)) > 2 * 500  # the jsonl output went on and wrote the nak'ed batch
    finally:
        postgres.start()
    wait_for(lambda: complete(dsn) >= n, 120, f"{n} complete processes in PostgreSQL")
    assert_exactly_once(dsn, ids)
    m = sink.metrics()
    assert m["ogrt_sink_redelivered_total"] > 0
    # the jsonl output already had the redelivered records: written once (this sink remembers them)
    keys = jsonl_keys(jsonl)
    assert len(keys) == len(set(keys)) == 2 * n
    assert sink.stop() == 0


def test_sigterm_finishes_the_batch_in_hand(nats_cluster, ogrt_server, ogrt_sink, tmp_path):
    n = 3_000
    coll = collector(ogrt_server, nats_cluster.urls)
    first_file, second_file = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first = jsonl_sink(ogrt_sink, nats_cluster.urls, first_file, ack_wait=2.0, batch=100)
    pairs, ids = make_pairs(n)
    sender = Sender([coll.port], pairs, per_chunk=100, pause=0.02)
    sender.start()
    wait_for(lambda: first.metric("ogrt_sink_acked_total") >= 1000, 60, "the first sink busy")
    assert first.stop() == 0  # SIGTERM while records flow
    second = jsonl_sink(ogrt_sink, nats_cluster.urls, second_file, ack_wait=2.0, batch=100)
    sender.join(120)
    assert sender.error is None
    wait_for(lambda: len(jsonl_keys(first_file)) + len(jsonl_keys(second_file)) >= 2 * n, 60,
             "every record in one of the files")
    time.sleep(3)  # past ack_wait: anything the first sink wrote but did not ack comes back now
    keys = jsonl_keys(first_file) + jsonl_keys(second_file)
    assert len(keys) == len(set(keys)) == 2 * n
    assert {k[0] for k in keys} == set(ids)
    assert second.metric("ogrt_sink_redelivered_total") == 0
    assert second.stop() == 0


def test_record_over_max_payload_rejected_and_counted_others_published(ogrt_server, lone_nats):
    small = lone_nats(max_payload=64 * 1024)
    coll = ogrt_server(nats_output(small.urls, replicas=1), jsonl=False)
    big = start_msg(args=[b"x" * 1000] * 100)  # ~100 KB of JSON: over the 64 KB max_payload
    ok_pairs, _ = make_pairs(1)
    coll.send_tcp(frame(12, big) + ok_pairs[0])
    wait_for(lambda: out_metric(coll, "ogrt_output_rejected_total") >= 1, 30, "the big record rejected")
    wait_for(lambda: out_metric(coll, "ogrt_output_persisted_total") >= 2, 30, "the others published")
    assert out_metric(coll, "ogrt_output_rejected_total") == 1
    assert "max_payload" in coll.stderr_text()
    assert coll.stop() == 0


def test_jetstream_storage_full_collector_spools_until_a_sink_makes_room(ogrt_server, ogrt_sink, lone_nats,
                                                                          tmp_path):
    """The servers' JetStream storage limit (max_file_store) refuses new messages and drops none."""
    lone = lone_nats(max_file_store="256KB")
    coll = ogrt_server(nats_output(lone.urls, replicas=1, batch_records=50), jsonl=False)
    n = 500  # 1,000 records of ~250-700 bytes: more than the 256 KB the server may store
    pairs, ids = make_pairs(n)
    coll.send_tcp(b"".join(pairs))
    wait_for(lambda: out_metric(coll, "ogrt_output_write_errors_total") > 0, 30, "the full store refusing")
    assert out_metric(coll, "ogrt_output_persisted_total") < 2 * n
    jsonl = tmp_path / "sink.jsonl"
    sink = jsonl_sink(ogrt_sink, lone.urls, jsonl)
    wait_for(lambda: len(jsonl_keys(jsonl)) >= 2 * n, 90, "every record through the sink")
    keys = jsonl_keys(jsonl)
    assert len(keys) == len(set(keys)) == 2 * n and {k[0] for k in keys} == set(ids)
    assert out_metric(coll, "ogrt_output_dropped_total") == 0
    assert coll.stop() == 0 and sink.stop() == 0


def test_stream_deleted_under_way_recreated_by_collector_and_sink_binds_again(nats_cluster, ogrt_server,
                                                                           ogrt_sink, tmp_path):
    import nats

    jsonl = tmp_path / "sink.jsonl"
    coll = collector(ogrt_server, nats_cluster.urls)
    sink = jsonl_sink(ogrt_sink, nats_cluster.urls, jsonl, fetch_timeout=0.2)
    before, ids_before = make_pairs(10)
    coll.send_tcp(b"".join(before))
    wait_for(lambda: len(jsonl_keys(jsonl)) >= 20, 30, "the first records through")

    async def delete() -> None:
        nc = await nats.connect(nats_cluster.urls)
        await nc.jetstream().delete_stream("OGRT")  # and with it the sinks' consumer
        await nc.close()

    asyncio.run(delete())
    after, ids_after = make_pairs(10)
    coll.send_tcp(b"".join(after))
    wait_for(lambda: len(jsonl_keys(jsonl)) >= 40, 60, "the later records through a new stream")
    keys = jsonl_keys(jsonl)
    assert sorted(keys) == sorted((u, e) for u in ids_before + ids_after for e in ("start", "end"))
    assert "is gone (deleted?); binding again" in sink.stderr_text()
    assert coll.stop() == 0 and sink.stop() == 0
