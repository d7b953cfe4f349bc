#!/usr/bin/env python3
"""Ingest benchmark for `ogrt server`: records/s per output, UDP loss at a set rate, peak RSS.

    .venv/bin/python benchmarks/ingest.py                     # jsonl, sqlite, postgresql; UDP into jsonl
    .venv/bin/python benchmarks/ingest.py --outputs null --records 100000 --workers 1

Frames are captured from the real preload library (`python3 -c "import ssl, sqlite3, ctypes"`
run under a libogrt.so built with ALLOW_SERVER_ENV=yes, pointed at a capture listener); the
interpreter's ProcessStart and ProcessEnd are the templates. If the library cannot be
built, frames shaped like them are made with ogrt_pb2 (60 libraries, long paths). Every
replayed start+end pair gets its own uuid.

TCP: generator processes send all records over --tcp-connections connections at full speed;
the rate is records / (time from the first byte sent to the last record counted as persisted
by the daemon's /metrics). UDP: one sender offers --udp-rate records/s for --udp-seconds;
persisted / sent is reported. Peak RSS is the sum of VmHWM of the daemon and its workers.
The generator shares the machine's cores with the daemon.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ogrt.metrics import parse  # noqa: E402
from ogrt.proto import ogrt_pb2  # noqa: E402

MARK = b"\xa5" * 16


# -- frames ---------------------------------------------------------------------------------
def capture_frames() -> list[tuple[int, bytes]] | None:
    """Run the Python interpreter under the real preload library; return what it sent."""
    build = Path(tempfile.mkdtemp(prefix="ogrt-bench-lib-"))
    r = subprocess.run(["make", "-s", "-C", str(REPO / "preload"), f"BUILDDIR={build}", "ALLOW_SERVER_ENV=yes"],
                       capture_output=True, text=True)
    lib = build / "libogrt.so"
    if r.returncode != 0 or not lib.exists():
        print(f"  (preload library did not build: {r.stderr.strip()[-200:]}; using synthetic frames)")
        return None
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(3)
    frames: list[tuple[int, bytes]] = []

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            data = b""
            with c:
                while chunk := c.recv(65536):
                    data += chunk
            off = 0
            while off + 8 <= len(data):
                t, n = struct.unpack_from(">II", data, off)
                frames.append((t, data[off + 8:off + 8 + n]))
                off += 8 + n

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    env = dict(os.environ, LD_PRELOAD=str(lib), OGRT_ACTIVE="1", OGRT_SERVER=f"127.0.0.1:{srv.getsockname()[1]}")
    subprocess.run(["python3", "-c", "import ssl, sqlite3, ctypes"], env=env, check=False)
    t.join(5)
    srv.close()
    shutil.rmtree(build, ignore_errors=True)
    return frames or None


def python_pair(frames: list[tuple[int, bytes]]) -> tuple[bytes, bytes] | None:
    """The interpreter's own start and end payloads (the start whose exe is python)."""
    starts = {}
    for t, p in frames:
        if t == 12:
            m = ogrt_pb2.ProcessStart()
            m.ParseFromString(p)
            if b"python" in os.path.basename(m.exe):
                starts[m.uuid] = p
    for t, p in frames:
        if t == 13:
            m = ogrt_pb2.ProcessEnd()
            m.ParseFromString(p)
            if m.uuid in starts:
                return starts[m.uuid], p
    return None


def synthetic_pair() -> tuple[bytes, bytes]:
    libs = [ogrt_pb2.SharedObject(path=b"/opt/software/easybuild/x86_64/Python/3.11.5-GCCcore-13.2.0/lib/"
                                  b"python3.11/lib-dynload/module_%03d.cpython-311-x86_64-linux-gnu.so" % i)
            for i in range(60)]
    now = int(time.time() * 1e6)
    s = ogrt_pb2.ProcessStart(uuid=MARK, time_us=now, exe=b"/usr/bin/python3.11", pid=1234, ppid=1, uid=1000,
                              gid=1000, user=b"alice", hostname=b"node0042", job_id=b"987654",
                              args=[b"python3", b"-c", b"import ssl, sqlite3, ctypes"], cwd=b"/home/alice",
                              modules=[b"GCCcore/13.2.0", b"Python/3.11.5"], libs=libs[:20])
    e = ogrt_pb2.ProcessEnd(uuid=MARK, time_us=now + 80_000, start_time_us=now, pid=1234, uid=1000,
                            hostname=b"node0042", job_id=b"987654", exit_status=0, utime_us=60000,
                            stime_us=20000, maxrss_kb=20000, libs=libs[20:])
    return s.SerializeToString(), e.SerializeToString()


def template(mtype: int, payload: bytes) -> tuple[bytes, bytes]:
    """(frame bytes before the uuid, after it) with the payload's uuid cut out."""
    cls = ogrt_pb2.ProcessStart if mtype == 12 else ogrt_pb2.ProcessEnd
    m = cls()
    m.ParseFromString(payload)
    m.uuid = MARK
    p = m.SerializeToString()
    i = p.index(MARK)
    return struct.pack(">II", mtype, len(p)) + p[:i], p[i + 16:]


def build_stream(templates: list[tuple[bytes, bytes]], pairs: int, seed: int) -> bytes:
    """`pairs` start+end frames, each pair with a fresh uuid."""
    (s_head, s_tail), (e_head, e_tail) = templates
    uuids = os.urandom(16 * pairs)
    parts = []
    for i in range(pairs):
        u = uuids[16 * i:16 * i + 16]
        parts += (s_head, u, s_tail, e_head, u, e_tail)
    return b"".join(parts)


# -- generators (separate processes) -----------------------------------------------------------
def tcp_sender(port: int, data: bytes, ready: mp.Barrier, go: mp.Event) -> None:  # type: ignore[type-arg]
    c = socket.create_connection(("127.0.0.1", port))
    ready.wait()
    go.wait()
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()


def udp_sender(port: int, templates: list[tuple[bytes, bytes]], rate: int, seconds: float,
               result: mp.Queue, sources: int = 1024) -> None:  # type: ignore[type-arg]
    (s_head, s_tail), (e_head, e_tail) = templates
    total = int(rate * seconds)
    pairs = total // 2
    uuids = os.urandom(16 * pairs)
    frames = []
    for i in range(pairs):
        u = uuids[16 * i:16 * i + 16]
        frames.append(s_head + u + s_tail)
        frames.append(e_head + u + e_tail)
    # The library opens a fresh UDP socket for every record, so every record arrives from
    # its own source port and the kernel (SO_REUSEPORT hashes source address and port)
    # spreads records, not nodes, over the workers. The sender mimics that by sending each
    # record from the next socket of a large pool (a socket per record would cost the
    # shared machine a socket() and close() per record). With few sources the split is
    # uneven (e.g. 10:6 of 16) and one worker gets more than 1/N of the load.
    socks = []
    for _ in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        socks.append(s)
    nsocks = len(socks)
    dest = ("127.0.0.1", port)
    tick = 0.002
    per_tick = max(1, int(rate * tick))
    start = time.perf_counter()
    sent = 0
    errors = 0
    for k in range(0, len(frames), per_tick):
        target = start + (k / rate)
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for i, f in enumerate(frames[k:k + per_tick], k):
            try:
                socks[i % nsocks].sendto(f, dest)
                sent += 1
            except OSError:
                errors += 1
    elapsed = time.perf_counter() - start
    result.put((sent, errors, elapsed))


# -- the daemon --------------------------------------------------------------------------------
class Daemon:
    def __init__(self, workdir: Path, output_toml: str, workers: int) -> None:
        self.port = _free_port(udp=True)
        self.mport = _free_port()
        cfg = workdir / "ogrt.conf"
        cfg.write_text(f"""
[server]
address = "127.0.0.1"
port = {self.port}
workers = {workers}
state_dir = "{workdir / 'state'}"
log_level = "warning"
[metrics]
address = "127.0.0.1:{self.mport}"
{output_toml}
""")
        self.err = open(workdir / "server.stderr", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "ogrt", "server", "--config", str(cfg)],
                                     stdout=self.err, stderr=self.err, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            self.err.seek(0)
            if "ogrt server ready" in self.err.read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.err.seek(0)
        raise RuntimeError("daemon did not start:\n" + self.err.read())

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=30) as r:
            return parse(r.read().decode())

    def persisted(self) -> float:
        m = self.metrics()
        return sum(v for k, v in m.items() if k.startswith("ogrt_output_persisted_total"))

    def peak_rss_mb(self) -> float:
        pids = [self.proc.pid]
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
        total = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def wait_persisted(self, want: float, timeout: float, settle: float = 0.0) -> tuple[float, float]:
        """(persisted, time it got there); with settle>0 stop once it stops growing for `settle` s."""
        deadline = time.perf_counter() + timeout
        last, last_change = -1.0, time.perf_counter()
        while True:
            n = self.persisted()
            now = time.perf_counter()
            if n != last:
                last, last_change = n, now
            if n >= want or now > deadline or (settle and now - last_change > settle):
                return n, last_change
            time.sleep(0.05)  # each scrape costs the daemon a little: not too often

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def _free_port(udp: bool = False) -> int:
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue


def output_toml(kind: str, workdir: Path, pg_dsn: str | None, batch: int) -> str:
    """The output under test, with its default options except batch_records when given."""
    extra = f"batch_records = {batch}\n" if batch else ""
    if kind == "jsonl":
        return f'[outputs.out]\ntype = "jsonl"\npath = "{workdir / "records.jsonl"}"\nfsync = "batch"\n{extra}'
    if kind == "sqlite":
        return f'[outputs.out]\ntype = "sqlite"\npath = "{workdir / "ogrt.sqlite"}"\n{extra}'
    if kind == "postgresql":
        return f'[outputs.out]\ntype = "postgresql"\ndsn = "{pg_dsn}"\n{extra}'
    if kind == "null":
        return f'[outputs.out]\ntype = "null"\n{extra}'
    raise SystemExit(f"unknown output {kind}")


def _spooled(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("ogrt_output_spooled_total"))


def run_tcp(d: Daemon, templates: list[tuple[bytes, bytes]], records: int, conns: int) -> float:
    pairs_each = records // 2 // conns
    streams = [build_stream(templates, pairs_each, k) for k in range(conns)]
    total = pairs_each * 2 * conns
    ready = mp.Barrier(conns + 1)
    go = mp.Event()
    procs = [mp.Process(target=tcp_sender, args=(d.port, s, ready, go)) for s in streams]
    for p in procs:
        p.start()
    del streams
    ready.wait()
    base = d.persisted()
    t0 = time.perf_counter()
    go.set()
    n, t_done = d.wait_persisted(base + total, timeout=600, settle=5.0)
    for p in procs:
        p.join(60)
    got = n - base
    lost = total - got
    rate = got / (t_done - t0)
    m = d.metrics()
    spooled = _spooled(m)
    print(f"  TCP: {int(got):,} of {total:,} records persisted in {t_done - t0:.2f} s "
          f"= {rate:,.0f} records/s, lost {int(lost)} (went through the spool: {int(spooled):,})")
    if lost:
        d.err.seek(0)
        print("  daemon log (tail):\n    " + "\n    ".join(d.err.read().splitlines()[-8:]))
    return rate


def run_udp(d: Daemon, templates: list[tuple[bytes, bytes]], rate: int, seconds: float,
            sources: int = 1024) -> float:
    base = d.persisted()
    spooled_before = _spooled(d.metrics())
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    p = mp.Process(target=udp_sender, args=(d.port, templates, rate, seconds, q, sources))
    p.start()
    sent, errors, elapsed = q.get(timeout=seconds * 10 + 60)
    p.join(30)
    n, _ = d.wait_persisted(base + sent, timeout=120, settle=2.0)
    got = n - base
    m = d.metrics()
    drops = m.get("ogrt_udp_kernel_drops_total", 0)
    spooled = _spooled(m) - spooled_before
    pct = 100.0 * got / sent if sent else 0.0
    print(f"  UDP: offered {sent / elapsed:,.0f} records/s for {elapsed:.1f} s; {int(got):,} of {sent:,} "
          f"persisted = {pct:.2f}% (kernel drops {int(drops)}, send errors {errors}, "
          f"went through the spool: {int(spooled):,})")
    return pct


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outputs", default="jsonl,sqlite,postgresql")
    ap.add_argument("--records", type=int, default=200_000, help="records per TCP run")
    ap.add_argument("--tcp-connections", type=int, default=4)
    ap.add_argument("--udp-rate", type=int, default=50_000)
    ap.add_argument("--udp-seconds", type=float, default=5.0)
    ap.add_argument("--udp-output", default="jsonl", help="output used for the UDP run ('' to skip)")
    ap.add_argument("--udp-sources", type=int, default=1024,
                    help="UDP source sockets, each record from the next one (the library sends each "
                         "record from a fresh socket); the kernel spreads sources over the workers")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-records", type=int, default=0, help="outputs' batch_records (0: their default)")
    args = ap.parse_args()

    print("capturing frames from the preload library ...")
    frames = capture_frames()
    pair = python_pair(frames) if frames else None
    if pair is None:
        print("  no interpreter start+end captured; using synthetic frames (60 libs, long paths)")
        pair = synthetic_pair()
    s, e = pair
    ms, me = ogrt_pb2.ProcessStart(), ogrt_pb2.ProcessEnd()
    ms.ParseFromString(s)
    me.ParseFromString(e)
    print(f"  start frame {len(s) + 8} bytes ({len(ms.libs)} libs, exe {ms.exe.decode(errors='replace')}), "
          f"end frame {len(e) + 8} bytes ({len(me.libs)} late libs)")
    templates = [template(12, s), template(13, e)]

    pg = None
    kinds = [k for k in args.outputs.split(",") if k]
    if "postgresql" in kinds or args.udp_output == "postgresql":
        sys.path.insert(0, str(REPO))
        from tests.fixtures.postgres import PostgresServer, find_pg_bin
        pg_bin = find_pg_bin()
        if pg_bin is None:
            print("PostgreSQL binaries not found: skipping the postgresql output")
            kinds = [k for k in kinds if k != "postgresql"]
        else:
            pg = PostgresServer(pg_bin)
            pg.initdb()
            pg.start()
    results: dict[str, float] = {}
    peak = 0.0
    try:
        runs = [(k, True, k == args.udp_output) for k in kinds]
        if args.udp_output and args.udp_output not in kinds:
            runs.append((args.udp_output, False, True))
        for kind, do_tcp, do_udp in runs:
            workdir = Path(tempfile.mkdtemp(prefix=f"ogrt-bench-{kind}-"))
            dsn = pg.new_database("bench") if (pg is not None and kind == "postgresql") else None
            print(f"output {kind} (workers = {args.workers}):")
            d = Daemon(workdir, output_toml(kind, workdir, dsn, args.batch_records), args.workers)
            try:
                if do_tcp:
                    results[f"tcp {kind} records/s"] = run_tcp(d, templates, args.records, args.tcp_connections)
                if do_udp:
                    results[f"udp {kind} % persisted"] = run_udp(d, templates, args.udp_rate, args.udp_seconds,
                                                                       args.udp_sources)
                rss = d.peak_rss_mb()
                peak = max(peak, rss)
                print(f"  peak RSS of the daemon (all processes): {rss:.0f} MB")
            finally:
                code = d.stop()
                if code != 0:
                    d.err.seek(0)
                    print(f"  daemon exit code {code}:\n{d.err.read()[-2000:]}")
                shutil.rmtree(workdir, ignore_errors=True)  # a 20 s UDP run leaves ~1 GB of records
    finally:
        if pg is not None:
            pg.destroy()
    print("\nsummary:")
    for k, v in results.items():
        print(f"  {k:32s} {v:>12,.1f}")
    print(f"  {'peak RSS MB':32s} {peak:>12,.1f}")
    print("  (targets: jsonl >= 50,000/s, sqlite >= 30,000/s, postgresql >= 20,000/s, UDP >= 99% at 50,000/s, "
          "RSS <= 200 MB; anchor: OGRT's Go server ~27,000/s over UDP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
