#!/usr/bin/env python3
"""Records/s of each output alone (no network ingest): the ceiling the daemon can reach.

Two shapes of realistic records (args, env, modules, rusage; ~40 executables, libraries
from a pool of ~400 like /usr/lib/x86_64-linux-gnu/libssl.so.3):
  python  like the issue's load generator (python3 importing ssl, sqlite3, ctypes):
          4 libraries at start, 24 late (dlopen) libraries at the end: 14 per record
  hpc     an MPI code: 60 libraries at start, 0-2 late ones at the end: 30 per record
A process's start libraries are a random window of the pool (~340 distinct sets, not
tied to its executable), so the SQL outputs' library sets are reused but not trivially.
Records go through the real OutputRunner (submit() in chunks of 100, as the daemon's
ingest does, batch_records = 1000, an in-memory queue large enough that nothing spills,
so this measures the output and not the overload path) into each output; the time runs
from the first submit to the end of stop() (everything persisted). A process's end record
comes 1,500 records after its start, so they land in different batches as in the daemon. PostgreSQL is a real server started in a
temp dir (tests/fixtures/postgres.py) with fsync on; json_tcp sends to a reader process.

Each line: records/s (wall time) and CPU µs per record spent by this process (the
output's own code: steadier than the rate on a busy machine; a PostgreSQL server's
CPU is not in it).

Targets (issue 3, whole daemon): jsonl >= 50,000/s, sqlite >= 30,000/s, postgresql >= 20,000/s.

    .venv/bin/python benchmarks/outputs.py [--records N] [--only jsonl,sqlite,...]
"""
from __future__ import annotations

import argparse
import gc
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ogrt.outputs import OUTPUT_TYPES  # noqa: E402
from ogrt.outputs.runner import OutputRunner  # noqa: E402


LAG = 1500


def make_records(n: int, shape: str = "hpc", seed: int = 1) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    libpool = [f"/usr/lib/x86_64-linux-gnu/lib{name}{k}.so.{k % 4}"
               for k in range(400) for name in ("",)]
    exes = [f"/opt/apps/code{k}/bin/solver{k}" for k in range(40)] + ["/usr/bin/python3.11"]
    out: list[dict[str, Any]] = []
    t0 = 1_795_000_000
    starts: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    for i in range(n // 2):
        u = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        exe = rnd.choice(exes)
        start_t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i)) + f".{i % 1000000:06d}Z"
        end_t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i + 5)) + f".{i % 1000000:06d}Z"
        base = rnd.randrange(0, 340)
        nstart, late = (60, i % 3) if shape == "hpc" else (4, 24)
        libs = [{"path": p, "signature": None} for p in libpool[base:base + nstart]]
        if i % 50 == 0:
            libs[0]["signature"] = "0d6f2a4c-1111-4222-8333-444455556666"
        common = {"id": u, "host": f"node{i % 200:03d}", "peer": f"10.0.{i % 200 // 250}.{i % 250}",
                  "job_id": str(100000 + i // 100), "pid": 1000 + i % 30000, "uid": 1000 + i % 500,
                  "user": f"user{i % 500}"}
        starts.append({"event": "start", **common, "time": start_t, "ppid": 1, "gid": 100,
                    "exe": exe, "args": [exe, "-i", f"input{i}.dat", "--threads=4"],
                    "cwd": f"/scratch/user{i % 500}/run{i}",
                    "env": {"OMP_NUM_THREADS": "4", "SLURM_JOB_ID": str(100000 + i // 100)},
                    "modules": ["gcc/12.2.0", "openmpi/4.1.5", f"code{i % 40}/1.0"],
                    "rank": i % 64, "libs": libs,
                    "signature": None})
        ends.append({"event": "end", **common, "time": end_t, "start_time": start_t,
                    "libs": [{"path": f"/opt/apps/plugins/p{(i + j) % 60}.so", "signature": None}
                             for j in range(late)],
                    "exit_status": 0, "duration": 5.0, "utime": 4.2, "stime": 0.3,
                    "maxrss_kb": 123456, "minflt": 1000, "majflt": 2, "inblock": 0,
                    "oublock": 8, "nvcsw": 10, "nivcsw": 3})
    # a process ends LAG records after it started, as in a daemon's stream (so a start and
    # its end are in different batches, and the end updates a row written before)
    for i in range(len(starts) + LAG):
        if i < len(starts):
            out.append(starts[i])
        if i >= LAG:
            out.append(ends[i - LAG])
    return out


def run(type_name: str, options: dict[str, Any], records: list[dict[str, Any]],
        tmp: Path) -> tuple[float, float]:
    """(records/s, CPU µs of this process per record): the CPU figure leaves out other
    processes (a database server, a busy machine's other work), so it compares two
    versions of an output's own code more steadily than the rate."""
    cls = OUTPUT_TYPES[type_name]
    opts = cls.validate(type_name, {"type": type_name, "batch_records": 1000,
                                    "queue_records": len(records) + 1, **options})
    out = cls(type_name, opts)
    r = OutputRunner(out, tmp / f"spool-{type_name}-{len(list(tmp.iterdir()))}", 1 << 30)
    r.start()
    # every run starts from the same garbage collector state: a full collection (~4 µs per
    # record here: it traverses the generated records) otherwise falls into whichever run
    # crosses the threshold, and pass 1 vs pass 2 compare the collector, not the output
    gc.collect()
    t, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(records), 100):
        r.submit(records[i:i + 100])
    r.stop(600)
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    s = r.stats()
    assert s["persisted"] == len(records) and s["dropped"] == 0, s
    return len(records) / dt, dcpu / len(records) * 1e6


def tcp_sink() -> tuple[subprocess.Popen[bytes], int]:
    code = ("import socket,sys\n"
            "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1)\n"
            "print(s.getsockname()[1], flush=True)\n"
            "while True:\n"
            "    c,_=s.accept()\n"
            "    while c.recv(1<<20): pass\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--shape", default="python,hpc", help="python, hpc or both (python,hpc)")
    ap.add_argument("--only", default="null,jsonl,jsonl-nofsync,sqlite,postgresql,json_tcp")
    args = ap.parse_args()
    only = args.only.split(",")
    for shape in args.shape.split(","):
        bench(shape, make_records(args.records, shape), only)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS {rss / 1024:.0f} MB (includes the generated records)")


def bench(shape: str, records: list[dict[str, Any]], only: list[str]) -> None:
    links = sum(len(r["libs"]) for r in records) / len(records)
    print(f"== shape {shape}: {len(records)} records (start+end pairs), {links:.0f} libs per record")
    tmp = Path(tempfile.mkdtemp(prefix="ogrt-bench-"))
    results: dict[str, tuple[float, float]] = {}
    try:
        if "null" in only:
            results["null"] = run("null", {}, records, tmp)
        if "jsonl" in only:
            results["jsonl (fsync per batch)"] = run("jsonl", {"path": str(tmp / "a.jsonl")}, records, tmp)
        if "jsonl-nofsync" in only:
            results["jsonl (fsync never)"] = run(
                "jsonl", {"path": str(tmp / "b.jsonl"), "fsync": "never"}, records, tmp)
        if "sqlite" in only:
            results["sqlite (new db)"] = run("sqlite", {"path": str(tmp / "a.db")}, records, tmp)
            results["sqlite (2nd pass, upserts)"] = run("sqlite", {"path": str(tmp / "a.db")}, records, tmp)
        if "postgresql" in only:
            from tests.fixtures.postgres import PostgresServer, find_pg_bin
            pg_bin = find_pg_bin()
            if pg_bin is None:
                print("postgresql: skipped, no PostgreSQL binaries")
            else:
                pg = PostgresServer(pg_bin, fsync=True)
                try:
                    pg.initdb()
                    pg.start()
                    dsn = pg.new_database("bench")
                    results["postgresql (new db)"] = run("postgresql", {"dsn": dsn}, records, tmp)
                    results["postgresql (2nd pass, upserts)"] = run("postgresql", {"dsn": dsn}, records, tmp)
                finally:
                    pg.destroy()
        if "json_tcp" in only:
            p, port = tcp_sink()
            try:
                results["json_tcp"] = run("json_tcp", {"host": "127.0.0.1", "port": port}, records, tmp)
            finally:
                p.kill()
                p.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    targets = {"jsonl": 50_000, "sqlite": 30_000, "postgresql": 20_000}
    for name, (rate, cpu_us) in results.items():
        tgt = next((v for k, v in targets.items() if name.startswith(k)), None)
        note = f"  target {tgt:,}/s: {'OK' if rate >= tgt else 'BELOW'} ({rate / tgt:.2f}x)" if tgt else ""
        print(f"{name:32s} {rate:12,.0f} records/s {cpu_us:7.1f} µs CPU/record{note}")


if __name__ == "__main__":
    main()
