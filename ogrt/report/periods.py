"""A report period over per-day cells: the whole UTC days it covers and the rows of the days
it cuts. Reports over cells keyed by day (the usage aggregates, ogrt/sql/aggregates.py; the
census's per-day roll-up, census_usage_days) read the whole days [lo, hi) from the cells and
the rows of [since, lo) and [hi, until) from `processes`: their sum equals the report over
the rows of [since, until). One place for the reports (`cells_sql`, the software report).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ogrt.report.db import Dialect


def midnight(moment: datetime) -> bool:
    u = moment.astimezone(timezone.utc)
    return (u.hour, u.minute, u.second, u.microsecond) == (0, 0, 0, 0)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Period:
    """--since/--until (on the process start time; until exclusive)."""

    since: datetime | None = None
    until: datetime | None = None

    @property
    def timed(self) -> bool:
        """Whether the period is not all time."""
        return self.since is not None or self.until is not None

    @property
    def lo(self) -> date | None:
        """The first whole day (None: unbounded)."""
        if self.since is None:
            return None
        since = self.since.astimezone(timezone.utc)
        return since.date() if midnight(since) else since.date() + timedelta(days=1)

    @property
    def hi(self) -> date | None:
        """The day after the last whole day (None: unbounded)."""
        return None if self.until is None else self.until.astimezone(timezone.utc).date()

    @property
    def whole_days(self) -> bool:
        """Whether the period covers a whole day (the cells have a part)."""
        lo, hi = self.lo, self.hi
        return lo is None or hi is None or lo < hi

    def day_clauses(self, column: str) -> tuple[list[str], list[Any]]:
        """The cells of the whole days, by their day column (YYYY-MM-DD; '' unknown)."""
        clauses = [f"{column} <> ''"] if self.timed else []
        params: list[Any] = []
        for day, op in ((self.lo, ">="), (self.hi, "<")):
            if day is not None:
                clauses.append(f"{column} {op} ?")
                params.append(day.isoformat())
        return clauses, params

    def edge(self, dialect: Dialect, alias: str) -> tuple[str, list[Any]]:
        """The process rows `alias` outside the whole days (with the period's own clauses:
        the rows of the cut days): a clause and its parameters; every row when the period
        covers no whole day."""
        lo, hi = self.lo, self.hi
        if not self.whole_days:
            return "1 = 1", []  # within one day: every row of the range
        edges, params = [], []
        if lo is not None:
            edges.append(f"{alias}.start_time < ?")
            params.append(dialect.time_param(day_start(lo)))
        if hi is not None:
            edges.append(f"{alias}.start_time >= ?")
            params.append(dialect.time_param(day_start(hi)))
        return (f"({' OR '.join(edges)})" if edges else "1 = 0"), params
