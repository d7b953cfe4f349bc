"""Parse the --since / --until values of `ogrt report`.

Accepted forms:
  - relative, counted back from now: `90s`, `30m`, `12h`, `7d`, `2w`
  - an ISO date `2026-11-25` (midnight) or date-time `2026-11-25T12:00[:00[.ffffff]]`
    (a space may replace the `T`), with an optional `Z` or `+HH:MM` offset.
    Times without an offset are UTC, like every time OGRT prints.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TimeSpecError(ValueError):
    """A --since/--until value in none of the accepted forms."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Return an aware UTC datetime for `text` (see the module doc for the forms)."""
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.match(text)
    if match:
        amount = float(match.group(1)) * _UNITS[match.group(2)]
        return now - timedelta(seconds=amount)
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is not a time: use e.g. 7d, 12h, 30m, 2026-11-25 or 2026-11-25T12:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def to_rfc3339(moment: datetime) -> str:
    """The text form OGRT stores in SQLite: `2026-11-25T12:00:00.000001Z`."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}Z"
