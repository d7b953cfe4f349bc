"""Roll up the census's use of each package (census_usage_users/_jobs/_hosts) from the
processes, incrementally: the settled processes after the last watermark (census_state
'usage') are added; a changed index or attribution, or a purge, rolls up everything again.

A process row is settled when it is complete (an executable and an end) or older than
SETTLE (a process that never sent its end record): its packages no longer change. The
software report adds the processes after the watermark itself, so nothing is missed while
they settle. Counted once per (package, user), (package, job), (package, host): the report
reads a few rows per package and job instead of one per process and package.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ogrt.report.db import WriteDB
from ogrt.report.queries import package_uses_sql

SETTLE = timedelta(days=2)
STEP = 200_000  # process ids per transaction


def _earliest_first(table: str) -> str:
    return (f"first_use = CASE WHEN {table}.first_use IS NULL OR excluded.first_use < {table}.first_use "
            f"THEN excluded.first_use ELSE {table}.first_use END, "
            f"last_use = CASE WHEN {table}.last_use IS NULL OR excluded.last_use > {table}.last_use "
            f"THEN excluded.last_use ELSE {table}.last_use END")


def _add_range(db: WriteDB, low: int, high: int) -> None:
    """Add the processes with low < id <= high to the roll-ups."""
    uses = package_uses_sql(["p.id > ?", "p.id <= ?"])
    params = (low, high) * 3
    db.execute(f"""INSERT INTO census_usage_users (package_id, uid, processes, first_use, last_use)
        SELECT u.package_id, COALESCE(u.uid, -1), COUNT(*), MIN(u.start_time), MAX(u.start_time)
        FROM ({uses}) u GROUP BY u.package_id, COALESCE(u.uid, -1)
        ON CONFLICT (package_id, uid) DO UPDATE SET
            processes = census_usage_users.processes + excluded.processes,
            {_earliest_first("census_usage_users")}""", params)
    for table, col in (("census_usage_jobs", "job_id"), ("census_usage_hosts", "host")):
        db.execute(f"""INSERT INTO {table} (package_id, {col})
            SELECT DISTINCT u.package_id, u.{col} FROM ({uses}) u WHERE u.{col} IS NOT NULL
            ON CONFLICT DO NOTHING""", params)


def settled_until(db: WriteDB, low: int, now: datetime) -> int:
    """The highest id up to which every process row after `low` is settled."""
    top = db.execute("SELECT COALESCE(MAX(id), 0) FROM processes").fetchone()[0]
    old = db.dialect.time_param(now - SETTLE)
    row = db.execute("SELECT MIN(p.id) FROM processes p WHERE p.id > ? "
                     "AND (p.executable_id IS NULL OR p.end_time IS NULL) "
                     "AND (COALESCE(p.start_time, p.end_time) IS NULL OR COALESCE(p.start_time, p.end_time) > ?)",
                     (low, old)).fetchone()
    return top if row[0] is None else row[0] - 1


def roll_up(db: WriteDB, everything: bool, now: datetime | None = None) -> tuple[int, int]:
    """Bring the roll-ups up to date; (first id added, last id added)."""
    now = now or datetime.now(timezone.utc)
    state = dict(db.execute("SELECT name, value FROM census_state").fetchall())
    low = 0 if everything else state.get("usage", 0)
    if everything or "usage" not in state:
        low = 0
        with db.transaction():
            for table in ("census_usage_users", "census_usage_jobs", "census_usage_hosts"):
                db.execute(f"DELETE FROM {table}")
            _set(db, 0)
    high = settled_until(db, low, now)
    start = low
    while low < high:
        step = min(high, low + STEP)
        with db.transaction():
            _add_range(db, low, step)
            _set(db, step)
        low = step
    return start, high


def _set(db: WriteDB, value: int) -> None:
    db.execute("INSERT INTO census_state (name, value) VALUES ('usage', ?) "
               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (value,))
