"""OutputRunner and Spool on real backends: no loss when a backend goes away and returns,
order kept, spool survives a restart, torn tails detected, spool limit counted."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time

import psycopg

from ogrt.outputs import OUTPUT_TYPES
from ogrt.outputs.runner import OutputRunner
from ogrt.outputs.spool import HEADER, Spool
from tests.outputs import records as R
from tests.outputs.helpers import LineListener, wait_for


def make(type_name: str, **options):
    cls = OUTPUT_TYPES[type_name]
    return cls("t", cls.validate("t", {"type": type_name, **options}))


def numbered(lo: int, hi: int) -> list[dict]:
    return [R.start(i) for i in range(lo, hi)]


def ids(recs) -> list[str]:
    return [r["id"] for r in recs]


# -- spool ----------------------------------------------------------------------------------
def test_spool_fifo_across_segments_and_reopen(tmp_path):
    sp = Spool(tmp_path, 10 << 20, segment_bytes=4096)
    batches = [numbered(i * 3, i * 3 + 3) for i in range(20)]
    for b in batches:
        assert sp.append(b, 1.0)
    assert sp.depth == 60 and len(list(tmp_path.glob("seg-*"))) > 2
    for b in batches[:7]:
        got, t = sp.peek()
        assert got == b and t == 1.0
        sp.pop()
    sp.close()
    sp = Spool(tmp_path, 10 << 20, segment_bytes=4096)  # a restart resumes at the cursor
    assert sp.depth == 39
    for b in batches[7:]:
        assert sp.peek()[0] == b
        sp.pop()
    assert sp.peek() is None and sp.depth == 0 and sp.bytes == 0
    assert not list(tmp_path.glob("seg-*"))


def test_spool_torn_tail_is_cut_and_rest_replayed(tmp_path):
    sp = Spool(tmp_path, 10 << 20)
    for i in range(5):
        sp.append(numbered(i, i + 1), 2.0)
    sp.close()
    (seg,) = tmp_path.glob("seg-*")
    size = seg.stat().st_size
    with open(seg, "r+b") as f:  # a crash in the middle of writing the 5th entry
        f.truncate(size - 10)
    sp = Spool(tmp_path, 10 << 20)
    assert sp.depth == 4 and sp.torn_bytes > 0
    assert ids(sp.peek()[0]) == ids(numbered(0, 1))
    # and a flipped byte in the last entry is caught by the CRC
    sp.close()
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF
    seg.write_bytes(bytes(data))
    sp = Spool(tmp_path, 10 << 20)
    assert sp.depth == 3
    got = []
    while (head := sp.peek()) is not None:
        got += head[0]
        sp.pop()
    assert ids(got) == ids(numbered(0, 3))


def test_spool_limit(tmp_path):
    sp = Spool(tmp_path, 3 * (HEADER.size + len(json.dumps(numbered(0, 1)))) + 100)
    assert [sp.append(numbered(i, i + 1), 0) for i in range(5)].count(True) in (2, 3)
    assert sp.bytes <= sp.max_bytes


# -- runner ---------------------------------------------------------------------------------
def test_runner_overflow_keeps_order(tmp_path):
    out = make("jsonl", path=str(tmp_path / "r.jsonl"), batch_records=50, fsync="never")
    r = OutputRunner(out, tmp_path / "spool", 1 << 30)
    r.start()
    for i in range(3000):  # far faster than one batch at a time: the queue spills
        r.submit([R.start(i, nasty=False)])
    r.stop(10)
    got = [json.loads(x)["id"] for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert got == ids(R.start(i) for i in range(3000))
    s = r.stats()
    assert s["persisted"] == 3000 and s["spool_depth"] == 0 and s["dropped"] == 0
    assert s["latency_seconds_count"] == 3000


def test_a_partial_batch_is_written_after_flush_interval(tmp_path):
    out = make("jsonl", path=str(tmp_path / "r.jsonl"), batch_records=1000, flush_interval=0.05)
    r = OutputRunner(out, tmp_path / "spool", 1 << 20)
    r.start()
    try:
        for i in range(3):  # the writer sleeps with an empty queue; each submit is small
            r.submit([R.start(i)])
            wait_for(lambda: r.stats()["persisted"] == i + 1, what=f"record {i} written")
    finally:
        r.stop(5)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 3


def test_json_tcp_peer_away_and_back_spool_survives_restart(tmp_path):
    listener = LineListener()
    listener.start()
    port = listener.port
    spool = tmp_path / "spool"

    def runner():
        out = make("json_tcp", host="127.0.0.1", port=port, batch_records=20,
                   flush_interval=0.05, reconnect_max_seconds=0.5)
        r = OutputRunner(out, spool, 1 << 30)
        r.start()
        return r

    def submit(lo, hi):
        for i in range(lo, hi, 20):
            r.submit(numbered(i, min(i + 20, hi)))

    r = runner()
    submit(0, 100)
    wait_for(lambda: len(listener.received()) == 100, what="first 100")
    listener.stop()                                   # the peer goes away
    first = listener.received()
    submit(100, 200)
    wait_for(lambda: r.stats()["spool_depth"] >= 100 and r.stats()["write_errors"] >= 1,
             what="spooling")
    r.stop(5)                                         # the daemon stops while it is down
    assert r.stats()["spool_depth"] == 100
    r = runner()                                      # ... and restarts, still down
    submit(200, 250)
    wait_for(lambda: r.stats()["spool_depth"] >= 150, what="spooling after restart")
    listener = LineListener(port)                     # the peer comes back
    listener.start()
    try:
        submit(250, 300)
        wait_for(lambda: len(listener.received()) >= 200, what="the other 200")
        r.stop(5)
        got = first + listener.received()
        assert ids(got) == ids(numbered(0, 300))      # none lost, none twice, order kept
        assert r.stats()["spool_depth"] == 0 and r.stats()["dropped"] == 0
        assert not list(spool.glob("seg-*"))
    finally:
        listener.stop()


def test_spool_full_counts_dropped(tmp_path, caplog):
    listener = LineListener()
    listener.start()
    port = listener.port
    listener.stop()
    out = make("json_tcp", host="127.0.0.1", port=port, batch_records=10, flush_interval=0.05)
    r = OutputRunner(out, tmp_path / "spool", 20_000)
    r.start()
    for i in range(0, 300, 10):
        r.submit(numbered(i, i + 10))
        time.sleep(0.01)
    r.stop(2)
    s = r.stats()
    assert s["dropped"] > 0 and s["spool_bytes"] <= 20_000
    assert s["dropped"] + s["spool_depth"] == 300
    assert "SPOOL FULL" in caplog.text


def test_postgresql_stopped_while_records_flow(postgres, tmp_path):
    dsn = postgres.new_database()
    out = make("postgresql", dsn=dsn, batch_records=50, flush_interval=0.05,
               connect_timeout=1, reconnect_max_seconds=0.5)
    r = OutputRunner(out, tmp_path / "spool", 1 << 30)
    r.start()
    n = 0
    stop_feed = threading.Event()

    def feed():
        nonlocal n
        while not stop_feed.is_set() and n < 20000:
            r.submit([R.start(n), R.end(n)])
            n += 1
            time.sleep(0.0005)

    t = threading.Thread(target=feed)
    t.start()
    try:
        wait_for(lambda: r.stats()["persisted"] > 100, what="first records")
        postgres.stop()
        wait_for(lambda: r.stats()["spool_depth"] > 100, what="spool depth while PG is down")
        assert r.stats()["write_errors"] >= 1
    finally:
        postgres.start()
    time.sleep(0.3)
    stop_feed.set()
    t.join()
    r.stop(30)
    s = r.stats()
    assert s["spool_depth"] == 0 and s["dropped"] == 0 and s["persisted"] >= 2 * n
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*), count(end_time), count(executable_id) "
                            "FROM processes").fetchone() == (n, n, n)
        assert conn.execute("SELECT count(*), sum(late::int) FROM process_libraries"
                            ).fetchone() == (4 * n, n)


def _child_writes(db: str, order: str) -> str:
    return (
        "import sys; sys.path.insert(0, %r)\n"
        "from ogrt.outputs.sqlite import SqliteOutput\n"
        "from tests.outputs import records as R\n"
        "o = SqliteOutput('db', SqliteOutput.validate('db', {'path': %r, 'busy_timeout': 60}))\n"
        "o.open()\n"
        "recs = R.pairs(400)\n"
        "recs = recs if %r == 'fwd' else recs[::-1]\n"
        "for i in range(0, len(recs), 40):\n"
        "    o.write(recs[i:i + 40])\n"
        "o.close()\n" % (os.getcwd(), db, order)
    )


def test_sqlite_two_processes_every_record_once(tmp_path):
    import subprocess
    import sys

    db = str(tmp_path / "shared.db")
    procs = [subprocess.Popen([sys.executable, "-c", _child_writes(db, o)]) for o in ("fwd", "rev")]
    assert [p.wait(120) for p in procs] == [0, 0]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT uuid), count(end_time), "
                            "count(start_time), count(executable_id) FROM processes"
                            ).fetchone() == (400, 400, 400, 400, 400)
        assert conn.execute("SELECT count(*), sum(late) FROM process_libraries").fetchone() == (1600, 400)
        assert conn.execute("SELECT count(*) FROM libraries").fetchone()[0] == 4
        assert conn.execute("SELECT count(*) FROM executables").fetchone()[0] == 14  # 7 paths x 2 stamps


def test_jsonl_rotation_two_processes(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "r.jsonl"
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from ogrt.outputs.jsonl import JsonlOutput\n"
        "from tests.outputs import records as R\n"
        "o = JsonlOutput('j', JsonlOutput.validate('j', {'path': %r, 'rotate_bytes': 200000}))\n"
        "o.open()\n"
        "w = int(sys.argv[1])\n"
        "for b in range(60):\n"
        "    o.write([dict(R.start(i), id='%%d-%%d' %% (w, i)) for i in range(b * 10, b * 10 + 10)])\n"
        "o.close()\n" % (os.getcwd(), str(path))
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)]) for w in (1, 2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    files = sorted(tmp_path.glob("r.jsonl*"))
    rotated = [f for f in files if f.name not in ("r.jsonl", "r.jsonl.lock")]
    assert len(rotated) >= 3
    assert all(f.name[len("r.jsonl."):][:8].isdigit() for f in rotated)
    seen = []
    for f in files:
        if f.name.endswith(".lock"):
            continue
        data = f.read_bytes()
        assert data == b"" or data.endswith(b"\n")
        seen += [json.loads(x)["id"] for x in data.splitlines()]
    assert sorted(seen) == sorted(f"{w}-{i}" for w in (1, 2) for i in range(600))


def test_a_refused_record_is_isolated_and_counted(tmp_path, postgres):
    """A record the backend refuses (here: an int beyond 64 bits) is rejected alone;
    the rest of its batch is written, and the output goes on."""
    dsn = postgres.new_database()
    bad = R.end(7)
    bad["maxrss_kb"] = 1 << 70
    for out in (make("sqlite", path=str(tmp_path / "r.db"), batch_records=10),
                make("postgresql", dsn=dsn, batch_records=10),
                make("jsonl", path=str(tmp_path / "r.jsonl"), batch_records=10)):
        r = OutputRunner(out, tmp_path / f"spool-{out.type_name}", 1 << 20)
        r.start()
        recs = numbered(0, 10)
        r.submit(recs[:7] + [bad] + recs[7:])
        r.submit(numbered(10, 20))
        r.stop(10)
        s = r.stats()
        assert (s["persisted"], s["rejected"], s["spool_depth"]) == (20, 1, 0), out.type_name


def test_stop_with_a_hung_backend_spools_the_batch_in_flight(tmp_path):
    """A peer that accepts but never reads: sendall() blocks. stop() gives up waiting for
    the writer and spools everything, including the batch being written."""
    import socket

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)
    port = hung.getsockname()[1]
    big = [dict(R.start(i), args=["x" * 20000]) for i in range(400)]  # ~8 MB: fills the buffers
    out = make("json_tcp", host="127.0.0.1", port=port, batch_records=100, send_timeout=60)
    r = OutputRunner(out, tmp_path / "spool", 1 << 30)
    r.start()
    for i in range(0, 400, 100):
        r.submit(big[i:i + 100])
    wait_for(lambda: r._inflight is not None, what="a batch in flight")
    time.sleep(0.3)
    t = time.monotonic()
    r.stop(0.5)
    assert time.monotonic() - t < 5
    persisted = int(r.stats()["persisted"])  # sent into the kernel's buffers for the hung peer
    assert persisted < 400 and r.stats()["spool_depth"] + persisted >= 400
    hung.close()
    listener = LineListener()
    listener.start()
    try:
        out = make("json_tcp", host="127.0.0.1", port=listener.port, batch_records=100)
        r2 = OutputRunner(out, tmp_path / "spool", 1 << 30)
        r2.start()
        wait_for(lambda: r2.stats()["spool_depth"] == 0, what="replay")
        r2.stop(5)
        wait_for(lambda: len(listener.received()) >= r2.stats()["persisted"], what="lines")
        got = {x["id"] for x in listener.received()}
        assert got >= {x["id"] for x in big[persisted:]}  # the batch in flight included
    finally:
        listener.stop()


def test_backoff_is_kept_while_records_keep_coming(tmp_path):
    """Submits wake the writer, but while the backend is down it retries only after the
    back-off, which doubles up to reconnect_max_seconds."""
    listener = LineListener()
    listener.start()
    port = listener.port
    listener.stop()
    out = make("json_tcp", host="127.0.0.1", port=port, batch_records=5, flush_interval=0.01,
               reconnect_max_seconds=0.4)
    r = OutputRunner(out, tmp_path / "spool", 1 << 30)
    r.start()
    t0 = time.monotonic()
    for i in range(200):  # 200 submits over ~1 s
        r.submit(numbered(i, i + 1))
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    r.stop(2)
    # retries at 0.1, 0.2, 0.4, 0.4, ... s: a handful, not one per submit
    assert 1 <= r.stats()["write_errors"] <= 2 + elapsed / 0.1
    assert r.stats()["spool_depth"] == 200


def test_postgresql_two_processes_every_record_once(postgres):
    """Two writers (as two daemon workers) upsert the same processes at once, one from the
    start records, one from the end records, in opposite orders: no deadlock, exact rows."""
    import subprocess
    import sys

    dsn = postgres.new_database()
    make("postgresql", dsn=dsn).open()  # schema first, so both children race on data only
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from ogrt.outputs.postgresql import PostgresOutput\n"
        "from tests.outputs import records as R\n"
        "o = PostgresOutput('pg', PostgresOutput.validate('pg', {'dsn': %r}))\n"
        "o.open()\n"
        "recs = R.pairs(400)\n"
        "mine = [r for r in recs if r['event'] == sys.argv[1]]\n"
        "mine = mine if sys.argv[1] == 'start' else mine[::-1]\n"
        "for i in range(0, len(mine), 25):\n"
        "    o.write(mine[i:i + 25])\n"
        "o.close()\n" % (os.getcwd(), dsn)
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, ev]) for ev in ("start", "end")]
    assert [p.wait(120) for p in procs] == [0, 0]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT uuid), count(end_time), "
                            "count(start_time), count(executable_id) FROM processes"
                            ).fetchone() == (400, 400, 400, 400, 400)
        assert conn.execute("SELECT count(*), sum(late::int) FROM process_libraries"
                            ).fetchone() == (1600, 400)
        assert conn.execute("SELECT count(*) FROM process_modules").fetchone()[0] == 800
