"""Ages for retention (`ogrt purge --older-than`, `[retention] max_age`).

A whole number and one unit: `d` (days), `w` (weeks), `m` (calendar months) or `y`
(calendar years), e.g. "400d", "18m". `m` is months, never minutes: there is no unit below
a day, and a number without a unit is refused (ambiguous).
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

__all__ = ["Age", "parse_age"]

_AGE_RE = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$")
_MAX_DAYS = 1000 * 366


@dataclass(frozen=True)
class Age:
    """An age: a number of days or of calendar months."""

    days: int = 0
    months: int = 0
    text: str = ""

    def cutoff(self, now: datetime | None = None) -> datetime:
        """`now` (UTC) minus this age; a month back from the 31st is the month's last day."""
        now = now or datetime.now(timezone.utc)
        if self.months:
            total = now.year * 12 + now.month - 1 - self.months
            year, month = divmod(total, 12)
            day = min(now.day, calendar.monthrange(year, month + 1)[1])
            now = now.replace(year=year, month=month + 1, day=day)
        return now - timedelta(days=self.days)


def parse_age(text: str) -> Age:
    """ "400d", "2w", "18m", "1y" → Age; ValueError says why not."""
    m = _AGE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an age: a whole number and a unit, d (days), w (weeks), "
                         "m (months) or y (years), e.g. \"400d\" or \"18m\" (m is months, not minutes)")
    n, unit = int(m.group(1)), m.group(2)
    if n < 1:
        raise ValueError(f"{text!r}: an age must be at least 1{unit}")
    if unit in "my":
        months = n * (12 if unit == "y" else 1)
        if months > 12 * 1000:
            raise ValueError(f"{text!r}: more than 1000 years")
        return Age(months=months, text=text.strip())
    days = n * (7 if unit == "w" else 1)
    if days > _MAX_DAYS:
        raise ValueError(f"{text!r}: more than 1000 years")
    return Age(days=days, text=text.strip())
