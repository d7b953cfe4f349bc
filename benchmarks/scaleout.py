#!/usr/bin/env python3
"""Scale-out benchmark: library frames → N collectors → JetStream (3 servers) → M sinks → PostgreSQL.

    .venv/bin/python benchmarks/scaleout.py                    # 1/2 collectors x 1/2 sinks
    .venv/bin/python benchmarks/scaleout.py --records 100000 --runs 2x2

Frames are captured from the real preload library as in benchmarks/ingest.py (its helpers:
capture_frames, python_pair, template, build_stream); every start+end pair gets its own uuid.
A three-server nats-server cluster (tests/fixtures/nats.py) runs on loopback with JetStream in
a temp dir; PostgreSQL is tests/fixtures/postgres.py's real server. Each run uses a fresh
stream (3 replicas, created before the clock starts) and a fresh database; collectors are
`ogrt server` processes (1 worker, a `nats` output), sinks are `ogrt sink` processes (one
durable consumer, a `postgresql` output). Generator processes send all frames over TCP at full
speed (split over the collectors); the rate is records / (first byte sent → every record acked
by the sinks, i.e. persisted in PostgreSQL).

CPU per record of each stage = (user+system CPU seconds its processes used during the run, from
/proc/PID/stat) / records, in microseconds: collectors, the three NATS servers together, sinks,
PostgreSQL (postmaster and backends). Everything shares this machine's cores with the generator,
so the rates are what one small box does; the per-record costs are what the extrapolation uses:
a stage needs (target rate × CPU per record) cores. Collectors and sinks are Python processes
holding one core at most each; NATS servers and PostgreSQL use several cores each.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.ingest import (Daemon, build_stream, capture_frames, python_pair, synthetic_pair,  # noqa: E402
                               tcp_sender, template)
from ogrt.metrics import parse  # noqa: E402
from tests.fixtures.nats import NatsCluster, find_nats_server  # noqa: E402
from tests.fixtures.postgres import PostgresServer, find_pg_bin  # noqa: E402
from tests.fixtures.server import free_port, to_toml  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 500_000


# -- CPU accounting -------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int) -> list[int]:
    """`pid` and its descendants (PostgreSQL's backends, `ogrt server`'s workers)."""
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            by_parent.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(by_parent.get(p, []))
    return out


class Stage:
    """CPU seconds used by a set of process trees between start() and stop()."""

    def __init__(self, name: str, roots: list[int]) -> None:
        self.name, self.roots = name, roots
        self.before: dict[int, float] = {}
        self.used = 0.0

    def _now(self) -> dict[int, float]:
        return {p: cpu_seconds(p) for r in self.roots for p in children(r)}

    def start(self) -> None:
        self.before = self._now()

    def stop(self) -> None:
        self.used = sum(cpu - self.before.get(p, 0.0) for p, cpu in self._now().items())


# -- the processes ------------------------------------------------------------------------------
class Sink:
    def __init__(self, workdir: Path, urls: list[str], stream: str, dsn: str, batch: int,
                 profile: Path | None = None) -> None:
        self.mport = free_port(udp_too=False)
        conf = workdir / "sink.conf"
        conf.write_text(to_toml({
            "sink": {"state_dir": str(workdir / "state"), "log_level": "warning"},
            "source": {"type": "nats", "servers": urls, "stream": stream, "durable": "bench", "batch": batch},
            "metrics": {"address": f"127.0.0.1:{self.mport}"},
            "outputs": {"db": {"type": "postgresql", "dsn": dsn}}}))
        self.err = open(workdir / "sink.stderr", "w+")
        prof = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
        self.proc = subprocess.Popen([sys.executable, *prof, "-m", "ogrt", "sink", "--config", str(conf)],
                                     stdout=self.err, stderr=self.err, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            self.err.seek(0)
            if "ogrt sink ready" in self.err.read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.err.seek(0)
        raise RuntimeError("sink did not start:\n" + self.err.read())

    def acked(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=30) as r:
            return parse(r.read().decode()).get("ogrt_sink_acked_total", 0.0)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def create_stream(urls: list[str], stream: str) -> None:
    """The stream exists (3 replicas) before the clock starts, as in a running site."""
    from ogrt.outputs.nats import NatsOutput

    out = NatsOutput("bench", NatsOutput.validate("bench", {
        "type": "nats", "servers": urls, "stream": stream, "subject": f"bench.{stream}"}))
    out.open()
    out.close()


def postgres_pids(pg: PostgresServer) -> list[int]:
    with open(pg.data / "postmaster.pid") as f:
        return [int(f.readline())]


# -- one run ------------------------------------------------------------------------------------
def run(n_coll: int, n_sink: int, records: int, conns: int, templates: list[tuple[bytes, bytes]],
        cluster: NatsCluster, pg: PostgresServer, batch: int, profile: Path | None) -> dict[str, float]:
    stream = f"BENCH_C{n_coll}_S{n_sink}"
    dsn = pg.new_database("scaleout")
    create_stream(cluster.urls, stream)
    work = Path(tempfile.mkdtemp(prefix=f"ogrt-scaleout-{stream}-"))
    output = to_toml({"outputs": {"js": {"type": "nats", "servers": cluster.urls, "stream": stream,
                                          "subject": f"bench.{stream}", "replicas": 3}}})
    collectors = []
    sinks = []
    try:
        for i in range(n_coll):
            (work / f"c{i}").mkdir()
            collectors.append(Daemon(work / f"c{i}", output, workers=1))
        for i in range(n_sink):
            (work / f"s{i}").mkdir()
            prof = profile / f"sink-{stream}-{i}.prof" if profile is not None else None
            sinks.append(Sink(work / f"s{i}", cluster.urls, stream, dsn, batch, prof))
        per_conn = records // 2 // (conns * n_coll)
        total = per_conn * 2 * conns * n_coll
        streams = [(c.port, build_stream(templates, per_conn, k)) for c in collectors for k in range(conns)]
        ready = mp.Barrier(len(streams) + 1)
        go = mp.Event()
        procs = [mp.Process(target=tcp_sender, args=(port, data, ready, go)) for port, data in streams]
        for p in procs:
            p.start()
        del streams
        stages = [Stage("collectors", [c.proc.pid for c in collectors]),
                  Stage("NATS (3 servers)", [p.pid for p in cluster.procs if p is not None]),
                  Stage("sinks", [s.proc.pid for s in sinks]),
                  Stage("PostgreSQL", postgres_pids(pg))]
        ready.wait()
        for s in stages:
            s.start()
        t0 = time.perf_counter()
        go.set()
        deadline = t0 + 900
        done = 0.0
        while time.perf_counter() < deadline:
            done = sum(s.acked() for s in sinks)
            if done >= total:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        for s in stages:
            s.stop()
        for p in procs:
            p.join(60)
        result = {"records": done, "seconds": elapsed, "rate": done / elapsed}
        for s in stages:
            result[s.name] = s.used / max(done, 1) * 1e6
        if done < total:
            print(f"  !! only {int(done):,} of {total:,} records acked within the time limit")
        return result
    finally:
        for s in sinks:
            s.stop()
        for c in collectors:
            c.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=40_000, help="records per run (start+end pairs x 2)")
    ap.add_argument("--runs", default="1x1,1x2,2x1,2x2", help="COLLECTORSxSINKS, comma-separated")
    ap.add_argument("--tcp-connections", type=int, default=2, help="sender connections per collector")
    ap.add_argument("--batch", type=int, default=500, help="sink [source] batch")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run the sinks under cProfile, writing DIR/sink-STREAM-N.prof (pstats)")
    args = ap.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    nats_bin, pg_bin = find_nats_server(), find_pg_bin()
    if nats_bin is None or pg_bin is None:
        print("needs nats-server and the PostgreSQL server binaries (`make test` installs both)")
        return 1
    print("capturing frames from the preload library ...")
    frames = capture_frames()
    pair = (python_pair(frames) if frames else None) or synthetic_pair()
    templates = [template(12, pair[0]), template(13, pair[1])]
    print(f"  start frame {len(pair[0]) + 8} bytes, end frame {len(pair[1]) + 8} bytes")

    cluster = NatsCluster(nats_bin)
    pg = PostgresServer(pg_bin, fsync=True)
    results: list[tuple[str, dict[str, float]]] = []
    try:
        cluster.start_all()
        pg.initdb()
        pg.start()
        for spec in args.runs.split(","):
            c, s = (int(x) for x in spec.lower().split("x"))
            print(f"run: {c} collector(s) x {s} sink(s), {args.records:,} records ...", flush=True)
            r = run(c, s, args.records, args.tcp_connections, templates, cluster, pg, args.batch, args.profile)
            print(f"  {int(r['records']):,} records in {r['seconds']:.2f} s = {r['rate']:,.0f} records/s")
            results.append((f"{c} coll x {s} sink", r))
    finally:
        cluster.destroy()
        pg.destroy()
    report(results)
    return 0


STAGES = ["collectors", "NATS (3 servers)", "sinks", "PostgreSQL"]


def report(results: list[tuple[str, dict[str, float]]]) -> None:
    print(f"\nend to end on this machine ({os.cpu_count()} cores shared by every stage and the "
          "generator); CPU µs per record of each stage:")
    head = f"  {'run':18s} {'records/s':>10s}" + "".join(f" {s:>17s}" for s in STAGES)
    print(head)
    for name, r in results:
        print(f"  {name:18s} {r['rate']:>10,.0f}" + "".join(f" {r[s]:>17,.1f}" for s in STAGES))
    rates = {name: r["rate"] for name, r in results}
    for more, base, what in (("1 coll x 2 sink", "1 coll x 1 sink", "a second sink"),
                             ("2 coll x 1 sink", "1 coll x 1 sink", "a second collector")):
        if more in rates and base in rates:
            print(f"  {what}: records/s x {rates[more] / rates[base]:.2f}")
    # the per-record costs of the run with the most processes (all stages busy, least idle polling)
    name, best = results[-1]
    costs = {s: best[s] for s in STAGES}
    limit = max(("collectors", "sinks"), key=lambda s: costs[s])
    print(f"\nper-record costs from '{name}': " + ", ".join(f"{s} {costs[s]:.1f} µs" for s in STAGES))
    print(f"limiting stage per process: {limit} ({costs[limit]:.1f} µs/record → at most "
          f"{1e6 / costs[limit]:,.0f} records/s per {limit[:-1]} process on one core)")
    total = sum(costs.values())
    print(f"all stages together: {total:.1f} µs CPU per record → at most "
          f"{(os.cpu_count() or 1) * 1e6 / total:,.0f} records/s on this machine's {os.cpu_count()} cores "
          "(every stage and the generator share them: end to end, the machine is the limit here)")
    print(f"\nto reach {TARGET:,} records/s (cores = rate x CPU per record, processes at 70% of a core):")
    for s in STAGES:
        cores = TARGET * costs[s] / 1e6
        if s in ("collectors", "sinks"):
            print(f"  {s:18s} {cores:6.1f} cores → {math.ceil(cores / 0.7)} processes "
                  f"(e.g. on {math.ceil(cores / 0.7 / 8)} hosts of 8 cores)")
        elif s.startswith("NATS"):
            print(f"  {s:18s} {cores:6.1f} cores for 3 replicas → {cores / 3:.1f} cores per server with "
                  "one stream; one stream has one leader, so split the subjects over several streams "
                  "(e.g. by collector) to spread leaders over 3 or 5 servers")
        else:
            print(f"  {s:18s} {cores:6.1f} cores (one server, or one per stream/site partition)")


if __name__ == "__main__":
    sys.exit(main())
