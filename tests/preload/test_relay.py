"""TRANSPORT=relay: each record as datagrams on the node relay's Unix socket (the UDP
transport's frames), and the direct TCP path when the socket is missing, refused or full."""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ogrt.proto import ogrt_pb2
from ogrt.proto.ogrt_pb2 import FRAGMENT, PROCESS_END, PROCESS_START
from tests.fixtures.preload import FrameReceiver, RelayLib, closed_port, preload_env
from tests.preload.test_transport import big_run, check_big

# A receiver in its own process: binds the socket, says "ready", and appends each datagram it
# receives to the output file as a 4-byte big-endian length and the datagram's bytes.
SINK = r"""
import os, signal, socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
out = open(sys.argv[2], "ab", buffering=0)
print("ready", flush=True)
while True:
    data = sock.recv(1 << 17)
    out.write(struct.pack(">I", len(data)) + data)
"""


class DatagramSink:
    """A real receiver process on a Unix datagram socket (SINK)."""

    def __init__(self, path: Path, out: Path) -> None:
        self.path, self.out = path, out
        self.proc = subprocess.Popen([sys.executable, "-c", SINK, str(path), str(out)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def datagrams(self, n: int, timeout: float = 10.0) -> list[bytes]:
        """The datagrams received so far, after waiting until there are n (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.out.read_bytes() if self.out.exists() else b""
            grams, pos = [], 0
            while pos + 4 <= len(data):
                (length,) = struct.unpack(">I", data[pos:pos + 4])
                if pos + 4 + length > len(data):
                    break
                grams.append(data[pos + 4:pos + 4 + length])
                pos += 4 + length
            if len(grams) >= n or time.monotonic() > deadline:
                return grams
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self.path.unlink(missing_ok=True)


@pytest.fixture
def sink(relay_lib: RelayLib, tmp_path: Path) -> Iterator[DatagramSink]:
    relay_lib.socket.unlink(missing_ok=True)
    s = DatagramSink(relay_lib.socket, tmp_path / "datagrams")
    try:
        yield s
    finally:
        s.stop()


def run(prog: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([prog, *args], env=env, capture_output=True, timeout=60)


def plain(prog: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return run(prog, {k: v for k, v in env.items() if k != "LD_PRELOAD"}, *args)


def same(a: subprocess.CompletedProcess[bytes], b: subprocess.CompletedProcess[bytes]) -> bool:
    return (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


def test_relay_gets_one_frame_per_datagram(relay_lib: RelayLib, sink: DatagramSink,
                                           c_program: Callable[..., Path]) -> None:
    """A real program's two records reach a receiver process, each one datagram holding one
    frame (4-byte BE type, 4-byte BE length, payload) - nothing goes to the collector."""
    prog = c_program("exit_status")
    nobody_listens = closed_port()
    env = preload_env(relay_lib.lib, nobody_listens)
    proc = run(prog, env, "5")
    assert same(proc, plain(prog, env, "5")) and proc.returncode == 5
    grams = sink.datagrams(2)
    assert len(grams) == 2
    frames = [(struct.unpack(">II", g[:8]), g[8:]) for g in grams]
    assert [(t, n) for (t, n), payload in frames] == [(PROCESS_START, len(grams[0]) - 8),
                                                      (PROCESS_END, len(grams[1]) - 8)]
    start = ogrt_pb2.ProcessStart.FromString(frames[0][1])
    end = ogrt_pb2.ProcessEnd.FromString(frames[1][1])
    assert start.exe == os.fsencode(os.path.realpath(prog)) and start.uid == os.getuid()
    assert end.uuid == start.uuid and end.exit_status == 5
    debug = run(prog, dict(env, OGRT_DEBUG="1"))
    assert b"to the relay " + os.fsencode(relay_lib.socket) in debug.stderr
    assert b"sending directly" not in debug.stderr


def test_relay_splits_large_records_into_fragments(relay_lib: RelayLib, c_program: Callable[..., Path],
                                                   tiny_libs: Callable[[int], list[Path]]) -> None:
    """Records over one piece go as Fragment frames, one per datagram, as UDP sends them."""
    relay_lib.socket.unlink(missing_ok=True)
    with FrameReceiver(unix_path=relay_lib.socket) as recv:
        argv, preloaded, libs = big_run(relay_lib.lib, closed_port(), c_program, tiny_libs)
        check_big(recv.messages(2, timeout=20), argv, preloaded, libs)
        assert recv.errors == []
        frames = recv.frames()
        assert all(f[0] == FRAGMENT and f[2] == "relay" for f in frames)
        assert len(frames) >= 4 and max(len(f[1]) for f in frames) <= 60_100


def check_fallback(lib: Path, srv: Any, prog: Path, errno: int) -> None:
    """A program under lib is unharmed, its two records reach srv by TCP, and OGRT_DEBUG
    says the relay did not take them (errno)."""
    env = preload_env(lib, srv.port)
    proc = run(prog, env, "4")
    assert same(proc, plain(prog, env, "4")) and proc.returncode == 4
    exe = os.path.realpath(prog)
    recs = srv.records(2)
    starts = {r["id"] for r in recs if r["event"] == "start" and r["exe"] == exe}
    recs = [r for r in recs if r["id"] in starts]
    assert [r["event"] for r in recs] == ["start", "end"] and recs[1]["exit_status"] == 4
    debug = run(prog, dict(env, OGRT_DEBUG="1"))
    assert f"did not take the record (errno {errno}): sending directly".encode() in debug.stderr


@pytest.mark.parametrize("state", ["missing", "refused"])
def test_no_relay_falls_back_to_tcp(state: str, relay_lib: RelayLib, ogrt_server: Callable[..., Any],
                                    c_program: Callable[..., Path]) -> None:
    """No socket file (ENOENT) or a file nobody is bound to (ECONNREFUSED): the records go
    to the collector by TCP, and the program does not notice."""
    relay_lib.socket.unlink(missing_ok=True)
    if state == "refused":
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stale.bind(str(relay_lib.socket))
        stale.close()  # the file stays, nobody receives
    try:
        srv = ogrt_server()
        check_fallback(relay_lib.lib, srv, c_program("exit_status"), 2 if state == "missing" else 111)
        assert srv.stop() == 0
    finally:
        relay_lib.socket.unlink(missing_ok=True)


def test_full_relay_falls_back_to_tcp(relay_lib: RelayLib, ogrt_server: Callable[..., Any],
                                      c_program: Callable[..., Path]) -> None:
    """A receiver that does not read, its queue filled: sends would block (EAGAIN); the
    library does not wait, the records go by TCP and the program is unharmed."""
    relay_lib.socket.unlink(missing_ok=True)
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stuck.bind(str(relay_lib.socket))
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        queued = 0
        while True:
            try:
                filler.sendto(b"x" * 64, socket.MSG_DONTWAIT, str(relay_lib.socket))
                queued += 1
            except BlockingIOError:
                break
            assert queued < 100_000
        srv = ogrt_server()
        check_fallback(relay_lib.lib, srv, c_program("exit_status"), 11)
        # the relay's queue holds only the filler's datagrams
        stuck.setblocking(False)
        drained = 0
        while True:
            try:
                assert stuck.recv(100) == b"x" * 64
                drained += 1
            except BlockingIOError:
                break
        assert drained == queued
        assert srv.stop() == 0
    finally:
        filler.close()
        stuck.close()
        relay_lib.socket.unlink(missing_ok=True)
