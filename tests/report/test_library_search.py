"""The library search (`ogrt report libraries --path`, the dashboard's /libraries?q=) on real
SQLite and PostgreSQL databases written by the real outputs: its uses and per-day counts,
read from the matched library sets' processes once, equal the same reports computed here
from the `process_libraries` view (every (process, library) row, the late ones where the
start set lacks the library) for every --by, with filters, and the one-query form of the
dashboard equals the two reports."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from ogrt.report import queries
from ogrt.report.db import open_db
from tests.report.records import T1, T2

F = queries.Filters
FILTERS = [
    F(),
    F(since=datetime(2026, 11, 20, 10, 0, 1, tzinfo=timezone.utc)),  # cuts a day
    F(until=T2),
    F(since=datetime(2026, 11, 21, tzinfo=timezone.utc), until=datetime(2026, 11, 25, 12, tzinfo=timezone.utc)),
    F(user="alice"),
    F(user="bob", since=T1),
    F(host="node01"),
    F(job="job-2"),
]
#: substrings and globs: start-set libraries, late (dlopen'ed) ones, both, none
PATTERNS = ["libmkl", "libssl", "lib", "*/libc.so.?", "no-such-library"]


def _raw_rows(db: Any, f: queries.Filters, pattern: str, key: str) -> tuple[str, list[Any]]:
    clauses, params = f.where(db.dialect)
    d = db.dialect
    where = [f"l.path {d.ilike} ? ESCAPE '\\'"] + clauses
    return f"""
        SELECT l.path AS library, {key} AS k, p.id AS id, pl.late AS late, p.executable_id AS executable_id,
               COALESCE(p.username, CAST(p.uid AS TEXT)) AS u, p.job_id AS job_id, p.start_time AS start_time
        FROM process_libraries pl JOIN processes p ON p.id = pl.process_id
        JOIN libraries l ON l.id = pl.library_id LEFT JOIN executables e ON e.id = p.executable_id
        WHERE {' AND '.join(where)}""", [queries.library_pattern(pattern)] + params


def _raw_uses(db: Any, f: queries.Filters, pattern: str, by: str) -> list[dict[str, Any]]:
    rows, params = _raw_rows(db, f, pattern, queries.LIBRARY_USE_BY[by][0])
    out = db.query(f"""
        SELECT x.library AS library, x.k AS "{by}", COUNT(*) AS processes, SUM(CASE WHEN x.late THEN 1 ELSE 0 END) AS dlopened,
               COUNT(DISTINCT x.executable_id) AS executables, {db.dialect.list_agg("x.u")} AS users,
               COUNT(DISTINCT x.job_id) AS jobs, MAX(x.start_time) AS last_seen
        FROM ({rows}) x GROUP BY x.library, x.k ORDER BY processes DESC, library, "{by}" """, params)
    for row in out:
        row["users"] = sorted(row["users"].split(",")) if row["users"] else []
    return out


def _raw_daily(db: Any, f: queries.Filters, pattern: str) -> list[dict[str, Any]]:
    rows, params = _raw_rows(db, f, pattern, "e.path")
    day = db.dialect.day("x.start_time")
    return db.query(f"""
        SELECT {day} AS day, COUNT(DISTINCT x.id) AS processes, COUNT(DISTINCT x.job_id) AS jobs
        FROM ({rows}) x WHERE x.start_time IS NOT NULL GROUP BY {day} ORDER BY day""", params)


@pytest.mark.parametrize("f", FILTERS, ids=range(len(FILTERS)))
def test_library_search_equals_the_view(report_db: str, f: queries.Filters) -> None:
    seen = 0
    with open_db(report_db) as db:
        for pattern in PATTERNS:
            daily = _raw_daily(db, f, pattern)
            assert queries.library_daily(db, f, pattern).rows == daily
            for by in queries.LIBRARY_USE_BY:
                uses = _raw_uses(db, f, pattern, by)
                seen += len(uses)
                assert queries.library_users(db, f, 0, pattern, by).rows == uses
                assert queries.library_users(db, f, 1, pattern, by).rows == uses[:1]
                page_uses, page_daily = queries.library_search(db, f, 2, pattern, by)
                assert page_uses.rows == uses[:2] and page_daily.rows == daily
    assert seen  # the filters select some library use


def test_late_libraries_count_as_dlopened(report_db: str) -> None:
    """libssl is in python's end record only: every use of it is a late one."""
    with open_db(report_db) as db:
        rows = queries.library_users(db, F(), 0, "libssl", "executable").rows
    assert rows and all(r["dlopened"] == r["processes"] for r in rows)
