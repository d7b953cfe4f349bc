"""The usage aggregates of schema version 4 (ogrt/sql/aggregates.py) on real SQLite and
PostgreSQL databases written by the real outputs: after writes in any order, updates that
move a process to another cell or lower a maximum, deletes, `ogrt purge` and the migration
from version 3, every aggregate table equals the cells computed here, in Python, from the
process rows left; and the reports that read them equal the same reports computed from the
rows with SQL of their own (times not at midnight split days)."""
from __future__ import annotations

import fnmatch
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ogrt.report import queries
from ogrt.report.db import normalize_value, open_target
from ogrt.sql import aggregates
from ogrt.sql.schema import SCHEMA_VERSION
from tests.fixtures.schema3 import downgrade_to_version_3
from tests.report.conftest import pg_options, write_records
from tests.report.records import dataset, process

B = dict(host="node07", job="job-7", user="carol", uid=1007)
DAY = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)


def _extra() -> list[dict[str, Any]]:
    """Processes that exercise the cell moves: an end record written before its start
    record (the row exists without executable, then gets one), failures, no job, no host."""
    recs: list[dict[str, Any]] = []
    for i in range(6):
        recs += process(**B, pid=100 + i, ppid=1, exe=f"/apps/x/bin/tool{i % 2}", start=DAY + timedelta(hours=i * 5),
                        seconds=30, exit_status=i % 3, utime=1.25 * i, stime=0.5, modules=("gcc/12", f"m/{i % 2}"))
    late = process(**B, pid=200, ppid=1, exe="/apps/x/bin/tool0", start=DAY + timedelta(hours=2), seconds=5,
                   exit_status=3, modules=("gcc/12",))
    recs += [late[1]] + [late[0]]  # end first (its own batch below), then start
    recs += process(host="login9", job=None, user="dave", uid=1008, pid=300, ppid=1, exe="/usr/bin/vim",
                    start=DAY + timedelta(days=1, hours=23), seconds=2)
    return recs


def _write(kind: str, options: dict[str, Any], records: list[dict[str, Any]], batch: int = 5) -> None:
    write_records(kind, options, records, batch)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if request.param == "sqlite":
        options = {"type": "sqlite", "path": str(tmp_path / "ogrt.sqlite")}
    else:
        options = pg_options(request.getfixturevalue("postgres").new_database("agg"))
    records = dataset() + _extra()
    _write(request.param, options, records[:-6])
    _write(request.param, options, records[-6:-5], batch=1)  # the end record alone
    _write(request.param, options, records[-5:])
    yield request.param, options


def _connect(options: dict[str, Any]) -> Any:
    if options["type"] == "sqlite":
        return sqlite3.connect(options["path"], isolation_level=None)
    import psycopg
    return psycopg.connect(options["dsn"], autocommit=True)


def _as_time(start: Any) -> datetime:
    """A stored start time (SQLite: RFC 3339 text; PostgreSQL: datetime) as a datetime."""
    return start if isinstance(start, datetime) else datetime.fromisoformat(start.replace("Z", "+00:00"))


def _day(start: Any) -> str:
    if start is None:
        return ""
    if isinstance(start, datetime):
        return start.astimezone(timezone.utc).date().isoformat()
    return start[:10]


def _expected(conn: Any, a: aggregates.Aggregate) -> list[tuple[Any, ...]]:
    """The cells of `a`, computed in Python from the process rows."""
    rows = conn.execute("SELECT start_time, uid, username, host, job_id, executable_id, modset_id, "
                        "utime, stime, exit_status FROM processes").fetchall()
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    for start, uid, user, host, job, exe, modset, utime, stime, status in rows:
        key = {"day": _day(start), "uid": -1 if uid is None else uid, "username": user or "",
               "host": host or "", "job_id": job or "", "executable_id": exe or 0, "modset_id": modset or 0}
        failed = status is not None and status != 0
        c = cells.setdefault(tuple(key[k] for k in a.keys),
                             {"processes": 0, "cpu_seconds": 0.0, "failed": 0, "last_start": None, "last_failure": None,
                              "first_start": None})
        c["processes"] += 1
        c["cpu_seconds"] += (utime or 0) + (stime or 0)
        c["failed"] += failed
        t = normalize_value(start)
        for m, v in (("last_start", t), ("last_failure", t if failed else None)):
            if v is not None and (c[m] is None or v > c[m]):
                c[m] = v
        if t is not None and (c["first_start"] is None or t < c["first_start"]):
            c["first_start"] = t
    return sorted(k + tuple(round(c[s], 6) if s == "cpu_seconds" else c[s] for s in a.sums + a.extremes)
                  for k, c in cells.items())


def _stored(conn: Any, a: aggregates.Aggregate) -> list[tuple[Any, ...]]:
    rows = conn.execute(f"SELECT {', '.join(a.columns)} FROM {a.table}").fetchall()
    n = len(a.keys) + len(a.sums)
    return sorted(tuple(round(float(v), 6) if col == "cpu_seconds" else v for col, v in zip(a.columns[:n], r[:n]))
                  + tuple(normalize_value(v) for v in r[n:]) for r in rows)


def _assert_consistent(conn: Any) -> None:
    for a in aggregates.AGGREGATES:
        assert _stored(conn, a) == _expected(conn, a), a.table


def test_aggregates_follow_writes_updates_and_deletes(db: tuple[str, dict[str, Any]]) -> None:
    kind, options = db
    conn = _connect(options)
    try:
        _assert_consistent(conn)
        assert conn.execute("SELECT count(*) FROM usage_executables WHERE failed > 0").fetchone()[0] > 0
        mark = "?" if kind == "sqlite" else "%s"
        # the latest process of a cell of several goes: its maximum is recomputed from the rest
        last = conn.execute("SELECT max(start_time) FROM processes WHERE job_id = 'job-7'").fetchone()[0]
        conn.execute(f"DELETE FROM processes WHERE job_id = 'job-7' AND start_time = {mark}", (last,))
        _assert_consistent(conn)
        first = conn.execute("SELECT min(start_time) FROM processes WHERE job_id = 'job-7'").fetchone()[0]
        conn.execute(f"DELETE FROM processes WHERE job_id = 'job-7' AND start_time = {mark}", (first,))
        _assert_consistent(conn)  # and its minimum
        # through the output (SQLite: the only writer that keeps the cells on insert and update,
        # ogrt/sql/cells.py): a failure becomes a success (last_failure goes down, in its cell);
        # a process moves to another executable, user and day (its old cell loses its latest
        # start) and, in the same batch, a repeat of a start record (no change)
        fail_uuid, fail_start = conn.execute(
            "SELECT uuid, start_time FROM processes WHERE job_id = 'job-7' AND exit_status <> 0 "
            "ORDER BY start_time DESC LIMIT 1").fetchone()
        move_uuid, = conn.execute("SELECT uuid FROM processes WHERE pid = 101").fetchone()
        end = process(**B, pid=1, ppid=1, exe="/apps/x/bin/tool0", start=_as_time(fail_start), seconds=1,
                      exit_status=0, utime=2.5, started=False)
        end[0]["id"] = fail_uuid
        moved = process(host="node07", job="job-7", user="eve", uid=4242, pid=101, ppid=1,
                        exe="/apps/x/bin/elsewhere", start=DAY - timedelta(days=3), seconds=1, ended=False)
        moved[0]["id"] = move_uuid
        same = process(**B, pid=105, ppid=1, exe="/apps/x/bin/tool1", start=DAY + timedelta(hours=25),
                       seconds=30, ended=False, modules=("gcc/12", "m/1"))
        same[0]["id"] = conn.execute("SELECT uuid FROM processes WHERE pid = 105").fetchone()[0]
        before = conn.execute("SELECT count(*) FROM processes").fetchone()[0]
        _write(kind, options, end + moved + same)
        assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] == before
        assert conn.execute("SELECT count(*) FROM processes WHERE uuid = ? AND uid = 4242".replace("?", mark),
                            (move_uuid,)).fetchone()[0] == 1
        _assert_consistent(conn)
        # the start record of a process whose end came in an earlier batch, and both records of
        # another in one batch
        late = process(**B, pid=700, ppid=1, exe="/apps/x/bin/tool0", start=DAY + timedelta(hours=3), seconds=9,
                       exit_status=9, utime=1.0)
        _write(kind, options, late[1:], batch=1)
        _assert_consistent(conn)
        _write(kind, options, late[:1] + process(**B, pid=701, ppid=1, exe="/apps/x/bin/tool0",
                                                 start=DAY + timedelta(hours=4), seconds=1))
        _assert_consistent(conn)
        # values SQLite converts to its column's type (text in INTEGER and REAL columns)
        odd = process(**{**B, "uid": 1009}, pid=702, ppid=1, exe="/apps/x/bin/tool0", start=DAY, seconds=1,
                      exit_status=0, utime=0.5)
        odd[0]["uid"], odd[1]["exit_status"], odd[1]["stime"] = "1009", "0", "0.25"
        if kind == "sqlite":  # (PostgreSQL refuses such text; its output passes them as they are)
            _write(kind, options, odd)
            _assert_consistent(conn)
            # a NaN (stored as NULL), alone in its batch
            _write(kind, options, process(**B, pid=703, ppid=1, exe="/apps/x/bin/tool0", start=DAY, seconds=1,
                                          utime=float("nan")))
            assert conn.execute("SELECT uid, exit_status FROM processes WHERE pid = 702").fetchone() == (1009, 0)
            _assert_consistent(conn)
        if kind == "postgresql":  # its statement triggers also follow plain SQL updates
            conn.execute("UPDATE processes SET exit_status = 0 WHERE job_id = 'job-7' AND exit_status <> 0 "
                         "AND pid = (SELECT max(pid) FROM processes WHERE job_id = 'job-7' AND exit_status <> 0)")
            _assert_consistent(conn)
            conn.execute("UPDATE processes SET executable_id = (SELECT min(id) FROM executables), uid = 4243, "
                         "username = 'eve' WHERE pid = 102")
            conn.execute("UPDATE processes SET start_time = %s WHERE pid = 103", (DAY - timedelta(days=3),))
            _assert_consistent(conn)
        conn.execute("DELETE FROM processes WHERE host = 'node07'")
        _assert_consistent(conn)
        assert conn.execute("SELECT count(*) FROM usage_days WHERE host = 'node07'").fetchone()[0] == 0
    finally:
        conn.close()


def test_large_batches_of_few_cells(db: tuple[str, dict[str, Any]]) -> None:
    """Batches of more than 500 processes (the SQLite output reads them in chunks) that fall
    into a few cells: new rows of one cell added up in one batch, then their end records (CPU
    time, failures gained in place) in the next ones, some moving cells, some repeated."""
    kind, options = db
    starts: list[dict[str, Any]] = []
    ends: list[dict[str, Any]] = []
    for i in range(700):
        start, end = process(host=f"big{i % 2}", job="job-big", user="frank", uid=1100 + i % 3, pid=5000 + i,
                             ppid=1, exe=f"/apps/big/bin/t{i % 2}", start=DAY + timedelta(minutes=i),
                             seconds=1, exit_status=i % 4, utime=0.25 * (i % 5), stime=0.5, modules=("gcc/12",))
        starts.append(start)
        ends.append(end)
    moved = [dict(e, uid=1200, user="grace") for e in ends[:50]]  # the end record brings another user
    _write(kind, options, starts, batch=650)
    _write(kind, options, ends[50:] + starts[:30], batch=600)  # and repeated start records
    _write(kind, options, moved, batch=50)
    conn = _connect(options)
    try:
        _assert_consistent(conn)
        big = conn.execute("SELECT sum(processes), sum(failed) FROM usage_days WHERE job_id = 'job-big'")
        assert big.fetchone() == (700, 525)
        assert conn.execute("SELECT count(*) FROM usage_days WHERE username = 'grace'").fetchone()[0] > 0
    finally:
        conn.close()


def test_purge_keeps_them_equal_to_the_rows_left(db: tuple[str, dict[str, Any]]) -> None:
    """`ogrt purge` deletes in batches through the triggers: the cells are those of the rows left
    (the aggregates keep no history of purged processes)."""
    from ogrt.config import parse_config
    from ogrt.retention import purge

    kind, options = db
    output = parse_config({"outputs": {"aggtest": dict(options)}}).outputs[0]
    result = purge(output, DAY + timedelta(hours=7), batch_rows=2, pause=0)
    assert result.removed["processes"] > 0
    conn = _connect(options)
    try:
        assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] > 0
        _assert_consistent(conn)
    finally:
        conn.close()


def test_migration_from_version_3_builds_them(db: tuple[str, dict[str, Any]]) -> None:
    kind, options = db
    conn = _connect(options)
    try:
        before = {a.table: _stored(conn, a) for a in aggregates.AGGREGATES}
        downgrade_to_version_3(conn, kind)  # the database as version 3 had it
        _write(kind, options, process(**B, pid=900, ppid=1, exe="/apps/x/bin/new", start=DAY, seconds=1))
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        _assert_consistent(conn)
        after = {a.table: _stored(conn, a) for a in aggregates.AGGREGATES}
        assert after["usage_executables"] != before["usage_executables"]  # the new process is in
        _write(kind, options, process(**B, pid=901, ppid=1, exe="/apps/x/bin/new", start=DAY, seconds=1))
        _assert_consistent(conn)  # the triggers are back
    finally:
        conn.close()


# -- the reports over the cells equal the reports over the rows ------------------------------------
def _raw_daily(db: Any, f: queries.Filters) -> list[dict[str, Any]]:
    clauses, params = f.where(db.dialect)
    day = db.dialect.day("p.start_time")
    return db.query(f"""SELECT {day} AS day, COUNT(*) AS processes, COUNT(DISTINCT p.job_id) AS jobs,
                               COUNT(DISTINCT p.uid) AS users, COUNT(DISTINCT p.host) AS hosts
                        FROM processes p WHERE {' AND '.join(['p.start_time IS NOT NULL'] + clauses)}
                        GROUP BY {day} ORDER BY day""", params)


def _raw_executables(db: Any, f: queries.Filters) -> list[dict[str, Any]]:
    clauses, params = f.where(db.dialect)
    rows = db.query(f"""SELECT e.path AS executable, COUNT(*) AS runs, COUNT(DISTINCT p.uid) AS users,
                               COUNT(DISTINCT p.host) AS hosts, COUNT(DISTINCT p.job_id) AS jobs,
                               SUM({queries.CPU}) AS cpu_seconds, SUM({queries.FAILED}) AS failed,
                               MAX(p.start_time) AS last_run
                        FROM processes p JOIN executables e ON e.id = p.executable_id
                        {'WHERE ' + ' AND '.join(clauses) if clauses else ''}
                        GROUP BY e.path ORDER BY runs DESC, executable""", params)
    for r in rows:
        r["cpu_seconds"] = round(float(r["cpu_seconds"] or 0), 3)
    return rows


def _raw_modules(db: Any, f: queries.Filters) -> list[dict[str, Any]]:
    clauses, params = f.where(db.dialect)
    return db.query(f"""SELECT m.name AS module, COUNT(*) AS processes, COUNT(DISTINCT p.uid) AS users,
                               COUNT(DISTINCT p.job_id) AS jobs, MAX(p.start_time) AS last_used
                        FROM processes p JOIN modset_members mm ON mm.modset_id = p.modset_id
                        JOIN modules m ON m.id = mm.module_id
                        {'WHERE ' + ' AND '.join(clauses) if clauses else ''}
                        GROUP BY m.name ORDER BY processes DESC, module""", params)


def _raw_users(db: Any, f: queries.Filters) -> list[dict[str, Any]]:
    clauses, params = f.where(db.dialect)
    return db.query(f"""SELECT p.uid AS uid, COUNT(*) AS processes, COUNT(DISTINCT p.job_id) AS jobs,
                               COUNT(DISTINCT p.host) AS hosts, COUNT(DISTINCT p.executable_id) AS executables,
                               SUM({queries.FAILED}) AS failed, MAX(p.start_time) AS last_seen
                        FROM processes p {'WHERE ' + ' AND '.join(clauses) if clauses else ''}
                        GROUP BY p.uid ORDER BY processes DESC, uid""", params)


def _raw_failing(db: Any, f: queries.Filters) -> list[dict[str, Any]]:
    clauses, params = f.where(db.dialect)
    return db.query(f"""SELECT e.path AS executable, COUNT(*) AS failed, COUNT(DISTINCT p.uid) AS users,
                               COUNT(DISTINCT p.job_id) AS jobs, MAX(p.start_time) AS last_failure
                        FROM processes p JOIN executables e ON e.id = p.executable_id
                        WHERE {' AND '.join(['p.exit_status IS NOT NULL', 'p.exit_status <> 0'] + clauses)}
                        GROUP BY e.path ORDER BY failed DESC, executable""", params)


def _raw_jobs(db: Any, f: queries.Filters) -> list[dict[str, Any]]:
    clauses, params = f.where(db.dialect)
    return db.query(f"""SELECT p.job_id AS job, COUNT(*) AS processes, COUNT(DISTINCT p.host) AS hosts,
                               SUM({queries.FAILED}) AS failed, MIN(p.start_time) AS first_start
                        FROM processes p WHERE {' AND '.join(['p.job_id IS NOT NULL'] + clauses)}
                        GROUP BY p.job_id ORDER BY MAX(p.start_time) DESC, job""", params)


def _raw_executable_jobs(db: Any, f: queries.Filters, path: str) -> list[dict[str, Any]]:
    clauses, params = f.where(db.dialect)
    return db.query(f"""SELECT p.job_id AS job, COUNT(*) AS runs, COUNT(DISTINCT p.host) AS hosts,
                               SUM({queries.FAILED}) AS failed, MIN(p.start_time) AS first_start,
                               MAX(p.start_time) AS last_start
                        FROM processes p JOIN executables e ON e.id = p.executable_id
                        WHERE {' AND '.join(['e.path = ?', 'p.job_id IS NOT NULL'] + clauses)}
                        GROUP BY p.job_id ORDER BY last_start DESC, job""", [path] + params)


def _like(path: str, pattern: str) -> bool:
    """`--path` matching (queries.library_pattern) in Python: a substring, or a glob."""
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    return pattern.lower() in path.lower()


FILTERS = [
    queries.Filters(),
    queries.Filters(since=DAY - timedelta(hours=1)),  # not at midnight: a partial first day
    queries.Filters(until=DAY + timedelta(hours=12, minutes=30)),
    queries.Filters(since=datetime(2026, 11, 20, tzinfo=timezone.utc), until=datetime(2026, 11, 24, tzinfo=timezone.utc)),
    queries.Filters(since=DAY + timedelta(hours=1), until=DAY + timedelta(hours=11)),  # within one day
    queries.Filters(since=DAY - timedelta(days=3, hours=3), until=DAY + timedelta(days=2, hours=5), user="carol"),
    queries.Filters(user="1007"),
    queries.Filters(host="node01"),
    queries.Filters(job="job-7", since=DAY + timedelta(minutes=1)),
]


@pytest.mark.parametrize("f", FILTERS, ids=range(len(FILTERS)))
def test_reports_over_cells_equal_reports_over_rows(db: tuple[str, dict[str, Any]], f: queries.Filters) -> None:
    kind, options = db
    with open_target((kind, options["path"] if kind == "sqlite" else options["dsn"])) as rdb:
        assert queries.daily(rdb, f).rows == _raw_daily(rdb, f)
        # the package column is the census's (tests/census), not the cells'
        raw = _raw_executables(rdb, f)
        # every row, and the top ones (distinct counts of the shown paths only), by path too
        for top, pattern in ((0, None), (1, None), (2, None), (0, "tool"), (1, "*/bin/tool?")):
            want = [r for r in raw if pattern is None or _like(r["executable"], pattern)]
            assert [{k: v for k, v in r.items() if k != "package"}
                    for r in queries.executables(rdb, f, top, pattern).rows] == (want[:top] if top else want)
        keys = ("executable", "runs", "cpu_seconds", "failed", "last_run")
        assert queries.top_executables(rdb, f, 0).rows == [{k: r[k] for k in keys} for r in _raw_executables(rdb, f)]
        assert queries.modules(rdb, f, 0).rows == _raw_modules(rdb, f)
        assert queries.failing(rdb, f, 0).rows == _raw_failing(rdb, f)
        keys = ("uid", "processes", "jobs", "hosts", "executables", "failed", "last_seen")
        raw = _raw_users(rdb, f)
        for top in (0, 1, 2):  # the top ones: distinct executables of the shown users only
            assert [{k: r[k] for k in keys} for r in queries.users(rdb, f, top).rows] == (raw[:top] if top else raw)
        jobs = [r for r in queries.jobs(rdb, f, 0).rows if r["processes"]]  # not the jobs without processes
        raw = _raw_jobs(rdb, f)
        assert [{k: r[k] for k in ("job", "processes", "hosts", "failed")} for r in jobs] == \
            [{k: r[k] for k in ("job", "processes", "hosts", "failed")} for r in raw]
        for path in ("/apps/x/bin/tool0", "/usr/bin/python3.11"):
            got = [{k: v for k, v in r.items() if k != "users"}
                   for r in queries.executable_jobs(rdb, f, 0, path).rows]
            assert got == _raw_executable_jobs(rdb, f, path)
        assert queries.executables(rdb, f, 0).rows  # the filters select something
