"""OutputRunner.wait_room(): a receiver that can wait (the UDP thread, leaning on the kernel's
receive buffer) waits for queue room instead of making the runner spill to its spool."""
from __future__ import annotations

import json
import socket
import time

from ogrt.outputs import OUTPUT_TYPES
from ogrt.outputs.runner import OutputRunner
from tests.outputs import records as R
from tests.outputs.helpers import LineListener, wait_for


def make(type_name: str, **options):
    cls = OUTPUT_TYPES[type_name]
    return cls("t", cls.validate("t", {"type": type_name, **options}))


def test_waiting_for_room_never_spills_and_keeps_order(tmp_path):
    out = make("jsonl", path=str(tmp_path / "r.jsonl"), batch_records=50, fsync="never")
    r = OutputRunner(out, tmp_path / "spool", 1 << 30)
    r.start()
    try:
        for i in range(0, 3000, 25):  # far faster than the writer: without waiting this spills
            batch = [R.start(k, nasty=False) for k in range(i, i + 25)]
            assert r.wait_room(len(batch), 10.0)
            r.submit(batch)
            assert r.stats()["queue_depth"] <= r.queue_limit
    finally:
        r.stop(10)
    s = r.stats()
    assert s["spooled_total"] == 0 and s["persisted"] == 3000 and s["dropped"] == 0
    got = [json.loads(x)["id"] for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert got == [R.start(k)["id"] for k in range(3000)]


def test_wait_room_gives_up_after_its_timeout_when_the_writer_is_stuck(tmp_path):
    hung = socket.socket()  # accepts, never reads: the writer blocks in sendall()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)
    big = [dict(R.start(i), args=["x" * (1 << 20)]) for i in range(40)]  # 10 MB a batch
    out = make("json_tcp", host="127.0.0.1", port=hung.getsockname()[1], batch_records=10,
               send_timeout=60)
    r = OutputRunner(out, tmp_path / "spool", 1 << 30)
    r.start()
    try:
        r.submit(big[:10])
        wait_for(lambda: r._inflight is not None, what="a batch in flight")
        time.sleep(0.3)  # it stays in flight: the peer never reads
        assert r._inflight is not None
        for i in range(10, 40, 10):
            r.submit(big[i:i + 10])
        assert r.stats()["queue_depth"] == 30 and r.queue_limit == 40
        assert r.wait_room(10, 0.0)  # fits
        t = time.monotonic()
        assert not r.wait_room(20, 0.3)  # does not fit while the writer is stuck
        assert 0.25 <= time.monotonic() - t < 3
        assert r.stats()["spooled_total"] == 0
    finally:
        r.stop(0.5)
        hung.close()


def test_wait_room_returns_at_once_while_the_backend_is_down(tmp_path):
    listener = LineListener()
    listener.start()
    port = listener.port
    listener.stop()  # nothing listens: every write fails
    out = make("json_tcp", host="127.0.0.1", port=port, batch_records=10, flush_interval=0.01,
               reconnect_max_seconds=5)
    r = OutputRunner(out, tmp_path / "spool", 1 << 30)
    r.start()
    try:
        r.submit([R.start(i) for i in range(10)])
        wait_for(lambda: r.stats()["write_errors"] >= 1, what="a failed write")
        r.submit([R.start(i) for i in range(10, 50)])  # the queue is full or the spool holds them
        t = time.monotonic()
        r.wait_room(10_000, 5.0)  # more than ever fits: only "unhealthy" can end it early
        assert time.monotonic() - t < 1.0
    finally:
        r.stop(1)
    s = r.stats()
    assert s["spool_depth"] + s["persisted"] == 50
