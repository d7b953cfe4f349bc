"""The main reports use the schema's indices (SQLite EXPLAIN QUERY PLAN)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ogrt.report import queries as q
from ogrt.report.db import open_sqlite

F = q.Filters
SINCE = datetime(2026, 11, 24, tzinfo=timezone.utc)

CASES = {
    "executables --job": (lambda db: q.executables_sql(db, F(job="job-2"), 20), "processes_job_id"),
    "executables --since": (lambda db: q.executables_sql(db, F(since=SINCE), 20), "processes_start_time"),
    # the per-day cells (ogrt/sql/aggregates.py), not the process rows
    "executables --host": (lambda db: q.executables_sql(db, F(host="node01"), 20), "usage_executables"),
    "executables --user UID": (lambda db: q.executables_sql(db, F(user="1002"), 20), "usage_executables"),
    "libraries": (lambda db: q.libraries_sql(db, F(), 20), "COVERING INDEX processes_libset"),
    "libraries --since": (lambda db: q.libraries_sql(db, F(since=SINCE), 20), "processes_start_time"),
    "libraries --path": (lambda db: q.library_users_sql(db, F(), 20, "mkl", "executable"),
                         "libset_members_library"),
    "modules": (lambda db: q.modules_sql(db, F(), 20), "usage_modsets"),
    "signatures --signature": (lambda db: q.signatures_sql(db, F(), 20, "x"), "libraries_signature"),
    "jobs --since": (lambda db: q.jobs_sql(db, F(since=SINCE), 20), "processes_start_time"),
    "job": (lambda db: q.job_sql(db, "job-1", F()), "processes_job_id"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_query_plan_uses_index(sqlite_db: str, name: str) -> None:
    build, index = CASES[name]
    with open_sqlite(sqlite_db) as db:
        plan = "\n".join(db.explain(*build(db)))
    assert index in plan, plan
    # the large tables are never scanned whole when a filter has an index
    if name not in ("libraries", "modules", "libraries --path"):
        assert "SCAN p\n" not in plan + "\n" and "SCAN pl\n" not in plan + "\n", plan
