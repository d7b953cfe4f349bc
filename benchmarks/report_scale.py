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

--census (issue 13): builds an index on disk (10,000 Spack prefixes, 2,000 Python
distributions, 8,000 Debian packages: 20,000 packages, ~200,000 paths) covering the
generated programs and libraries, a database of the same processes, then times `ogrt census
update` (first, and again over the unchanged index: target <= 10 s) and every software
report (target <= 3 s each).
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


def tables(n: int, seed: int = 5, apps: str = "/apps") -> list[tuple[str, tuple[str, ...], object]]:
    """(table, columns, row iterator) in load order: the same rows for every backend
    (`apps`: the directory of the applications, where the census part indexes them)."""
    rng = random.Random(seed)
    n_exe, n_lib, n_mod, n_user, n_host, n_job = 2000, 3000, 300, 500, 200, N_JOBS
    exes = [(i + 1, f"{apps}/{['gcc', 'python', 'lammps', 'gromacs', 'vasp', 'app'][i % 6]}/{i // 6}/bin/prog{i}",
             "") for i in range(n_exe)]
    stamped_exe = n_exe + 1
    exes.append((stamped_exe, "/home/u7/bin/stamped_solver", "11111111-2222-4333-8444-555555555555"))
    libs = [(1, "/lib/x86_64-linux-gnu/libc.so.6", ""), (2, "/lib/x86_64-linux-gnu/libm.so.6", ""),
            (3, "/lib/x86_64-linux-gnu/libpthread.so.0", ""), (4, "/opt/intel/mkl/lib/libmkl_core.so.2", ""),
            (5, "/opt/intel/mkl/lib/libmkl_intel_thread.so.2", "")]
    libs += [(i, f"{apps}/lib{i % 40}/{i}/libdep{i}.so", "") for i in range(6, n_lib + 1)]
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


def build_sqlite(path: str, n: int, apps: str = "/apps") -> None:
    conn = sqlite3.connect(path)
    conn.executescript((REPO / "ogrt/sql/sqlite.sql").read_text())
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})")  # as the outputs do
    for table, columns, rows in tables(n, apps=apps):
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         rows)
    conn.commit()
    for stmt in aggregates.migrate_statements("sqlite") + aggregates.census_statements("sqlite"):
        conn.execute(stmt)  # as a database migrated from version 3
    conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def build_postgresql(dsn: str, n: int, apps: str = "/apps") -> None:
    import psycopg

    schema = (REPO / "ogrt/sql/postgresql.sql").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema)
        conn.execute(f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})")  # as the outputs do
        # load without the secondary indices, then build them (the schema is idempotent)
        for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                                    "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'").fetchall():
            conn.execute(f'DROP INDEX "{name}"')
        for table, columns, rows in tables(n, apps=apps):
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            if columns[0] == "id":  # rows written later (a daemon) take ids after these
                conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                             f"(SELECT COALESCE(max(id), 1) FROM {table}))")
        conn.execute(schema)
        for stmt in aggregates.migrate_statements("postgresql") + aggregates.census_statements("postgresql"):
            conn.execute(stmt)  # as a database migrated from version 3
        # what autovacuum does to a database that has been running: the visibility map set
        # (index-only scans read no heap page), and no autovacuum of the new rows during the timings
        conn.execute("VACUUM ANALYZE")


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


def time_cases(db: ReportDB, label: str, named: list[tuple[str, Callable[[ReportDB], object]]]) -> float:
    """Run each report once, print its seconds and rows; the slowest one's seconds."""
    worst = 0.0
    print(f"{label}: {'report':45} {'seconds':>8}  rows")
    for name, fn in named:
        t0 = time.perf_counter()
        result = fn(db)
        dt = time.perf_counter() - t0
        worst = max(worst, dt)
        rows = len(result.rows) if hasattr(result, "rows") else len(result)  # type: ignore[attr-defined]
        print(f"{label}: {name:45} {dt:8.2f}  {rows}")
    return worst


def time_reports(db: ReportDB, label: str, n: int) -> float:
    worst = time_cases(db, label, cases())
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


# -- the software census (--census) -------------------------------------------------------------
#: issue 13's targets: each software report, and `census update` of an unchanged index
CENSUS_REPORT_TARGET = 3.0
CENSUS_UPDATE_TARGET = 10.0
KINDS = ['gcc', 'python', 'lammps', 'gromacs', 'vasp', 'app']  # tables()'s executable trees
N_SPACK, N_PYTHON, N_DPKG = 10_000, 2_000, 8_000  # 20,000 packages
PY_FILES, DPKG_FILES = 50, 11  # paths: 10,000 prefixes + 100,000 + 88,000 + the libdep files


def build_index(root: Path) -> dict[str, str]:
    """An index on disk, as the sources find it: 10,000 Spack prefixes (spec.json) under
    root/apps (those of tables()'s executables among them), 2,000 Python distributions
    (RECORD of 50 shared objects; the first is MKL, listing tables()'s MKL libraries) and
    8,000 Debian packages (status, *.list: libc6 with libc/libm/libpthread, libdepN with
    tables()'s libraries of root/apps/libN, the rest 11 files each). Returns the census
    options (spack root, python prefix, dpkg admindir)."""
    apps = root / "apps"
    for j in range(N_SPACK):
        kind, k = KINDS[j % 6], j // 6
        spec = apps / kind / str(k) / ".spack"
        spec.mkdir(parents=True)
        h = f"{j:032x}"
        node = {"name": f"{kind}{k}", "version": f"{k % 7}.{k % 3}", "hash": h,
                "arch": {"platform": "linux", "platform_os": "debian12", "target": "x86_64"},
                "compiler": {"name": "gcc", "version": "12.2.0"}, "parameters": {"mpi": k % 2 == 0}}
        (spec / "spec.json").write_text(json.dumps({"spec": {"_meta": {"version": 4}, "nodes": [node]}}))
    site = root / "py" / "lib" / "python3.11" / "site-packages"
    for d in range(N_PYTHON):
        info = site / f"dist{d}-1.{d % 10}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: dist{d}\nVersion: 1.{d % 10}\n\n")
        files = [f"dist{d}/_ext{f}.cpython-311-x86_64-linux-gnu.so" for f in range(PY_FILES)]
        if d == 0:
            files[:2] = [os.path.relpath(p, site) for p in
                         ("/opt/intel/mkl/lib/libmkl_core.so.2", "/opt/intel/mkl/lib/libmkl_intel_thread.so.2")]
        (info / "RECORD").write_text("".join(f"{f},sha256=x,1\n" for f in files))
    admin = root / "dpkg"
    (admin / "info").mkdir(parents=True)
    libdeps: dict[int, list[str]] = {}
    for i in range(6, 3001):
        libdeps.setdefault(i % 40, []).append(f"{apps}/lib{i % 40}/{i}/libdep{i}.so")
    with open(admin / "status", "w") as status:
        for p in range(N_DPKG):
            name = "libc6" if p == 0 else f"libdep{p}" if p < 40 else f"pkg{p}"
            status.write(f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n"
                         f"Version: 2.{p % 13}-1\nDescription: x\n more\n\n")
            if p == 0:
                files = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libm.so.6",
                         "/lib/x86_64-linux-gnu/libpthread.so.0"]
            else:
                files = libdeps.get(p, []) + [f"/usr/share/bench/{name}/f{f}" for f in range(DPKG_FILES)]
            (admin / "info" / f"{name}:amd64.list").write_text("".join(f + "\n" for f in files))
    return {"spack": str(apps), "python": str(root / "py"), "dpkg": str(admin)}


def census_cases() -> list[tuple[str, Callable[[ReportDB], object]]]:
    week = parse_time("7d", now=END)
    cut = END - timedelta(hours=30)  # since and until not at midnight: cut days at both edges
    F, P = queries.Filters, queries.PackageFilter
    return [
        ("software", lambda db: queries.software(db, F(), 20)),
        ("software --since 7d", lambda db: queries.software(db, F(since=week), 20)),
        ("software --since 7d --until 30h", lambda db: queries.software(db, F(since=week, until=cut), 20)),
        ("software --since 7d --source spack",
         lambda db: queries.software(db, F(since=week), 20, P(source="spack"))),
        ("software --since 7d --name libdep", lambda db: queries.software(db, F(since=week), 20, P(name="libdep"))),
        ("software --source spack", lambda db: queries.software(db, F(), 20, P(source="spack"))),
        ("software --name libdep", lambda db: queries.software(db, F(), 20, P(name="libdep"))),
        (f"software --user {PICKS['user']}", lambda db: queries.software(db, F(user=PICKS["user"]), 20)),
        (f"software --since 7d --user {PICKS['user']}",
         lambda db: queries.software(db, F(since=week, user=PICKS["user"]), 20)),
        (f"software --host {PICKS['host']}", lambda db: queries.software(db, F(host=PICKS["host"]), 20)),
        (f"software --job {PICKS['job']}", lambda db: queries.software(db, F(job=PICKS["job"]), 20)),
        ("software --unused", lambda db: queries.software_unused(db, F(), 20)),
        ("software --unused --since 7d", lambda db: queries.software_unused(db, F(since=week), 20)),
        ("software --unused --since 7d --until 30h",
         lambda db: queries.software_unused(db, F(since=week, until=cut), 20)),
        ("executables (package column)", lambda db: queries.executables(db, F(), 20)),
        (f"job {PICKS['job']} (package column)", lambda db: queries.job_processes(db, PICKS["job"], F())),
    ]


#: the software report over the rows themselves (not the code under test): per package, the
#: processes of the period that ran it or loaded it; distinct users, jobs, hosts; first, last
ROW_TRUTH = """
    SELECT u.package_id, COUNT(*) AS processes, COUNT(DISTINCT u.uid) AS users,
           COUNT(DISTINCT u.job_id) AS jobs, COUNT(DISTINCT u.host) AS hosts,
           MIN(u.start_time) AS first_use, MAX(u.start_time) AS last_use
    FROM (SELECT p.id, e.package_id, p.uid, p.job_id, p.host, p.start_time FROM processes p
          JOIN census_executables e ON e.executable_id = p.executable_id
          WHERE p.start_time >= ? AND p.start_time < ?
          UNION
          SELECT p.id, s.package_id, p.uid, p.job_id, p.host, p.start_time FROM processes p
          JOIN census_libsets s ON s.libset_id = p.libset_id WHERE p.start_time >= ? AND p.start_time < ?
          UNION
          SELECT p.id, s.package_id, p.uid, p.job_id, p.host, p.start_time FROM processes p
          JOIN census_libsets s ON s.libset_id = p.late_libset_id WHERE p.start_time >= ? AND p.start_time < ?) u
    GROUP BY u.package_id"""


def check_exact(db: ReportDB, label: str) -> bool:
    """The time-filtered report (cut days at both edges) equals ROW_TRUTH, every package."""
    since, until = parse_time("7d", now=END), END - timedelta(hours=30)
    d = db.dialect
    t0 = time.perf_counter()
    truth = {r["package_id"]: r for r in db.query(ROW_TRUTH, [d.time_param(since), d.time_param(until)] * 3)}
    rows = queries.software(db, queries.Filters(since=since, until=until), 0).rows
    ids = {(r["source"], r["package"], r["version"], r["hash"]): r for r in rows}
    keyed = {k["id"]: (k["source"], k["package"], k["version"], k["hash"]) for k in db.query(
        "SELECT k.id AS id, k.source AS source, k.name AS package, k.version AS version, k.hash AS hash "
        "FROM census_packages k")}
    cols = ("processes", "users", "jobs", "hosts", "first_use", "last_use")
    wrong = [pid for pid, t in truth.items()
             if tuple(ids.get(keyed[pid], {}).get(c) for c in cols) != tuple(t[c] for c in cols)]
    ok = not wrong and len(ids) == len(truth)
    print(f"{label}: software --since 7d --until 30h equals the rows' count for {len(truth):,} packages: "
          f"{'yes' if ok else f'NO ({len(wrong)} differ, {len(ids)} rows vs {len(truth)})'} "
          f"(checked in {time.perf_counter() - t0:.1f} s)")
    return ok


def time_census(target: tuple[str, str], index: dict[str, str], label: str, n: int) -> bool:
    """`census update` twice (the second over the unchanged index), then the software reports."""
    from ogrt.census.update import Plan, update
    from ogrt.report.db import open_target, open_writable

    plan = Plan(spack_roots=[index["spack"]], python_prefixes=[index["python"]],
                dpkg_admindir=index["dpkg"])
    times = []
    for what in ("first (index and attribute all)", "again, unchanged index"):
        with open_writable(target) as wdb:
            result = update(wdb, plan)  # type: ignore[arg-type]
        times.append(result.seconds)
        packages = sum(c.added + c.changed + c.unchanged for _, _, c in result.sources)
        a = result.attribution
        print(f"{label}: census update, {what}: {result.seconds:.2f} s ({packages:,} packages, "
              f"{sum(c.paths for _, _, c in result.sources):,} paths written; executables "
              f"{a.executables_attributed}/{a.executables}, libraries {a.libraries_attributed}/"
              f"{a.libraries} attributed)")
    with open_target(target) as db:
        indexed = db.query("SELECT COUNT(*) AS n FROM census_paths")[0]["n"]
        print(f"{label}: {indexed:,} indexed paths")
        worst = time_cases(db, label, census_cases())
        exact = check_exact(db, label)
    ok = worst <= CENSUS_REPORT_TARGET and times[1] <= CENSUS_UPDATE_TARGET and exact
    print(f"{label}: census over {n:,} processes: update of the unchanged index {times[1]:.2f} s "
          f"(target <= {CENSUS_UPDATE_TARGET:.0f} s), slowest software report {worst:.2f} s "
          f"(target <= {CENSUS_REPORT_TARGET:.0f} s): {'meets' if ok else 'MISSES'}")
    return ok


def run_census(opts: argparse.Namespace) -> bool:
    """The census part: its own database (the same processes, applications under the index)."""
    tmp = Path(tempfile.mkdtemp(prefix="ogrt-census-bench-"))
    ok = True
    try:
        t0 = time.perf_counter()
        index = build_index(tmp)
        print(f"census: index tree built in {time.perf_counter() - t0:.1f} s: {tmp}")
        apps = index["spack"]
        if opts.backend in ("sqlite", "both"):
            path = str(tmp / "census.sqlite")
            t0 = time.perf_counter()
            build_sqlite(path, opts.processes, apps)
            print(f"sqlite: built {opts.processes:,} processes in {time.perf_counter() - t0:.1f} s")
            ok = time_census(("sqlite", path), index, "sqlite", opts.processes) and ok
        if opts.backend in ("postgresql", "both"):
            server, dsn = (None, opts.dsn) if opts.dsn else throwaway_postgres()
            if dsn is not None:
                try:
                    t0 = time.perf_counter()
                    build_postgresql(dsn, opts.processes, apps)
                    print(f"postgresql: built {opts.processes:,} processes in {time.perf_counter() - t0:.1f} s")
                    ok = time_census(("postgresql", dsn), index, "postgresql", opts.processes) and ok
                finally:
                    if server is not None:
                        server.destroy()
    finally:
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(ap)
    ap.add_argument("--census", action="store_true",
                    help="the software census part instead: census update and software reports")
    opts = ap.parse_args()
    if opts.census:
        return 0 if run_census(opts) else 1
    worst = 0.0
    if opts.backend in ("sqlite", "both"):
        worst = max(worst, run_sqlite(opts))
    if opts.backend in ("postgresql", "both"):
        worst = max(worst, run_postgresql(opts))
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
