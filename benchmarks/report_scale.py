#!/usr/bin/env python3
"""How fast `ogrt report` answers over 1,000,000 processes (SQLite, the embedded default).

Bulk-inserts realistic rows straight into the OGRT SQLite schema (ogrt/sql/sqlite.sql) with
executemany — this benchmark is about report speed, not ingest — then runs every report
through the same code as `ogrt report` and prints the seconds each one took.

Shape of the data (seeded, so every run builds the same database):
  2,000 executables (Zipf-like popularity), 3,000 libraries (libc & co. in every process,
  ~8 per process, MKL in ~5%), 300 modules (~3 per process), 500 users, 200 hosts,
  20,000 jobs over 30 days, 0.2% of processes stamped, 1 in 50 processes dlopen()s a library.
  Libraries and modules are stored as sets (libsets, modsets), as the SQL outputs write them.

Target (issue 5): each report over 1,000,000 processes returns in seconds (here: < 10 s).

    .venv/bin/python benchmarks/report_scale.py [--processes N] [--backend sqlite|postgresql|both]
        [--db PATH] [--keep] [--dsn CONNINFO]

The PostgreSQL run (--backend postgresql) loads the same rows with COPY into a throwaway
server started like the tests' (or into --dsn).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ogrt.outputs.sqlrecords import set_digest  # noqa: E402
from ogrt.report import jobtree, queries  # noqa: E402
from ogrt.report.db import ReportDB, open_postgresql, open_sqlite  # noqa: E402
from ogrt.report.timespec import parse_time  # noqa: E402
from ogrt.sql import aggregates  # noqa: E402
from ogrt.sql.schema import SCHEMA_VERSION  # noqa: E402

TARGET_SECONDS = 10.0
END = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"


PROCESS_COLUMNS = ("id", "uuid", "host", "peer", "job_id", "pid", "ppid", "uid", "gid", "username",
                   "executable_id", "args", "cwd", "env", "rank", "start_time", "end_time", "exit_status",
                   "duration", "utime", "stime", "maxrss_kb", "minflt", "majflt", "inblock", "oublock",
                   "nvcsw", "nivcsw", "libset_id", "late_libset_id", "modset_id")
N_JOBS = 20000


def tables(n: int, seed: int = 5) -> list[tuple[str, tuple[str, ...], object]]:
    """(table, columns, row iterator) in load order: the same rows for every backend."""
    rng = random.Random(seed)
    n_exe, n_lib, n_mod, n_user, n_host, n_job = 2000, 3000, 300, 500, 200, N_JOBS
    exes = [(i + 1, f"/apps/{['gcc', 'python', 'lammps', 'gromacs', 'vasp', 'app'][i % 6]}/{i // 6}/bin/prog{i}",
             "") for i in range(n_exe)]
    stamped_exe = n_exe + 1
    exes.append((stamped_exe, "/home/u7/bin/stamped_solver", "11111111-2222-4333-8444-555555555555"))
    libs = [(1, "/lib/x86_64-linux-gnu/libc.so.6", ""), (2, "/lib/x86_64-linux-gnu/libm.so.6", ""),
            (3, "/lib/x86_64-linux-gnu/libpthread.so.0", ""), (4, "/opt/intel/mkl/lib/libmkl_core.so.2", ""),
            (5, "/opt/intel/mkl/lib/libmkl_intel_thread.so.2", "")]
    libs += [(i, f"/apps/lib{i % 40}/{i}/libdep{i}.so", "") for i in range(6, n_lib + 1)]
    mods = [(i + 1, f"mod{i % 60}/{i // 60}.0") for i in range(n_mod)]

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
                   1000, 0, 0, 0, 10, 5) + process_sets(i + 1)

    # libraries and modules are content-addressed sets (schema version 2), as the SQL
    # outputs write them: processes of one program share one set
    libsets: dict[tuple[int, ...], int] = {}
    modsets: dict[tuple[int, ...], int] = {}

    def set_id(sets: dict[tuple[int, ...], int], members: set[int]) -> int:
        key = tuple(sorted(members))
        if key not in sets:
            sets[key] = len(sets) + 1
        return sets[key]

    def process_sets(i: int) -> tuple[int, int | None, int]:
        chosen = {1, 2, 3}
        if i % 20 == 0:
            chosen |= {4, 5}
        k = exe_choice[i - 1]
        for d in range(5):  # the executable's own dependencies
            chosen.add(6 + (k * 7 + d * 13) % (n_lib - 5))
        late = 6 + (i * 31) % (n_lib - 5) if i % 50 == 0 else None
        late_id = set_id(libsets, {late}) if late is not None and late not in chosen else None
        mods = {1 + (i // 40) % n_mod, 1 + (i // 40 * 7) % n_mod, 1 + (i // 40 * 13) % n_mod}
        return set_id(libsets, chosen), late_id, set_id(modsets, mods)

    def set_rows(sets: dict[tuple[int, ...], int]):
        for members, ident in sets.items():
            yield (ident, set_digest(members))

    def member_rows(sets: dict[tuple[int, ...], int]):
        for members, ident in sets.items():
            for m in members:
                yield (ident, m)

    return [
        ("executables", ("id", "path", "signature"), iter(exes)),
        ("libraries", ("id", "path", "signature"), iter(libs)),
        ("modules", ("id", "name"), iter(mods)),
        ("processes", PROCESS_COLUMNS, process_rows()),
        # after processes: the sets are collected while its rows are generated
        ("libsets", ("id", "digest"), set_rows(libsets)),
        ("libset_members", ("libset_id", "library_id"), member_rows(libsets)),
        ("modsets", ("id", "digest"), set_rows(modsets)),
        ("modset_members", ("modset_id", "module_id"), member_rows(modsets)),
    ]


PICKS = {"user": "user0", "host": "node0001", "job": f"{1000000 + N_JOBS // 2}"}


def build_sqlite(path: str, n: int) -> None:
    conn = sqlite3.connect(path)
    conn.executescript((REPO / "ogrt/sql/sqlite.sql").read_text())
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})")  # as the outputs do
    for table, columns, rows in tables(n):
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         rows)
    conn.commit()
    for stmt in aggregates.migrate_statements("sqlite"):  # as a database migrated from version 3
        conn.execute(stmt)
    conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def build_postgresql(dsn: str, n: int) -> None:
    import psycopg

    schema = (REPO / "ogrt/sql/postgresql.sql").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema)
        conn.execute(f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})")  # as the outputs do
        # load without the secondary indices, then build them (the schema is idempotent)
        for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                                    "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'").fetchall():
            conn.execute(f'DROP INDEX "{name}"')
        for table, columns, rows in tables(n):
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            if columns[0] == "id":  # rows written later (a daemon) take ids after these
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                             f"(SELECT COALESCE(max(id), 1) FROM {table}))")
        conn.execute(schema)
        for stmt in aggregates.migrate_statements("postgresql"):  # as a database migrated from version 3
            conn.execute(stmt)
        conn.execute("ANALYZE")


def cases() -> list[tuple[str, Callable[[ReportDB], object]]]:
    week = parse_time("7d", now=END)
    F = queries.Filters
    p = PICKS
    return [
        ("executables", lambda db: queries.executables(db, F(), 20)),
        ("executables --since 7d", lambda db: queries.executables(db, F(since=week), 20)),
        (f"executables --user {p['user']}", lambda db: queries.executables(db, F(user=p["user"]), 20)),
        (f"executables --host {p['host']}", lambda db: queries.executables(db, F(host=p["host"]), 20)),
        ("executables --path lammps", lambda db: queries.executables(db, F(), 20, "lammps")),
        ("libraries", lambda db: queries.libraries(db, F(), 20)),
        ("libraries --since 7d", lambda db: queries.libraries(db, F(since=week), 20)),
        ("libraries --path libmkl", lambda db: queries.library_users(db, F(), 20, "libmkl", "executable")),
        ("libraries --path libmkl --by user", lambda db: queries.library_users(db, F(), 20, "libmkl", "user")),
        ("modules", lambda db: queries.modules(db, F(), 20)),
        ("users", lambda db: queries.users(db, F(), 20)),
        ("signatures", lambda db: queries.signatures(db, F(), 20)),
        ("jobs --since 7d", lambda db: queries.jobs(db, F(since=week), 20)),
        (f"job {p['job']}", lambda db: jobtree.build_tree(queries.job_processes(db, p["job"], F()))),
    ]


def time_reports(db: ReportDB, label: str, n: int) -> float:
    worst = 0.0
    print(f"{label}: {'report':45} {'seconds':>8}  rows")
    for name, fn in cases():
        t0 = time.perf_counter()
        result = fn(db)
        dt = time.perf_counter() - t0
        worst = max(worst, dt)
        rows = len(result.rows) if hasattr(result, "rows") else len(result)  # type: ignore[attr-defined]
        print(f"{label}: {name:45} {dt:8.2f}  {rows}")
    verdict = "meets" if worst < TARGET_SECONDS else "MISSES"
    print(f"{label}: slowest report {worst:.2f} s over {n:,} processes; "
          f"target: each returns in seconds (< {TARGET_SECONDS:.0f} s): {verdict}")
    return worst


@contextmanager
def sqlite_database(opts: argparse.Namespace) -> Iterator[str]:
    """The path of the benchmark's SQLite database: --db (built when missing) or a temp file."""
    tmpdir = None if opts.db else tempfile.mkdtemp(prefix="ogrt-report-bench-")
    path = opts.db or os.path.join(str(tmpdir), "bench.sqlite")
    try:
        if not os.path.exists(path):
            t0 = time.perf_counter()
            build_sqlite(path, opts.processes)
            print(f"sqlite: built {opts.processes:,} processes in {time.perf_counter() - t0:.1f} s "
                  f"({os.path.getsize(path) / 1e6:.0f} MB): {path}")
        else:
            print(f"sqlite: reusing {path}")
        yield path
    finally:
        if tmpdir is not None and not opts.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)


def throwaway_postgres() -> tuple[Any, str | None]:
    """(server, dsn of a new database) of a PostgreSQL started as the tests start it
    (`server.destroy()` when done); (None, None) when its binaries are missing."""
    from tests.fixtures.postgres import PostgresServer, find_pg_bin

    pg_bin = find_pg_bin()
    if pg_bin is None:
        print("postgresql: no initdb/pg_ctl found (install Debian's postgresql) or pass --dsn")
        return None, None
    server = PostgresServer(pg_bin)
    server.initdb()
    server.start()
    return server, server.new_database("bench")


@contextmanager
def postgresql_database(opts: argparse.Namespace) -> Iterator[str | None]:
    """A filled PostgreSQL database: --dsn, or a throwaway server started as the tests start
    one (None when PostgreSQL is not installed)."""
    server = None
    dsn = getattr(opts, "dsn", None)
    if not dsn:
        server, dsn = throwaway_postgres()
        if dsn is None:
            yield None
            return
    try:
        t0 = time.perf_counter()
        build_postgresql(dsn, opts.processes)
        print(f"postgresql: built {opts.processes:,} processes in {time.perf_counter() - t0:.1f} s")
        yield dsn
    finally:
        if server is not None:
            server.destroy()


def add_options(ap: argparse.ArgumentParser, backend: str = "sqlite") -> None:
    """The database options of this benchmark and of benchmarks/web.py."""
    ap.add_argument("--processes", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default=backend)
    ap.add_argument("--db", help="SQLite file to build or reuse (default: a temp file)")
    ap.add_argument("--keep", action="store_true", help="keep the temp SQLite database")
    ap.add_argument("--dsn", help="PostgreSQL database to fill (default: start a throwaway server)")


def run_sqlite(opts: argparse.Namespace) -> float:
    with sqlite_database(opts) as path, open_sqlite(path) as db:
        return time_reports(db, "sqlite", opts.processes)


def run_postgresql(opts: argparse.Namespace) -> float:
    with postgresql_database(opts) as dsn:
        if dsn is None:
            return 0.0
        with open_postgresql(dsn) as db:
            return time_reports(db, "postgresql", opts.processes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(ap)
    opts = ap.parse_args()
    worst = 0.0
    if opts.backend in ("sqlite", "both"):
        worst = max(worst, run_sqlite(opts))
    if opts.backend in ("postgresql", "both"):
        worst = max(worst, run_postgresql(opts))
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
