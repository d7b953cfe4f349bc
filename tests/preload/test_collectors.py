"""Several collectors: a list in SERVER_HOST (here OGRT_SERVER, the same entries with ports),
each node's primary picked by a hash of its node name, failover to the next on refused or
unresponsive, back-off per collector.

Nodes are UTS namespaces (`unshare -u`, then `hostname NAME`): the program under the library
sees NAME as its node name. The collectors are real `ogrt server` processes on loopback ports
(the list's entries are host:port; SERVER_PORT applies to entries without a port)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.preload import TEST_MAKE_VARS, closed_port, preload_env, unresponsive_listener

NAMES = [f"node{i:03d}" for i in range(1, 31)]
MASK = 2**64 - 1


def primary_of(name: str, count: int) -> int:
    """The library's choice: FNV-1a 64 of the node name, MurmurHash3's fmix64, modulo count."""
    h = 1469598103934665603
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) & MASK
    for shift, mul in ((33, 0xff51afd7ed558ccd), (33, 0xc4ceb9fe1a85ec53)):
        h ^= h >> shift
        h = (h * mul) & MASK
    h ^= h >> 33
    return h % count


def _can_unshare() -> str | None:
    if not (shutil.which("unshare") and shutil.which("hostname")):
        return "unshare or hostname is not installed"
    probe = subprocess.run(["unshare", "-u", "hostname", "ogrt-probe"], capture_output=True, timeout=30)
    return None if probe.returncode == 0 else f"no UTS namespace here: {probe.stderr.decode().strip()}"


pytestmark = pytest.mark.skipif(bool(_can_unshare()), reason=str(_can_unshare()))


def on_node(name: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """argv under the library (env) on node `name`: unshare, hostname and env themselves run
    without it."""
    outer = {k: v for k, v in env.items() if k != "LD_PRELOAD" and not k.startswith("OGRT_")}
    inner = [f"{k}={v}" for k, v in env.items() if k == "LD_PRELOAD" or k.startswith("OGRT_")]
    script = 'hostname "$1" && shift && exec /usr/bin/env "$@"'
    return subprocess.run(["unshare", "-u", "sh", "-c", script, "sh", name, *inner, *argv], env=outer,
                          capture_output=True, timeout=60)


def servers_env(lib: Path, ports: list[int], **extra: str) -> dict[str, str]:
    return preload_env(lib, ports[0], OGRT_SERVER=",".join(f"127.0.0.1:{p}" for p in ports), **extra)


def starts_by_node(srv: Any, exe: str, n: int = 0) -> Counter[str]:
    """Start and end records of exe at srv, counted per node name (start+end: 2 a run)."""
    recs = srv.records(n, timeout=10 if n else 0)
    ids = {r["id"]: r["host"] for r in recs if r["event"] == "start" and r["exe"] == exe}
    return Counter(ids[r["id"]] for r in recs if r["id"] in ids)


def test_nodes_spread_over_three_collectors(preload_lib: Path, ogrt_server: Callable[..., Any],
                                            c_program: Callable[..., Path]) -> None:
    """30 node names: each node's records arrive at its primary (the one OGRT_DEBUG_INFO
    names), and each collector is primary for at least 5 of them."""
    servers = [ogrt_server() for _ in range(3)]
    prog = c_program("exit_status")
    exe = os.path.realpath(prog)
    env = servers_env(preload_lib, [s.port for s in servers], OGRT_DEBUG_INFO="1")
    picked: dict[str, int] = {}
    for name in NAMES:
        proc = on_node(name, [str(prog), "2"], env)
        assert proc.returncode == 2 and proc.stdout == b"exit_status 2 args\n"
        line = next(ln for ln in proc.stderr.decode().splitlines() if ln.startswith("OGRT primary_server: "))
        entry = int(line.split("(entry ")[1].split(" of 3")[0]) - 1
        assert f"by the node name '{name}'" in line and line.split()[2] == f"127.0.0.1:{servers[entry].port}"
        picked[name] = entry
    assert picked == {name: primary_of(name, 3) for name in NAMES}
    got = [starts_by_node(s, exe, 2 * list(picked.values()).count(i)) for i, s in enumerate(servers)]
    for i, counts in enumerate(got):
        assert counts == Counter({name: 2 for name, p in picked.items() if p == i})
    spread = Counter(picked.values())
    assert min(spread[i] for i in range(3)) >= 5, spread


def test_refused_primary_moves_to_the_next(preload_lib: Path, ogrt_server: Callable[..., Any],
                                           c_program: Callable[..., Path], clean_marker: Callable[[int], Path]) -> None:
    """Collector 0 stopped (connections refused): its nodes' records arrive at collector 1,
    the other nodes' at their own primaries; a refusal sets no back-off marker."""
    servers = [ogrt_server() for _ in range(3)]
    ports = [s.port for s in servers]
    marker = clean_marker(ports[0])
    assert servers[0].stop() == 0
    prog = c_program("exit_status")
    exe = os.path.realpath(prog)
    env = servers_env(preload_lib, ports)
    orphans = [n for n in NAMES if primary_of(n, 3) == 0]
    others = [n for n in NAMES if primary_of(n, 3) != 0][:4]
    assert len(orphans) >= 5
    for name in orphans + others:
        proc = on_node(name, [str(prog), "0"], env)
        assert proc.returncode == 0 and proc.stdout == b"exit_status 2 args\n" and proc.stderr == b""
    want1 = Counter({n: 2 for n in orphans + [o for o in others if primary_of(o, 3) == 1]})
    want2 = Counter({n: 2 for n in others if primary_of(n, 3) == 2})
    assert starts_by_node(servers[1], exe, sum(want1.values())) == want1
    assert starts_by_node(servers[2], exe, sum(want2.values())) == want2
    assert not marker.exists()
    debug = on_node(orphans[0], [str(prog)], dict(env, OGRT_DEBUG="1"))
    assert f"server 127.0.0.1:{ports[0]} refused".encode() in debug.stderr
    assert f"to 127.0.0.1:{ports[1]}".encode() in debug.stderr


def test_unresponsive_primary_is_backed_off_alone(preload_lib: Path, ogrt_server: Callable[..., Any],
                                                  c_program: Callable[..., Path],
                                                  clean_marker: Callable[[int], Path]) -> None:
    """Collector 0 does not answer (accept queue full): the first of its nodes waits the
    connect timeout, sends to collector 1 and leaves a marker for collector 0 only; later
    processes skip collector 0 without waiting, and records still reach 1 and 2."""
    with unresponsive_listener() as silent:
        servers = [ogrt_server() for _ in range(2)]
        ports = [silent] + [s.port for s in servers]
        marks = [clean_marker(p) for p in ports]
        prog = c_program("exit_status")
        exe = os.path.realpath(prog)
        env = servers_env(preload_lib, ports, OGRT_DEBUG="1")
        orphans = [n for n in NAMES if primary_of(n, 3) == 0][:3]
        other = next(n for n in NAMES if primary_of(n, 3) == 2)
        t0 = time.monotonic()
        first = on_node(orphans[0], [str(prog), "1"], env)
        took = time.monotonic() - t0
        assert first.returncode == 1 and first.stdout == b"exit_status 2 args\n"
        assert f"server 127.0.0.1:{silent} did not answer within 200 ms".encode() in first.stderr
        assert marks[0].is_file() and not marks[1].exists() and not marks[2].exists()
        t0 = time.monotonic()
        later = [on_node(n, [str(prog), "1"], env) for n in orphans[1:]]
        took_later = (time.monotonic() - t0) / len(later)
        for proc in later:
            assert f"backing off: not sending to 127.0.0.1:{silent}".encode() in proc.stderr
            assert b"did not answer" not in proc.stderr
        on_node(other, [str(prog), "1"], env)
        assert starts_by_node(servers[0], exe, 2 * len(orphans)) == Counter({n: 2 for n in orphans})
        assert starts_by_node(servers[1], exe, 2) == Counter({other: 2})
        print(f"first process of a node whose primary is unresponsive: {took * 1000:.0f} ms; "
              f"later ones (marker): {took_later * 1000:.0f} ms each (unshare+sh+hostname+env included)")


def test_all_collectors_down_harms_nothing(preload_lib: Path, c_program: Callable[..., Path],
                                           clean_marker: Callable[[int], Path]) -> None:
    """Three unresponsive collectors: the program's status, output and descriptors are those
    of a plain run; the first process waits each collector's connect timeout once (markers
    for all three), the next skips them all."""
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(unresponsive_listener()) for _ in range(3)]
        marks = [clean_marker(p) for p in ports]
        argv = ["/bin/sh", "-c", "ls /proc/self/fd; echo to-stderr >&2; exit 7"]
        env = servers_env(preload_lib, ports)
        plain = on_node("node001", argv, {k: v for k, v in env.items() if k != "LD_PRELOAD"})
        timings = []
        for _ in range(2):
            t0 = time.monotonic()
            under = on_node("node001", argv, env)
            timings.append(time.monotonic() - t0)
            assert (under.returncode, under.stdout, under.stderr) == (plain.returncode, plain.stdout, plain.stderr)
            assert under.returncode == 7
            assert all(m.is_file() for m in marks)
        debug = on_node("node001", argv, dict(env, OGRT_DEBUG="1"))
        skipped = Counter(ln.split("]")[0] for ln in debug.stderr.decode().splitlines()
                          if "backing off: not sending to" in ln)
        assert skipped and set(skipped.values()) == {3}  # each process (sh, ls) skipped all three
        assert b"did not answer" not in debug.stderr
        print(f"all three collectors unresponsive: first process {timings[0] * 1000:.0f} ms, "
              f"second {timings[1] * 1000:.0f} ms (CONNECT_TIMEOUT_MS=200, markers)")


def test_compiled_list_and_primary_in_debug_info(build_preload: Callable[..., Path]) -> None:
    """SERVER_HOST compiled in as a list of every entry form; OGRT_DEBUG_INFO names it and the
    primary of the node."""
    hosts = "127.0.0.1,127.0.0.2:7000,[::1]:7001,::1,localhost:7002"
    lib = build_preload(**{**TEST_MAKE_VARS, "SERVER_HOST": hosts, "ALLOW_SERVER_ENV": "no"})
    env = preload_env(lib, closed_port(), OGRT_DEBUG_INFO="1", OGRT_SERVER=None)
    texts = ["127.0.0.1:7971", "127.0.0.2:7000", "[::1]:7001", "[::1]:7971", "localhost:7002"]
    for name in NAMES[:5]:
        out = on_node(name, ["/bin/true"], env).stderr.decode().splitlines()
        assert f"OGRT servers: {hosts}" in out
        p = primary_of(name, 5)
        assert f"OGRT primary_server: {texts[p]} (entry {p + 1} of 5, by the node name '{name}')" in out
