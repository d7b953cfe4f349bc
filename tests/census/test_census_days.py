"""The software report with filters reads the census's per-day roll-up (census_usage_days,
schema 5) plus the rows of the days a period cuts and those after the roll-up: it must equal
the report computed here, in Python, from the process rows (their executable and library
paths matched to the packages' prefixes, independently of the census's SQL), on SQLite and
PostgreSQL written by the real outputs, for periods that cut days at both edges, whole days,
one day, an open end — before and after a second `ogrt census update`, after `ogrt purge`,
and after the migration of a version-4 database. The roll-up table itself must equal the
cells computed here from the rows it covers.

The processes are records (README "Record format") with times spread over six days, written
by the real outputs: the library stamps the real clock, which cannot be set back days. The
index is a Spack install tree made here (spec.json files, like benchmarks/report_scale.py's).
"""
from __future__ import annotations

import json
import sqlite3
import subprocess
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ogrt.report.db import open_target
from ogrt.sql.schema import SCHEMA_VERSION
from tests.census.helpers import OGRT, census_update, report
from tests.report.conftest import pg_options, write_records
from tests.report.records import LIBC, process

NOW = datetime.now(timezone.utc)
BASE = datetime(NOW.year, NOW.month, NOW.day, tzinfo=timezone.utc) - timedelta(days=6)
PACKAGES = ("alpha", "beta", "gamma", "delta")  # delta: indexed, never used
USERS = (("alice", 1001), ("bob", 1002), ("carol", 1003))


def spack_tree(root: Path) -> Path:
    """One install prefix per package (a spec.json as Spack writes it, reduced)."""
    for i, name in enumerate(PACKAGES):
        spec = root / name / ".spack"
        spec.mkdir(parents=True)
        node = {"name": name, "version": f"1.{i}", "hash": f"{i:032x}",
                "arch": {"platform": "linux", "platform_os": "debian12", "target": "x86_64"}}
        (spec / "spec.json").write_text(json.dumps({"spec": {"_meta": {"version": 4}, "nodes": [node]}}))
    return root


def workload(apps: Path, first: int, n: int, *, user: tuple[str, int] | None = None) -> list[dict[str, Any]]:
    """n processes over the six days: alpha's or beta's program; alpha's own library (the same
    package twice), gamma's at start or dlopen()ed; jobs, no job; some never ended."""
    recs: list[dict[str, Any]] = []
    for i in range(first, first + n):
        name, uid = user or USERS[i % 3]
        start = BASE + timedelta(days=i % 6, hours=(i * 7) % 24, minutes=i % 60, seconds=i % 7)
        libs = [LIBC] + ([f"{apps}/alpha/lib/libalpha.so"] if i % 3 == 0 else []) \
            + ([f"{apps}/gamma/lib/libgamma.so"] if i % 4 == 1 else [])
        late = (f"{apps}/gamma/lib/libgamma.so",) if i % 5 == 2 else ()
        recs += process(host=f"n{i % 4}", job=None if i % 7 == 0 else f"j{i % 5}", user=name, uid=uid,
                        pid=1000 + i, ppid=1, exe=f"{apps}/{'alpha' if i % 2 else 'beta'}/bin/prog{i % 3}",
                        start=start, seconds=5, libs=tuple(libs), late=late,
                        ended=not (i % 11 == 3 and i % 6 < 3))  # old: settled without an end
    return recs


def recent_unsettled(apps: Path) -> list[dict[str, Any]]:
    """A process started an hour ago with no end yet: not settled, never rolled up while so
    (a program attributed already: a new path waits for the next `census update`)."""
    return process(host="n9", job="j9", user="erin", uid=1009, pid=99, ppid=1, exe=f"{apps}/beta/bin/prog0",
                   start=NOW - timedelta(hours=1), seconds=1, ended=False)


# -- the answer from the rows, in Python ------------------------------------------------------
def rows(target: tuple[str, str], apps: Path) -> list[dict[str, Any]]:
    """Each process: its keys and the packages its paths (program, libraries) lie under."""
    with open_target(target) as db:
        procs = db.query("SELECT p.id AS id, p.uid AS uid, p.username AS username, p.host AS host, "
                         "p.job_id AS job_id, p.start_time AS start_time, e.path AS exe FROM processes p "
                         "LEFT JOIN executables e ON e.id = p.executable_id")
        libs = db.query("SELECT p.id AS id, l.path AS path FROM processes p JOIN libset_members m "
                        "ON m.libset_id = p.libset_id OR m.libset_id = p.late_libset_id "
                        "JOIN libraries l ON l.id = m.library_id")
    paths: dict[int, list[str]] = defaultdict(list)
    for r in libs:
        paths[r["id"]].append(r["path"])
    for p in procs:
        found = paths[p["id"]] + [p["exe"] or ""]
        p["packages"] = {n for n in PACKAGES for x in found if x.startswith(f"{apps}/{n}/")}
        p["start"] = None if p["start_time"] is None else datetime.fromisoformat(p["start_time"])
    return procs


def expected(procs: list[dict[str, Any]], since: datetime | None = None, until: datetime | None = None,
             user: str | None = None, host: str | None = None, job: str | None = None,
             name: str | None = None) -> dict[str, tuple[Any, ...]]:
    """Per package: processes, users, jobs, hosts, first and last use of the selected rows."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in procs:
        t = p["start"]
        if (since or until) and t is None:
            continue
        if (since and t < since) or (until and t >= until) or (user and p["username"] != user) \
                or (host and p["host"] != host) or (job and p["job_id"] != job):
            continue
        for n in p["packages"]:
            if name is None or n.startswith(name):
                out[n].append(p)
    return {n: (len(ps), len({p["uid"] for p in ps if p["uid"] is not None}),
                len({p["job_id"] for p in ps if p["job_id"] is not None}),
                len({p["host"] for p in ps if p["host"] is not None}),
                min(p["start"] for p in ps), max(p["start"] for p in ps)) for n, ps in out.items()}


def reported(db: str, *argv: str) -> dict[str, tuple[Any, ...]]:
    return {r["package"]: (r["processes"], r["users"], r["jobs"], r["hosts"],
                           datetime.fromisoformat(r["first_use"]), datetime.fromisoformat(r["last_use"]))
            for r in report(db, "software", *argv)}


def at(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


D = timedelta(days=1)
#: (report options, the same as expected()'s arguments)
CASES: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    # cut days at both edges
    (("--since", at(BASE + D + timedelta(hours=7, minutes=30)), "--until", at(BASE + 5 * D + timedelta(hours=15))),
     dict(since=BASE + D + timedelta(hours=7, minutes=30), until=BASE + 5 * D + timedelta(hours=15))),
    # whole days
    (("--since", at(BASE + D), "--until", at(BASE + 5 * D)), dict(since=BASE + D, until=BASE + 5 * D)),
    # within one day
    (("--since", at(BASE + 2 * D + timedelta(hours=3)), "--until", at(BASE + 2 * D + timedelta(hours=20))),
     dict(since=BASE + 2 * D + timedelta(hours=3), until=BASE + 2 * D + timedelta(hours=20))),
    # to now (the recent, unsettled process in it), and from the start
    (("--since", at(BASE + 3 * D + timedelta(hours=11, minutes=11))),
     dict(since=BASE + 3 * D + timedelta(hours=11, minutes=11))),
    (("--until", at(BASE + 3 * D)), dict(until=BASE + 3 * D)),
    # with the other filters
    (("--since", at(BASE + D + timedelta(hours=7, minutes=30)), "--until", at(BASE + 5 * D + timedelta(hours=15)),
      "--user", "bob"), dict(since=BASE + D + timedelta(hours=7, minutes=30), until=BASE + 5 * D + timedelta(hours=15),
                             user="bob")),
    (("--since", at(BASE + D), "--host", "n1"), dict(since=BASE + D, host="n1")),
    (("--since", at(BASE + D + timedelta(hours=2)), "--job", "j2"), dict(since=BASE + D + timedelta(hours=2), job="j2")),
    (("--user", "1003",), dict(user="carol")),
    (("--host", "n2"), dict(host="n2")),
    (("--since", at(BASE + 2 * D + timedelta(hours=1)), "--source", "spack", "--name", "al*"),
     dict(since=BASE + 2 * D + timedelta(hours=1), name="al")),
    ((), {}),
]


def check(db: str, target: tuple[str, str], apps: Path) -> list[dict[str, Any]]:
    procs = rows(target, apps)
    for argv, kw in CASES:
        assert reported(db, *argv) == expected(procs, **kw), argv
    unused = {r["package"] for r in report(db, "software", "--unused", *CASES[0][0])}
    assert unused == set(PACKAGES) - set(expected(procs, **CASES[0][1]))
    return procs


def check_roll_up(target: tuple[str, str], procs: list[dict[str, Any]]) -> int:
    """census_usage_days equals the cells of the rows up to its watermark; that watermark."""
    with open_target(target) as db:
        mark = db.query("SELECT value AS v FROM census_state WHERE name = 'usage'")[0]["v"]
        stored = {(r["day"], r["package"], r["uid"], r["host"], r["job_id"], r["username"]):
                  (r["processes"], datetime.fromisoformat(r["first_start"]), datetime.fromisoformat(r["last_start"]))
                  for r in db.query("SELECT c.day AS day, k.name AS package, c.uid AS uid, c.host AS host, "
                                    "c.job_id AS job_id, c.username AS username, c.processes AS processes, "
                                    "c.first_start AS first_start, c.last_start AS last_start "
                                    "FROM census_usage_days c JOIN census_packages k ON k.id = c.package_id")}
    cells: dict[tuple[Any, ...], list[datetime]] = defaultdict(list)
    for p in procs:
        if p["id"] <= mark and p["start"] is not None:
            for n in p["packages"]:
                key = (p["start"].date().isoformat(), n, p["uid"] if p["uid"] is not None else -1,
                       p["host"] or "", p["job_id"] or "", p["username"] or "")
                cells[key].append(p["start"])
    assert stored == {k: (len(v), min(v), max(v)) for k, v in cells.items()}
    return mark


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any], str]:
    """(kind, output options, --db) of an empty database of each backend."""
    if request.param == "sqlite":
        path = str(tmp_path / "ogrt.sqlite")
        return "sqlite", {"type": "sqlite", "path": path}, path
    dsn = request.getfixturevalue("postgres").new_database()
    return "postgresql", pg_options(dsn), dsn


def test_filtered_software_report_equals_the_rows(target: tuple[str, dict[str, Any], str], tmp_path: Path) -> None:
    from ogrt.config import parse_config
    from ogrt.retention import purge

    kind, options, db = target
    t = (kind, db)
    apps = spack_tree(tmp_path / "apps")
    write_records(kind, options, workload(apps, 0, 90))
    out = census_update(db, "--spack-root", str(apps))
    assert "attribution (all paths)" in out, out
    procs = check(db, t, apps)
    assert check_roll_up(t, procs) == max(p["id"] for p in procs)  # every row settled: all rolled up

    # more processes, on old days too, a new user, one not settled: read from the rows first
    write_records(kind, options, workload(apps, 90, 40, user=("dave", 1004)) + recent_unsettled(apps))
    procs = check(db, t, apps)
    out = census_update(db, "--spack-root", str(apps))
    assert "0 added, 0 changed, 0 removed" in out and "attribution (new paths)" in out, out
    procs = check(db, t, apps)
    unsettled = [p["id"] for p in procs if p["username"] == "erin"]
    assert check_roll_up(t, procs) == unsettled[0] - 1  # rolled up to the unsettled process

    # purge: the next update rolls up the rows left again
    output = parse_config({"outputs": {"daystest": dict(options)}}).outputs[0]
    assert purge(output, BASE + 2 * D + timedelta(hours=12), batch_rows=25, pause=0).removed["processes"] > 0
    census_update(db, "--spack-root", str(apps))
    procs = check(db, t, apps)
    assert min(p["start"] for p in procs) >= BASE + 2 * D  # the purge took something
    check_roll_up(t, procs)


def test_version_4_database_is_migrated(tmp_path: Path) -> None:
    """A version-4 database (no per-day roll-up) is refused by the reports until `census
    update` migrates it; that update rolls everything up again."""
    path = str(tmp_path / "v4.sqlite")
    apps = spack_tree(tmp_path / "apps")
    write_records("sqlite", {"type": "sqlite", "path": path}, workload(apps, 0, 60))
    census_update(path, "--spack-root", str(apps))
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE census_usage_days")
        conn.execute("UPDATE schema_version SET version = 4")
    conn.close()
    refused = subprocess.run([str(OGRT), "report", "software", "--db", path], capture_output=True, text=True)
    assert refused.returncode == 2 and "census update" in refused.stderr
    census_update(path, "--spack-root", str(apps))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
    procs = check(path, ("sqlite", path), apps)
    check_roll_up(("sqlite", path), procs)
