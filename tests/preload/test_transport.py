"""Transports and failure modes: UDP datagrams and fragments, large records over TCP, a
closed port, an unresponsive server and the shared back-off marker."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.preload import (FRAGMENT, PROCESS_END, PROCESS_START, TEST_MAKE_VARS, FrameReceiver,
                                    closed_port, preload_env)


@pytest.fixture
def udp_lib(build_preload: Callable[..., Path]) -> Path:
    return build_preload(**TEST_MAKE_VARS, TRANSPORT="udp")


def test_udp_transport_sends_datagrams(udp_lib: Path, frame_receiver: FrameReceiver,
                                       c_program: Callable[..., Path]) -> None:
    proc = subprocess.run([c_program("exit_status"), "6"], env=preload_env(udp_lib, frame_receiver.port),
                          capture_output=True, timeout=60)
    assert proc.returncode == 6
    got = frame_receiver.received(2, timeout=10)
    assert [(r.type, r.transport) for r in got] == [(PROCESS_START, "udp"), (PROCESS_END, "udp")]
    assert got[1].msg.exit_status == 6 and got[0].msg.uuid == got[1].msg.uuid
    assert [f[0] for f in frame_receiver.frames()] == [PROCESS_START, PROCESS_END]


def big_run(lib: Path, port: int, c_program: Callable[..., Path],
            tiny_libs: Callable[[int], list[Path]]) -> tuple[list[bytes], list[Path], list[Path]]:
    """dlopen_libs with 1,000 preloaded libraries, 1,000 more to dlopen and a command line
    above 100,000 bytes."""
    all_libs = tiny_libs(2000)
    preloaded, libs = all_libs[:1000], all_libs[1000:]
    argv = [os.fsencode(c_program("dlopen_libs", "-ldl"))] + [os.fsencode(p) for p in libs]
    pad = 100_000 - sum(len(a) + 1 for a in argv)
    argv.append(b"\xff" * max(pad, 1000))
    env = preload_env(lib, port)
    env["LD_PRELOAD"] = " ".join([str(lib), *map(str, preloaded)])
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == b"loaded 1000\n"
    assert sum(len(a) for a in argv) >= 100_000 - len(argv)
    return argv, preloaded, libs


def check_big(msgs: list[tuple[int, object]], argv: list[bytes], preloaded: list[Path], libs: list[Path]) -> None:
    assert [t for t, _ in msgs] == [PROCESS_START, PROCESS_END]
    start, end = msgs[0][1], msgs[1][1]
    assert list(start.args) == argv
    start_paths = [lib.path for lib in start.libs]
    assert [p for p in start_paths if b"libogrttiny" in p] == [os.fsencode(p) for p in preloaded]
    assert [lib.path for lib in end.libs] == [os.fsencode(p) for p in libs]
    assert end.uuid == start.uuid and end.exit_status == 0


def test_tcp_carries_1000_libs_each_way_and_100kb_argv_whole(preload_lib: Path, frame_receiver: FrameReceiver,
                                                    c_program: Callable[..., Path],
                                                    tiny_libs: Callable[[int], list[Path]]) -> None:
    argv, preloaded, libs = big_run(preload_lib, frame_receiver.port, c_program, tiny_libs)
    check_big(frame_receiver.messages(2, timeout=20), argv, preloaded, libs)
    assert frame_receiver.errors == []
    assert FRAGMENT not in [f[0] for f in frame_receiver.frames()]


def test_udp_splits_large_records_into_fragments(udp_lib: Path, frame_receiver: FrameReceiver,
                                                 c_program: Callable[..., Path],
                                                 tiny_libs: Callable[[int], list[Path]]) -> None:
    argv, preloaded, libs = big_run(udp_lib, frame_receiver.port, c_program, tiny_libs)
    check_big(frame_receiver.messages(2, timeout=20), argv, preloaded, libs)
    assert frame_receiver.errors == []
    frames = frame_receiver.frames()
    assert all(f[0] == FRAGMENT and f[2] == "udp" for f in frames)
    assert len(frames) >= 4  # both records needed at least two pieces each
    assert max(len(f[1]) for f in frames) <= 60_100


def plain_and_preloaded(prog: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[bytes], ...]:
    plain_env = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    plain = subprocess.run([prog, "3"], env=plain_env, capture_output=True, timeout=60)
    under = subprocess.run([prog, "3"], env=env, capture_output=True, timeout=60)
    return plain, under


def test_closed_port_changes_nothing(preload_lib: Path, c_program: Callable[..., Path],
                                     clean_marker: Callable[[int], Path]) -> None:
    port = closed_port()
    marker = clean_marker(port)
    plain, under = plain_and_preloaded(c_program("exit_status"), preload_env(preload_lib, port))
    assert (under.returncode, under.stdout, under.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert not marker.exists()  # refused is cheap: no back-off needed
    debug = subprocess.run([c_program("exit_status")], env=preload_env(preload_lib, port, OGRT_DEBUG="1"),
                           capture_output=True, timeout=60)
    assert b"refused" in debug.stderr


def test_unresponsive_server_backs_off_for_all_processes(preload_lib: Path, unresponsive_port: int,
                                                         c_program: Callable[..., Path],
                                                         clean_marker: Callable[[int], Path]) -> None:
    marker = clean_marker(unresponsive_port)
    prog = c_program("exit_status")
    env = preload_env(preload_lib, unresponsive_port)
    plain, under = plain_and_preloaded(prog, env)
    assert (under.returncode, under.stdout, under.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert marker.is_file() and marker.stat().st_uid == os.getuid()
    assert marker.stat().st_mode & 0o777 == 0o600
    # Later processes skip sending (no connect attempt, so no timeout) while the marker is valid.
    second = subprocess.run([prog, "3"], env=dict(env, OGRT_DEBUG="1"), capture_output=True, timeout=60)
    assert second.returncode == 3 and second.stdout == plain.stdout
    assert b"backing off" in second.stderr and b"did not answer" not in second.stderr
    # An expired marker is ignored: the next process tries (and times out) again.
    os.utime(marker, (1, 1))
    third = subprocess.run([prog, "3"], env=dict(env, OGRT_DEBUG="1"), capture_output=True, timeout=60)
    assert b"did not answer within 200 ms" in third.stderr


def test_marker_of_other_server_does_not_stop_sending(preload_lib: Path, frame_receiver: FrameReceiver,
                                                      c_program: Callable[..., Path],
                                                      clean_marker: Callable[[int], Path]) -> None:
    other = clean_marker(closed_port())
    other.touch()
    soon = time.time() + 30
    os.utime(other, (soon, soon))
    subprocess.run([c_program("exit_status")], env=preload_env(preload_lib, frame_receiver.port), timeout=60)
    assert len(frame_receiver.messages(2, timeout=10)) == 2


def test_ipv6_server_from_environment(preload_lib: Path, c_program: Callable[..., Path]) -> None:
    try:
        recv = FrameReceiver("::1")
    except OSError as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"no IPv6 loopback on this host: {exc}")
    try:
        env = preload_env(preload_lib, recv.port, OGRT_SERVER=f"[::1]:{recv.port}")
        assert subprocess.run([c_program("exit_status"), "1"], env=env, timeout=60,
                              capture_output=True).returncode == 1
        got = recv.received(2, timeout=10)
        assert [r.type for r in got] == [PROCESS_START, PROCESS_END] and got[0].peer == "::1"
    finally:
        recv.close()


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "[::1]", "::1:80", ":80",
                                   "127.0.0.1:80x", "no.such.host.invalid:7971"])
def test_bad_server_variable_is_harmless(preload_lib: Path, c_program: Callable[..., Path], value: str) -> None:
    prog = c_program("exit_status")
    env = preload_env(preload_lib, 1, OGRT_SERVER=value)
    plain = subprocess.run([prog, "2"], env={k: v for k, v in env.items() if k != "LD_PRELOAD"},
                           capture_output=True, timeout=60)
    under = subprocess.run([prog, "2"], env=env, capture_output=True, timeout=60)
    assert (under.returncode, under.stdout, under.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    debug = subprocess.run([prog, "2"], env=dict(env, OGRT_DEBUG="1"), capture_output=True, timeout=60)
    assert b"OGRT_SERVER=" in debug.stderr or b"cannot resolve" in debug.stderr


def test_server_name_from_etc_hosts(preload_lib: Path, frame_receiver: FrameReceiver,
                                    c_program: Callable[..., Path]) -> None:
    """A server name listed in /etc/hosts is found there (no resolver, no NSS modules loaded)."""
    names = []
    for line in Path("/etc/hosts").read_text().splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2 and words[0] == "127.0.0.1":
            names += [w for w in words[1:] if w != "localhost"]
    if not names:
        pytest.skip("/etc/hosts lists no name for 127.0.0.1 besides localhost")
    env = preload_env(preload_lib, frame_receiver.port, OGRT_SERVER=f"{names[0].upper()}:{frame_receiver.port}")
    subprocess.run([c_program("dlopen_libs", "-ldl")], env=env, timeout=60, capture_output=True)
    got = frame_receiver.messages(2, timeout=10)
    assert [t for t, _ in got] == [PROCESS_START, PROCESS_END]
    assert not any(b"libnss" in lib.path for lib in got[1][1].libs)  # nothing loaded behind the program's back
