#!/usr/bin/env python3
"""Spawn overhead of libogrt.so (issue 2's benchmark); prints ratios measured in one run.

posix_spawn(/bin/true) from one C parent (benchmarks/spawn_overhead.c), interleaving runs
without and with the library, each timed from spawn to reaped exit:

  transports      2,000 rounds, one interleaved run: /bin/true plain, under the empty library
                  and under the tcp, udp and relay builds (order shuffled each round from a
                  fixed seed; an untimed pause before each spawn lets the receivers finish);
                  each build's median above the empty library's: tcp <= 100 us, udp <= 50 us,
                  relay <= 30 us. Receivers: the minimal C sink below (tcp, udp) and a C
                  process reading the relay's Unix datagram socket as `ogrt relay` does (its
                  queue length and drain pause, ogrt/relay/receive.py). Every spawn is made
                  twice in the run: unpinned (everything shares the cores), and pinned: the
                  spawner and its child on one CPU, the tcp/udp sink on the other (the model
                  of a compute node whose collector is another host; the relay's reader, on
                  the node, stays unpinned). tcp and udp are judged pinned, the relay unpinned.
  empty library   2,000 pairs, a preloaded library with no code (reference)   (no target)
  tcp daemon      2,000 pairs, the real `ogrt server` (null output) on loopback  median ratio <= 1.08
  udp daemon      2,000 pairs, same daemon over UDP                              median ratio <= 1.08
  tcp sink        2,000 pairs, a minimal C receiver instead of the daemon        median ratio <= 1.08
  udp sink        2,000 pairs, same over UDP                                     median ratio <= 1.08
  port closed     2,000 pairs, nobody listening (connection refused)             median ratio <= 1.08
  unresponsive    1,000 pairs, a listener whose accept queue is full (SYNs
                  unanswered; the first process waits CONNECT_TIMEOUT_MS, then
                  all back off through the shared /dev/shm marker)              total ratio  <= 1.15

Usage: .venv/bin/python benchmarks/spawn_overhead.py [--pairs 2000] [--unresponsive-pairs 1000]
       [--transports-only] [--seed 1] [--settle-us 1000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ogrt.config import parse_config  # noqa: E402
from ogrt.relay.receive import drain_pause  # noqa: E402
from tests.fixtures.preload import backoff_marker, closed_port, make_preload, unresponsive_listener  # noqa: E402


def build(tmp: Path) -> tuple[Path, Path, Path, Path]:
    libs = []
    for transport in ("tcp", "udp", "relay"):
        d = tmp / transport
        d.mkdir()
        proc = make_preload(d, ALLOW_SERVER_ENV="yes", TRANSPORT=transport,  # default CONNECT_TIMEOUT_MS
                            RELAY_SOCKET=str(tmp / "relay.sock"))
        if proc.returncode:
            sys.exit(f"building the library failed:\n{proc.stderr}")
        libs.append(d / "libogrt.so")
    empty_c = tmp / "empty.c"
    empty_c.write_text("int ogrt_bench_empty;\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(tmp / "empty.so"), str(empty_c)], check=True)
    driver = tmp / "spawn_overhead"
    subprocess.run(["gcc", "-O2", "-o", str(driver), str(REPO / "benchmarks" / "spawn_overhead.c")], check=True)
    return libs[0], libs[1], libs[2], driver


def start_daemon(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        conf = tmp / "ogrt.conf"
        conf.write_text(f'[server]\naddress = "127.0.0.1"\nport = {port}\nstate_dir = "{tmp}/state"\n'
                        f'log_level = "warning"\n[outputs.none]\ntype = "null"\n')
        err = open(tmp / "server.err", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "ogrt", "server", "--config", str(conf)],
                                stdout=err, stderr=err, cwd=REPO)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if b"ogrt server ready" in (tmp / "server.err").read_bytes():
                return proc, port
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    sys.exit(f"ogrt server did not start:\n{(tmp / 'server.err').read_text()[-3000:]}")


def start_sink(driver: Path) -> tuple[subprocess.Popen[str], int]:
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([str(driver), "--sink", str(port)], stdout=subprocess.PIPE, text=True)
        if proc.stdout is not None and proc.stdout.readline().strip() == "sink ready":
            return proc, port
        proc.kill()
        proc.wait()
    sys.exit("the sink did not start")


def start_unix_sink(driver: Path, path: Path) -> tuple[subprocess.Popen[str], str]:
    """The relay's reader as a C process: `ogrt relay`'s default queue length and the drain
    pause the relay uses for the queue the socket gets."""
    want = parse_config({}).relay.queue_length
    proc = subprocess.Popen([str(driver), "--unix-sink", str(path), str(want),
                             str(round(drain_pause(want) * 1e6))], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split() if proc.stdout is not None else []
    if line[:3] != ["unix", "sink", "ready"]:
        proc.kill()
        proc.wait()
        sys.exit("the unix sink did not start")
    queued = int(line[3])
    pause = drain_pause(queued)
    if drain_pause(want) != pause:  # the host's shallower queue: the relay would not pause either
        proc.kill()
        proc.wait()
        proc = subprocess.Popen([str(driver), "--unix-sink", str(path), str(want), str(round(pause * 1e6))],
                                stdout=subprocess.PIPE, text=True)
        if proc.stdout is None or not proc.stdout.readline().startswith("unix sink ready"):
            sys.exit("the unix sink did not start")
    how = f"drained every {pause * 1e3:g} ms" if pause else "read at each datagram"
    return proc, f"a queue of {queued} datagrams, {how}"


# build -> its target in us per spawn above the empty library
TRANSPORT_TARGETS = {"tcp": 100.0, "udp": 50.0, "relay": 30.0}


def transports(driver: Path, empty: Path, libs: dict[str, Path], port: int, rounds: int, seed: int,
               settle_us: int, sink_pid: int, pin: bool) -> dict[str, dict[str, float]]:
    """One interleaved run of plain, empty and every build, each unpinned and (pin) pinned;
    per placement the medians: plain's, and each build's above the empty library's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGRT_") and k != "LD_PRELOAD"}
    spawned = {"plain": "-", "empty library": str(empty), **{name: str(lib) for name, lib in libs.items()}}
    columns = [(placement, name, ("pinned:" if placement == "pinned" else "") + value)
               for placement in (("unpinned", "pinned") if pin else ("unpinned",))
               for name, value in spawned.items()]
    out = subprocess.run([str(driver), "--multi", str(rounds), str(seed), str(settle_us), str(sink_pid), "/bin/true",
                          *(c[2] for c in columns), "--", "OGRT_ACTIVE=1", f"OGRT_SERVER=127.0.0.1:{port}"],
                         env=env, capture_output=True, text=True, check=True).stdout
    times = list(zip(*(map(int, line.split()) for line in out.splitlines() if line)))
    medians: dict[str, dict[str, float]] = {}
    for (placement, name, _), col in zip(columns, times):
        medians.setdefault(placement, {})[name] = statistics.median(col) / 1000
    return {placement: {name: m[name] - (m["plain"] if name == "empty library" else m["empty library"])
                        if name != "plain" else m[name] for name in m}
            for placement, m in medians.items()}


def print_transports(title: str, above: dict[str, float], judged: set[str]) -> bool:
    """One run's lines; only the builds in `judged` count for the verdict."""
    print(title, flush=True)
    ok = True
    for name, value in above.items():
        if name == "plain":
            line = f"  {name:<14} median {value:7.1f} us"
        elif name == "empty library":
            line = f"  {name:<14} {value:+6.1f} us above plain (reference)"
        else:
            met = value <= TRANSPORT_TARGETS[name]
            line = f"  {name:<14} {value:+6.1f} us above the empty library   target <= {TRANSPORT_TARGETS[name]:.0f}"
            if name in judged:
                ok &= met
                line += f"  {'OK' if met else 'MISSED'}"
            else:
                line += f"  ({'within' if met else 'over'}; not judged in this run)"
        print(line, flush=True)
    return ok


def measure(driver: Path, lib: Path, port: int, pairs: int) -> tuple[list[int], list[int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGRT_") and k != "LD_PRELOAD"}
    out = subprocess.run([str(driver), str(pairs), "/bin/true", str(lib), "OGRT_ACTIVE=1",
                          f"OGRT_SERVER=127.0.0.1:{port}"], env=env, capture_output=True, text=True,
                         check=True).stdout
    plain, pre = [], []
    for line in out.split("\n"):
        if line:
            a, b = line.split()
            plain.append(int(a))
            pre.append(int(b))
    return plain, pre


def report(name: str, plain: list[int], pre: list[int], target: float | None, total: bool = False) -> bool:
    mp, ml = statistics.median(plain) / 1000, statistics.median(pre) / 1000
    tp, tl = sum(plain) / 1e6, sum(pre) / 1e6
    ratio = tl / tp if total else ml / mp
    kind = "total" if total else "median"
    ok = target is None or ratio <= target
    verdict = "(reference)" if target is None else f"target <= {target:.2f}  {'OK' if ok else 'MISSED'}"
    print(f"{name:<14} {len(plain):>5} pairs  median {mp:7.1f} us -> {ml:7.1f} us ({ml - mp:+6.1f})  "
          f"total {tp:8.1f} ms -> {tl:8.1f} ms   {kind} ratio {ratio:5.3f}  {verdict}", flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--unresponsive-pairs", type=int, default=1000)
    ap.add_argument("--transports-only", action="store_true", help="only the interleaved transports run")
    ap.add_argument("--seed", type=int, default=1, help="of the transports run's shuffled order")
    ap.add_argument("--settle-us", type=int, default=1000, help="untimed pause before each spawn (transports)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ogrt-spawnbench-"))
    ok = True
    daemon = None
    try:
        tcp_lib, udp_lib, relay_lib, driver = build(tmp)
        sink, sport = start_sink(driver)
        relay, relay_how = start_unix_sink(driver, tmp / "relay.sock")
        libs = {"tcp": tcp_lib, "udp": udp_lib, "relay": relay_lib}
        cpus = sorted(os.sched_getaffinity(0))
        try:
            print(f"transports: {args.pairs} rounds of /bin/true, plain and under each library, unpinned and "
                  f"pinned, order shuffled "
                  f"each round (seed {args.seed}), {args.settle_us} us untimed before each spawn; receivers: "
                  f"tcp/udp the C sink (accepts, reads, discards), relay a C process reading the Unix datagram "
                  f"socket as `ogrt relay` does ({relay_how}); load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            pin = len(cpus) > 1
            above = transports(driver, tmp / "empty.so", libs, sport, args.pairs, args.seed, args.settle_us,
                               sink.pid, pin)
            ok &= print_transports("unpinned (the receivers share both cores with the spawns):", above["unpinned"],
                                   {"relay"} if pin else set(libs))
            if pin:
                ok &= print_transports(f"pinned, in the same run (spawner and children on CPU {cpus[0]}, the tcp/udp "
                                       f"sink on CPU {cpus[1]}: a remote collector; the relay's reader unpinned):",
                                       above["pinned"], {"tcp", "udp"})
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        finally:
            for proc in (sink, relay):
                proc.kill()
                proc.wait()
        if args.transports_only:
            return 0 if ok else 1
        daemon, port = start_daemon(tmp)
        report("empty library", *measure(driver, tmp / "empty.so", port, args.pairs), None)
        ok &= report("tcp daemon", *measure(driver, tcp_lib, port, args.pairs), 1.08)
        ok &= report("udp daemon", *measure(driver, udp_lib, port, args.pairs), 1.08)
        daemon.terminate()
        daemon.wait(30)
        daemon = None
        sink, sport = start_sink(driver)
        try:
            ok &= report("tcp sink", *measure(driver, tcp_lib, sport, args.pairs), 1.08)
            ok &= report("udp sink", *measure(driver, udp_lib, sport, args.pairs), 1.08)
        finally:
            sink.kill()
            sink.wait()
        ok &= report("port closed", *measure(driver, tcp_lib, closed_port(), args.pairs), 1.08)

        with unresponsive_listener() as uport:
            marker = backoff_marker(f"127.0.0.1:{uport}")
            marker.unlink(missing_ok=True)
            try:
                ok &= report("unresponsive", *measure(driver, tcp_lib, uport, args.unresponsive_pairs),
                             1.15, total=True)
            finally:
                marker.unlink(missing_ok=True)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    print("all targets met" if ok else "some targets missed (the machine is shared and noisy: rerun when idle)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
