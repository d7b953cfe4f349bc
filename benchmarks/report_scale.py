#!/usr/bin/env python3
"""How fast `ogrt report` answers over 1,000,000 processes (SQLite, the embedded default).

Bulk-inserts realistic rows straight into the OGRT SQLite schema (ogrt/sql/sqlite.sql) with
executemany — this benchmark is about report speed, not ingest — then runs every report
through the same code as `ogrt report` and prints the seconds each one took.

Shape of the data (seeded, so every run builds the same database):
  2,000 executables (Zipf-like popularity), 3,000 libraries (libc & co. in every process,
  ~8 per process, MKL in ~5%), 300 modules (~3 per process), 500 users, 200 hosts,
  20,000 jobs over 30 days, 0.2% of processes stamped, 1 in 50 processes dlopen()s a library.

Target (issue 5): each report over 1,000,000 processes returns in seconds (here: < 10 s).

    .venv/bin/python benchmarks/report_scale.py [--processes N] [--db PATH] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ogrt.report import jobtree, queries  # noqa: E402
from ogrt.report.db import open_sqlite  # noqa: E402
from ogrt.report.timespec import parse_time  # noqa: E402

TARGET_SECONDS = 10.0
END = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"


def build(path: str, n: int, seed: int = 5) -> dict[str, str]:
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.executescript((REPO / "ogrt/sql/sqlite.sql").read_text())
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")

    n_exe, n_lib, n_mod, n_user, n_host, n_job = 2000, 3000, 300, 500, 200, 20000
    exes = [(i + 1, f"/apps/{['gcc', 'python', 'lammps', 'gromacs', 'vasp', 'app'][i % 6]}/{i // 6}/bin/prog{i}",
             "") for i in range(n_exe)]
    stamped_exe = n_exe + 1
    exes.append((stamped_exe, "/home/u7/bin/stamped_solver", "11111111-2222-4333-8444-555555555555"))
    libs = [(1, "/lib/x86_64-linux-gnu/libc.so.6", ""), (2, "/lib/x86_64-linux-gnu/libm.so.6", ""),
            (3, "/lib/x86_64-linux-gnu/libpthread.so.0", ""), (4, "/opt/intel/mkl/lib/libmkl_core.so.2", ""),
            (5, "/opt/intel/mkl/lib/libmkl_intel_thread.so.2", "")]
    libs += [(i, f"/apps/lib{i % 40}/{i}/libdep{i}.so", "") for i in range(6, n_lib + 1)]
    conn.executemany("INSERT INTO executables (id, path, signature) VALUES (?, ?, ?)", exes)
    conn.executemany("INSERT INTO libraries (id, path, signature) VALUES (?, ?, ?)", libs)
    conn.executemany("INSERT INTO modules (id, name) VALUES (?, ?)",
                     [(i + 1, f"mod{i % 60}/{i // 60}.0") for i in range(n_mod)])

    # Zipf-like choice: a few executables dominate, like on a real cluster
    exe_weights = [1.0 / (i + 1) for i in range(n_exe)]
    span = 30 * 86400
    job_start = sorted(rng.uniform(0, span) for _ in range(n_job))
    job_user = [rng.randrange(n_user) for _ in range(n_job)]
    job_host = [rng.randrange(n_host) for _ in range(n_job)]

    exe_choice = rng.choices(range(1, n_exe + 1), weights=exe_weights, k=n)

    def process_rows():
        base = END - timedelta(seconds=span)
        for i in range(n):
            j = (i * n_job) // n  # processes arrive job after job, in time order
            t = base + timedelta(seconds=job_start[j] + (i % 50) * 0.5)
            exe = stamped_exe if i % 500 == 7 else exe_choice[i]
            uid = 10000 + job_user[j]
            duration = rng.expovariate(1 / 30.0)
            yield (i + 1, f"{i:08x}-0000-4000-8000-{i:012x}", f"node{job_host[j]:04d}", "10.0.0.1",
                   f"{1000000 + j}", 1000 + i % 50, 999 if i % 50 == 0 else 1000 + (i % 50) // 2, uid, uid,
                   f"user{job_user[j]}", exe, json.dumps([f"prog{exe}", "-i", "input.dat"]), "/scratch",
                   "{}", None, rfc3339(t), rfc3339(t + timedelta(seconds=duration)),
                   1 if i % 97 == 0 else 0, duration, duration * 0.9, duration * 0.05, 20480,
                   1000, 0, 0, 0, 10, 5)

    conn.executemany(
        "INSERT INTO processes (id, uuid, host, peer, job_id, pid, ppid, uid, gid, username, executable_id,"
        " args, cwd, env, rank, start_time, end_time, exit_status, duration, utime, stime, maxrss_kb,"
        " minflt, majflt, inblock, oublock, nvcsw, nivcsw)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", process_rows())

    def library_rows():
        for i in range(1, n + 1):
            chosen = {1, 2, 3}
            if i % 20 == 0:
                chosen |= {4, 5}
            k = exe_choice[i - 1]
            for d in range(5):  # the executable's own dependencies
                chosen.add(6 + (k * 7 + d * 13) % (n_lib - 5))
            late = 6 + (i * 31) % (n_lib - 5) if i % 50 == 0 else None
            for lib in sorted(chosen):
                yield (i, lib, 0)
            if late is not None and late not in chosen:
                yield (i, late, 1)

    conn.executemany("INSERT INTO process_libraries (process_id, library_id, late) VALUES (?, ?, ?)",
                     library_rows())
    conn.executemany("INSERT INTO process_modules (process_id, module_id) VALUES (?, ?)",
                     ((i, m) for i in range(1, n + 1)
                      for m in sorted({1 + (i // 40) % n_mod, 1 + (i // 40 * 7) % n_mod, 1 + (i // 40 * 13) % n_mod})))
    conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return {"user": "user0", "host": "node0001", "job": f"{1000000 + n_job // 2}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=1_000_000)
    ap.add_argument("--db", help="database file (default: a temp file)")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    opts = ap.parse_args()

    tmpdir = tempfile.mkdtemp(prefix="ogrt-report-bench-")
    path = opts.db or os.path.join(tmpdir, "bench.sqlite")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        picks = build(path, opts.processes)
        print(f"built {opts.processes:,} processes in {time.perf_counter() - t0:.1f} s "
              f"({os.path.getsize(path) / 1e6:.0f} MB): {path}")
    else:
        picks = {"user": "user0", "host": "node0001", "job": "1010000"}
        print(f"reusing {path}")

    week = parse_time("7d", now=END)
    F = queries.Filters
    cases = [
        ("executables", lambda db: queries.executables(db, F(), 20)),
        ("executables --since 7d", lambda db: queries.executables(db, F(since=week), 20)),
        (f"executables --user {picks['user']}", lambda db: queries.executables(db, F(user=picks["user"]), 20)),
        (f"executables --host {picks['host']}", lambda db: queries.executables(db, F(host=picks["host"]), 20)),
        ("libraries", lambda db: queries.libraries(db, F(), 20)),
        ("libraries --since 7d", lambda db: queries.libraries(db, F(since=week), 20)),
        ("libraries --path libmkl", lambda db: queries.library_users(db, F(), 20, "libmkl", "executable")),
        ("libraries --path libmkl --by user", lambda db: queries.library_users(db, F(), 20, "libmkl", "user")),
        ("modules", lambda db: queries.modules(db, F(), 20)),
        ("users", lambda db: queries.users(db, F(), 20)),
        ("signatures", lambda db: queries.signatures(db, F(), 20)),
        ("jobs --since 7d", lambda db: queries.jobs(db, F(since=week), 20)),
        (f"job {picks['job']}", lambda db: jobtree.build_tree(queries.job_processes(db, picks["job"], F()))),
    ]
    worst = 0.0
    print(f"{'report':45} {'seconds':>8}  rows")
    with open_sqlite(path) as db:
        for name, fn in cases:
            t0 = time.perf_counter()
            result = fn(db)
            dt = time.perf_counter() - t0
            worst = max(worst, dt)
            rows = len(result.rows) if hasattr(result, "rows") else len(result)
            print(f"{name:45} {dt:8.2f}  {rows}")
    verdict = "meets" if worst < TARGET_SECONDS else "MISSES"
    print(f"slowest report: {worst:.2f} s over {opts.processes:,} processes; "
          f"target: each returns in seconds (< {TARGET_SECONDS:.0f} s): {verdict}")
    if not opts.keep and not opts.db:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass
        os.rmdir(tmpdir)
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
