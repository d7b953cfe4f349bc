"""The pieces of the relay path on their own: [relay]/[server] keys through the one checker,
the processes.verified migration on a real SQLite file, OutputRunner settling Acked batches
(persisted, spooled, dropped) with real outputs and a real closed port."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from ogrt.config import ConfigError, parse_config
from ogrt.outputs import OUTPUT_TYPES
from ogrt.outputs.runner import Acked, OutputRunner
from tests.fixtures.schema3 import downgrade_to_version_3
from tests.fixtures.server import free_port
from tests.outputs import records as R


@pytest.mark.parametrize("table, key", [
    ({"relay": {"upstream": []}}, "relay.upstream"),
    ({"relay": {"upstream": ["collector:7972"]}}, "relay.upstream"),
    ({"relay": {"upstream": "127.0.0.1:7972"}}, "relay.upstream"),
    ({"relay": {"sockets": "/x"}}, "relay.sockets"),
    ({"relay": {"batch_records": 0}}, "relay.batch_records"),
    ({"server": {"direct": "maybe"}}, "server.direct"),
    ({"server": {"relay_users": [7]}}, "server.relay_users"),
    ({"server": {"relay_port": 70000}}, "server.relay_port"),
])
def test_bad_relay_keys_are_named(table, key):
    with pytest.raises(ConfigError) as e:
        parse_config(table)
    assert str(e.value).startswith(key)


def test_relay_defaults_once():
    c = parse_config({"relay": {"upstream": ["10.0.0.1:7972", "[::1]:7973"]}})
    assert c.relay.upstream == (("10.0.0.1", 7972), ("::1", 7973))
    assert c.relay.socket == "/run/ogrt/relay.sock" and c.relay.ack_timeout == 10.0
    assert c.server.relay_port is None and c.server.direct == "accept"
    assert c.server.munge_socket == "/run/munge/munge.socket.2"


def _output(type_name: str, **options):
    cls = OUTPUT_TYPES[type_name]
    return cls("t", cls.validate("t", {"type": type_name, **options}))


def test_verified_column_is_added_to_a_version_3_database(tmp_path):
    db = tmp_path / "old.sqlite"
    out = _output("sqlite", path=str(db))
    out.open()
    out.close()
    with sqlite3.connect(db) as conn:  # a schema-3 database, made before the column existed
        downgrade_to_version_3(conn, "sqlite")
    out = _output("sqlite", path=str(db))
    out.open()
    older = {k: v for k, v in R.start(3).items() if k != "verified"}  # e.g. replayed from an old spool
    out.write([{**R.start(1), "verified": True}, {**R.start(2), "verified": False}, older])
    out.close()
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT uuid, verified FROM processes"))
    assert rows == {R.start(1)["id"]: 1, R.start(2)["id"]: 0, R.start(3)["id"]: None}


def _settle(runner: OutputRunner, records: list) -> bool:
    done = threading.Event()
    result: list[bool] = []

    def settled(ok: bool) -> None:
        result.append(ok)
        done.set()

    runner.submit(Acked(records, settled))
    assert done.wait(30)
    return result[0]


def test_acked_batches_settle_when_persisted_spooled_or_dropped(tmp_path):
    ok = OutputRunner(_output("jsonl", path=str(tmp_path / "a.jsonl"), flush_interval=0.01), tmp_path / "s1", 1 << 20)
    ok.start()
    assert _settle(ok, [R.start(1)]) is True and ok.persisted == 1
    ok.stop()
    # a backend that is down (a closed port): the batch is in the spool, that is settled too
    down = OutputRunner(_output("json_tcp", host="127.0.0.1", port=free_port(), flush_interval=0.01,
                                connect_timeout=0.5), tmp_path / "s2", 1 << 20)
    down.start()
    assert _settle(down, [R.start(2)]) is True and down.spool.depth == 1
    # a spool too small to take the batch: dropped, not settled well (the relay resends it)
    assert _settle(down, [R.start(i) for i in range(3, 3000)]) is False and down.dropped > 0
    down.stop(1.0)


def test_socket_queues_queue_length_datagrams(tmp_path):
    """The kernel's default queue (net.unix.max_dgram_qlen, 10 here) would refuse the 11th
    unread datagram; the relay's socket takes queue_length of them (private namespace)."""
    import socket

    from ogrt.relay.receive import bind_datagram_socket, queue_length_now

    if (queue_length_now() or 0) >= 150:
        pytest.skip("this host's net.unix.max_dgram_qlen already queues 150 datagrams")
    path = str(tmp_path / "q.sock")
    sock, queued = bind_datagram_socket(path, 0, queue_length=200)
    assert queued == 200
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for i in range(150):
            sender.sendto(b"x", socket.MSG_DONTWAIT, path)  # BlockingIOError when the queue is full
    finally:
        sender.close()
        sock.close()


def test_reader_sleeping_between_drains_loses_nothing_of_a_burst(tmp_path):
    """With the relay's queue the reader drains on a timer (drain_pause): a burst of 2,000
    datagrams sent meanwhile, never waiting, is queued whole (none refused) and every record
    is emitted."""
    import os
    import socket
    import time

    from ogrt.framing import encode_frame
    from ogrt.metrics import Counters
    from ogrt.proto import ogrt_pb2
    from ogrt.relay.receive import DatagramSocket, bind_datagram_socket, drain_pause

    path = str(tmp_path / "r.sock")
    sock, queued = bind_datagram_socket(path, 8 << 20, queue_length=4096)
    if drain_pause(queued) == 0:
        sock.close()
        pytest.skip(f"the socket queues {queued} datagrams here (a private namespace needs CAP_SYS_ADMIN)")
    emitted: list[bytes] = []
    rx = DatagramSocket(sock, emitted.append, Counters(), 1 << 20, 10.0, 1 << 26, queued)
    reader = threading.Thread(target=rx.run)
    reader.start()
    try:
        for i in range(2000):  # a socket each, as the library sends (one socket's send buffer holds fewer)
            msg = ogrt_pb2.ProcessStart(uuid=i.to_bytes(16, "big"), pid=os.getpid(), uid=os.getuid(),
                                        gid=os.getgid())
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.sendto(encode_frame(ogrt_pb2.PROCESS_START, msg.SerializeToString()), socket.MSG_DONTWAIT,
                              path)
        deadline = time.monotonic() + 30
        while len(emitted) < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        rx.stop()
        reader.join()
        sock.close()
    assert len(emitted) == 2000
