"""Roll up the census's use of each package (census_usage_users/_jobs/_hosts, and per day
census_usage_days) from the processes, incrementally: the settled processes after the last
watermark (census_state 'usage') are added; a changed index or attribution, or a purge, rolls
up everything again.

A process row is settled when it is complete (an executable and an end) or older than
SETTLE (a process that never sent its end record): its packages no longer change. The
software report adds the processes after the watermark itself, so nothing is missed while
they settle. Each step expands its processes into their packages once, as day cells
(ogrt/sql/aggregates.py CENSUS_DAYS: per package, day, user, host, job) in a temporary
table; the four roll-ups are made from those: per (package, day, user, host, job) for the
reports with filters, once per (package, user), (package, job), (package, host) for the
report without (a few rows per package and job instead of one per process and package).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from ogrt.report.db import WriteDB
from ogrt.report.queries import package_uses_sql
from ogrt.sql import aggregates
from ogrt.sql.aggregates import CENSUS_DAYS

SETTLE = timedelta(days=2)
STEP = 200_000  # process ids per transaction
ROLL_UPS = ("census_usage_users", "census_usage_jobs", "census_usage_hosts", CENSUS_DAYS.table)
STEP_CELLS = "ogrt_census_step"  # the temporary table of a step's day cells


def _earliest_first(table: str) -> str:
    return (f"first_use = CASE WHEN {table}.first_use IS NULL OR excluded.first_use < {table}.first_use "
            f"THEN excluded.first_use ELSE {table}.first_use END, "
            f"last_use = CASE WHEN {table}.last_use IS NULL OR excluded.last_use > {table}.last_use "
            f"THEN excluded.last_use ELSE {table}.last_use END")


def _add_range(db: WriteDB, low: int, high: int) -> None:
    """Add the processes with low < id <= high to the roll-ups."""
    dialect = db.dialect.name
    step = replace(CENSUS_DAYS, table=STEP_CELLS)
    db.execute(aggregates.create_table(dialect, step, temp=True))
    db.execute(f"DELETE FROM {STEP_CELLS}")
    uses = package_uses_sql(["p.id > ?", "p.id <= ?"])
    db.execute(aggregates.build_sql(dialect, step, f"({uses}) r"), (low, high) * 3)
    cols = ", ".join(CENSUS_DAYS.columns)
    # WHERE: SQLite would read the ON of ON CONFLICT as a join's
    db.execute(f"INSERT INTO {CENSUS_DAYS.table} ({cols}) SELECT {cols} FROM {STEP_CELLS} WHERE 1 = 1 "
               f"{aggregates.upsert_tail(dialect, CENSUS_DAYS)}")
    db.execute(f"""INSERT INTO census_usage_users (package_id, uid, processes, first_use, last_use)
        SELECT s.package_id, s.uid, SUM(s.processes), MIN(s.first_start), MAX(s.last_start)
        FROM {STEP_CELLS} s GROUP BY s.package_id, s.uid
        ON CONFLICT (package_id, uid) DO UPDATE SET
            processes = census_usage_users.processes + excluded.processes,
            {_earliest_first("census_usage_users")}""")
    for table, col in (("census_usage_jobs", "job_id"), ("census_usage_hosts", "host")):
        db.execute(f"""INSERT INTO {table} (package_id, {col})
            SELECT DISTINCT s.package_id, s.{col} FROM {STEP_CELLS} s
            WHERE s.{col} <> {aggregates.SENTINEL[col]} ON CONFLICT DO NOTHING""")


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
            for table in ROLL_UPS:
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
    if start < high and db.dialect.name == "postgresql":
        # the planner's row counts of the roll-ups (autovacuum may come later): the report's
        # plans depend on them (a day range estimated at 7% of its rows sorted on disk)
        db.execute(f"ANALYZE {', '.join(ROLL_UPS)}")
    return start, high


def _set(db: WriteDB, value: int) -> None:
    db.execute("INSERT INTO census_state (name, value) VALUES ('usage', ?) "
               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (value,))
