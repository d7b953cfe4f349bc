"""Query parameters of the dashboard's pages → validated values, or BadRequest saying why.

Every page takes the report filters (since, until, user, host, job), `top` and `format`;
a page declares its own extra parameters. Unknown parameters, repeated parameters and bad
values are refused (400) instead of being ignored, so a shared link never silently shows
something other than what it says.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from ogrt.report.queries import Filters
from ogrt.report.timespec import TimeSpecError, parse_time

FILTERS = ("since", "until", "user", "host", "job")
COMMON = (*FILTERS, "top", "format", "table")
FORMATS = ("html", "json", "csv")
MAX_TEXT = 512
MAX_TOP = 500
MAX_ROWS = 100_000  # top × page: deeper pages need narrower filters
DEFAULT_TOP = 20
MAX_UID = (1 << 32) - 1


class BadRequest(Exception):
    """A query parameter the page refuses: HTTP 400 with this message."""


@dataclass(frozen=True)
class Params:
    filters: Filters
    top: int
    format: str
    table: str | None
    extra: Mapping[str, str] = field(default_factory=dict)
    raw: tuple[tuple[str, str], ...] = ()  # the filter values as given, for links

    def get(self, name: str) -> str | None:
        return self.extra.get(name)

    def query(self, **changes: str | int | None) -> str:
        """This page's query string with some parameters changed (None: removed)."""
        values = dict(self.raw)
        for k, v in changes.items():
            if v is None:
                values.pop(k, None)
            else:
                values[k] = str(v)
        return urlencode(values)

    def filter_query(self) -> str:
        """Only the filters, for links to other pages."""
        return urlencode([(k, v) for k, v in self.raw if k in FILTERS])


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise BadRequest(f"{name}: longer than {MAX_TEXT} characters")
    if not value.isprintable():
        raise BadRequest(f"{name}: control characters are not allowed")
    return value


def _int(name: str, value: str, lo: int, hi: int) -> int:
    if not value.isdigit() or len(value) > 9:
        raise BadRequest(f"{name}: must be a whole number {lo}..{hi}, got {value[:40]!r}")
    number = int(value)
    if not lo <= number <= hi:
        raise BadRequest(f"{name}: must be {lo}..{hi}, got {number}")
    return number


def parse(items: Iterable[tuple[str, str]], allowed: Iterable[str] = (), default_top: int = DEFAULT_TOP,
          choices: Mapping[str, Iterable[str]] | None = None) -> Params:
    """Validate a page's query parameters (`allowed`: the page's own ones besides COMMON)."""
    known = set(COMMON) | set(allowed)
    values: dict[str, str] = {}
    for name, value in items:
        if name not in known:
            raise BadRequest(f"unknown parameter {name[:40]!r} (this page takes: {', '.join(sorted(known))})")
        if name in values:
            raise BadRequest(f"{name}: given more than once")
        values[name] = _text(name, value)
    values = {k: v for k, v in values.items() if v != ""}  # an empty form field: not given
    for name, options in (choices or {}).items():
        options = tuple(options)
        if name in values and values[name] not in options:
            raise BadRequest(f"{name}: must be one of {', '.join(options)}")
    times = {}
    for name in ("since", "until"):
        if name in values:
            try:
                times[name] = parse_time(values[name])
            except (TimeSpecError, ValueError) as exc:
                raise BadRequest(f"{name}: {exc}") from None
            except OverflowError:
                raise BadRequest(f"{name}: {values[name][:40]!r} is out of range") from None
    user = values.get("user")
    if user is not None and user.isdigit() and (len(user) > 10 or int(user) > MAX_UID):
        raise BadRequest(f"user: uid {user[:20]} is out of range")
    fmt = values.get("format", "html")
    if fmt not in FORMATS:
        raise BadRequest(f"format: must be one of {', '.join(FORMATS)}")
    top = _int("top", values["top"], 1, MAX_TOP) if "top" in values else default_top
    filters = Filters(since=times.get("since"), until=times.get("until"), user=user,
                      host=values.get("host"), job=values.get("job"))
    extra = {k: v for k, v in values.items() if k not in COMMON}
    if "page" in extra:
        page = _int("page", extra["page"], 1, MAX_ROWS)
        if page * top > MAX_ROWS:
            raise BadRequest(f"page: {page} is too far ({top} rows a page; at most {MAX_ROWS} rows): "
                             "narrow the filters")
    raw = tuple((k, v) for k, v in values.items() if k != "format")
    return Params(filters, top, fmt, values.get("table"), extra, raw)


def page_number(params: Params) -> int:
    return int(params.extra.get("page", "1"))
