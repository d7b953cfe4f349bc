"""`[server] allowed_networks`: records from other addresses are counted as rejected
(reason "not_allowed"), never stored; TCP connections from them are closed at once, UDP
datagrams dropped. A real daemon on loopback: 127.0.0.1 allowed, 127.0.0.2 (also loopback) not."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ogrt.config import parse_config
from ogrt.errors import ConfigError
from ogrt.proto import ogrt_pb2
from tests.fixtures.server import frame, start_msg

NOT_ALLOWED = 'ogrt_rejected_total{reason="not_allowed"}'


def test_only_allowed_senders_are_stored(ogrt_server) -> None:
    srv = ogrt_server('[server]\nallowed_networks = ["127.0.0.1/32", "::1/128"]')
    job = frame(10, ogrt_pb2.JobStart(job=ogrt_pb2.JobInfo(job_id=b"7")))
    for _ in range(3):
        srv.send_udp(frame(12, start_msg(exe=b"/denied/udp")), source="127.0.0.2")
    srv.send_tcp(frame(12, start_msg(exe=b"/denied/tcp")) + job, source="127.0.0.2")
    srv.wait_metric(NOT_ALLOWED, 4)
    # the daemon closes a connection from outside at once: the peer sees EOF or a reset
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10, source_address=("127.0.0.2", 0)) as s:
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
    srv.send_tcp(frame(12, start_msg(exe=b"/allowed/tcp")))
    srv.send_udp(frame(12, start_msg(exe=b"/allowed/udp")))
    recs = srv.records(2)
    assert sorted(r["exe"] for r in recs) == ["/allowed/tcp", "/allowed/udp"]
    assert srv.metric(NOT_ALLOWED) == 5  # 3 datagrams, 2 connections
    assert srv.stop() == 0
    assert sorted(r["exe"] for r in srv.records(0)) == ["/allowed/tcp", "/allowed/udp"]


def test_default_is_everyone_and_bad_networks_name_the_key(tmp_path: Path) -> None:
    assert parse_config({}).server.allowed_networks is None
    nets = parse_config({"server": {"allowed_networks": ["10.77.0.0/24", "::1/128"]}}).server.allowed_networks
    assert [str(n) for n in nets] == ["10.77.0.0/24", "::1/128"]
    for bad in (["10.77.0.1/24"], ["10.77.0.0/33"], ["node1"], [24], "10.0.0.0/8"):
        with pytest.raises(ConfigError) as e:
            parse_config({"server": {"allowed_networks": bad}})
        assert e.value.key == "server.allowed_networks"
    conf = tmp_path / "ogrt.conf"
    conf.write_text('[server]\nallowed_networks = ["10.77.0.0/24", "10.77.0.300/32"]\n')
    proc = subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(conf)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "server.allowed_networks" in proc.stderr and "10.77.0.300/32" in proc.stderr
    conf.write_text('[server]\nallowed_networks = ["10.77.0.0/24"]\n')
    proc = subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(conf)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "allowed_networks 10.77.0.0/24" in proc.stdout, proc
