"""What each dashboard page shows: tables (ogrt.report.queries reports) and plot series.

One function per page, `(db, params, show_args) → Page`, used by the HTML view, the CSV and
JSON downloads and benchmarks/web.py alike: the page and its downloads show the same data.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ogrt.report import jobtree, queries
from ogrt.report.db import ReportDB
from ogrt.report.queries import Report
from ogrt.web.params import BadRequest, Params, page_number

OVERVIEW_TOP = 10


@dataclass
class Plot:
    """One time-series chart: x as Unix seconds, one or more named series."""

    id: str
    title: str
    x: list[float]
    series: list[tuple[str, list[float | None]]]
    kind: str = "line"  # line | step

    def data(self) -> dict[str, Any]:
        return {"title": self.title, "kind": self.kind, "x": self.x,
                "series": [{"label": label, "values": values} for label, values in self.series]}


@dataclass
class Page:
    title: str
    tables: dict[str, Report] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    json: Any = None  # the JSON download; None: the rows of the tables
    extra: dict[str, Any] = field(default_factory=dict)
    more: bool = False  # another page of rows exists (paged tables)

    def json_data(self) -> Any:
        if self.json is not None:
            return self.json
        if len(self.tables) == 1:
            return next(iter(self.tables.values())).rows
        return {name: report.rows for name, report in self.tables.items()}

    def table(self, name: str | None) -> Report:
        if name is None:
            return next(iter(self.tables.values()))
        if name not in self.tables:
            raise BadRequest(f"table: must be one of {', '.join(self.tables)}")
        return self.tables[name]


def _epoch(day_or_time: str) -> float:
    text = day_or_time if "T" in day_or_time else day_or_time + "T00:00:00Z"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _daily_plot(pid: str, title: str, report: Report, keys: list[str]) -> Plot:
    x = [_epoch(r["day"]) for r in report.rows]
    return Plot(pid, title, x, [(dict(report.columns)[k], [r[k] for r in report.rows]) for k in keys])


def overview(db: ReportDB, p: Params, show_args: bool) -> Page:
    f, top = p.filters, p.top
    days = queries.daily(db, f)
    page = Page("Overview", {
        "daily": days,
        "executables": queries.top_executables(db, f, top),  # the full table: /executables
        "libraries": queries.libraries(db, f, top),
        "modules": queries.modules(db, f, top),
        "failing": queries.failing(db, f, top),
    })
    if queries.census_exists(db):  # `ogrt census update` ran: the most used packages
        page.tables["software"] = queries.software(db, f, top)
    page.plots = [_daily_plot("processes-per-day", "Processes per day", days, ["processes"]),
                  _daily_plot("jobs-per-day", "Jobs, users and hosts per day", days, ["jobs", "users", "hosts"])]
    return page


def executables(db: ReportDB, p: Params, show_args: bool) -> Page:
    return Page("Executables", {"executables": queries.executables(db, p.filters, p.top, p.get("path"))})


def _paged(report: Report, p: Params) -> tuple[Report, bool]:
    """Rows of page `page` (top rows a page) out of a report run with top × page + 1 rows."""
    start = (page_number(p) - 1) * p.top
    rows = report.rows[start:start + p.top]
    return Report(report.title, report.columns, rows, report.list_columns), len(report.rows) > start + p.top


def executable(db: ReportDB, p: Params, show_args: bool) -> Page:
    path = p.get("path")
    if not path:
        raise BadRequest("path: required (an executable's full path)")
    n = p.top * page_number(p) + 1
    report, more = _paged(queries.executable_jobs(db, p.filters, n, path), p)
    return Page(path, {"jobs": report}, more=more, extra={"path": path})


def libraries(db: ReportDB, p: Params, show_args: bool) -> Page:
    pattern = p.get("q")
    if not pattern:
        return Page("Shared libraries", {"libraries": queries.libraries(db, p.filters, p.top)})
    by = p.get("by") or "executable"
    users, days = queries.library_search(db, p.filters, p.top, pattern, by)
    page = Page(f"Libraries matching {pattern!r}", {"uses": users, "daily": days})
    page.plots = [_daily_plot("library-per-day", "Processes and jobs loading it, per day", days,
                              ["processes", "jobs"])]
    return page


def modules(db: ReportDB, p: Params, show_args: bool) -> Page:
    return Page("Modules", {"modules": queries.modules(db, p.filters, p.top)})


def users(db: ReportDB, p: Params, show_args: bool) -> Page:
    return Page("Users", {"users": queries.users(db, p.filters, p.top)})


def jobs(db: ReportDB, p: Params, show_args: bool) -> Page:
    n = p.top * page_number(p) + 1
    report, more = _paged(queries.jobs(db, p.filters, n), p)
    return Page("Jobs", {"jobs": report}, more=more)


def signatures(db: ReportDB, p: Params, show_args: bool) -> Page:
    return Page("Signatures", {"signatures": queries.signatures(db, p.filters, p.top, p.get("signature"))})


def software(db: ReportDB, p: Params, show_args: bool) -> Page:
    if not queries.census_exists(db):
        return Page("Software", {"software": Report(
            "No software census in this database: run `ogrt census update`", queries.SOFTWARE_COLUMNS, [])})
    pf = queries.PackageFilter(source=p.get("source") or None, name=p.get("name") or None)
    if p.get("unused"):
        return Page("Software no process used", {"unused": queries.software_unused(db, p.filters, p.top, pf)})
    return Page("Software", {"software": queries.software(db, p.filters, p.top, pf)})


def _strip_args(chain: dict[str, Any]) -> dict[str, Any]:
    return {**chain, "images": [{k: v for k, v in img.items() if k != "args"} for img in chain["images"]],
            "children": [_strip_args(c) for c in chain["children"]]}


def _lane(row: dict[str, Any]) -> str:
    rank = row.get("rank")
    return f"{row.get('host') or '?'} rank {rank}" if rank is not None else f"{row.get('host') or '?'}"


def timeline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Start → end bars per node/rank lane, as fractions of the job's time span."""
    spans = []
    for row in rows:
        if not row.get("start_time"):
            continue
        start = _epoch(row["start_time"])
        end = _epoch(row["end_time"]) if row.get("end_time") else start
        spans.append((row, start, max(end, start)))
    if not spans:
        return {"lanes": [], "start": None, "end": None}
    t0 = min(s for _, s, _ in spans)
    t1 = max(e for _, _, e in spans)
    width = (t1 - t0) or 1.0
    lanes: dict[str, list[dict[str, Any]]] = {}
    for row, start, end in spans:
        name = (row.get("exe") or "?").rsplit("/", 1)[-1]
        lanes.setdefault(_lane(row), []).append({
            "x": (start - t0) / width, "w": (end - start) / width, "name": name, "pid": row.get("pid"),
            "failed": bool(row.get("exit_status")), "seconds": round(end - start, 6),
        })
    return {"lanes": [{"label": k, "bars": v} for k, v in sorted(lanes.items())],
            "start": min(r["start_time"] for r, _, _ in spans), "seconds": round(t1 - t0, 6)}


def _running(rows: list[dict[str, Any]]) -> Plot:
    """How many of the job's processes ran at each moment (a step series)."""
    events: list[tuple[float, int]] = []
    for row in rows:
        if row.get("start_time"):
            start = _epoch(row["start_time"])
            events.append((start, 1))
            events.append((_epoch(row["end_time"]) if row.get("end_time") else start, -1))
    events.sort()
    x: list[float] = []
    y: list[float | None] = []
    running = 0
    for t, delta in events:
        running += delta
        if x and x[-1] == t:
            y[-1] = running
        else:
            x.append(t)
            y.append(running)
    return Plot("running", "Processes running", x, [("Running", y)], kind="step")


def job(db: ReportDB, p: Params, show_args: bool, job_id: str = "") -> Page:
    rows = queries.job_processes(db, job_id, p.filters)
    summary = queries.jobs(db, queries.Filters(job=job_id), 1)
    roots = jobtree.build_tree(rows)
    tree_rows = []
    for chain, depth, prefix in jobtree.walk(roots):
        tree_rows.append({
            "process": prefix + chain.label, "host": chain.first.get("host"), "pid": chain.first.get("pid"),
            "ppid": chain.first.get("ppid"), "rank": chain.first.get("rank"), "user": chain.first.get("user"),
            "start_time": chain.start_time, "duration": chain.duration, "exit_status": chain.exit_status,
            "depth": depth, "uuid": chain.last.get("uuid"),
            **({"args": " ".join(map(str, chain.last.get("args") or []))} if show_args else {}),
        })
    columns = [("process", "Process"), ("host", "Host"), ("rank", "Rank"), ("pid", "PID"), ("ppid", "PPID"),
               ("start_time", "Start"), ("duration", "Duration s"), ("exit_status", "Exit")]
    if show_args:
        columns.append(("args", "Arguments"))
    tree = [jobtree.chain_dict(r) for r in roots]
    if not show_args:
        tree = [_strip_args(c) for c in tree]
    page = Page(f"Job {job_id}", {"tree": Report(f"Job {job_id}: {len(rows)} processes", columns, tree_rows)},
                json={"job": job_id, "processes": len(rows), "tree": tree},
                # `header`: the job's summary; a job record (scheduler data) can be added beside it
                extra={"job": job_id, "header": summary.rows[0] if summary.rows else None,
                       "header_columns": summary.columns, "timeline": timeline(rows)})
    page.plots = [_running(rows)]
    return page


PageFunc = Callable[..., Page]


@dataclass(frozen=True)
class Spec:
    """A page: its function, its own query parameters, fixed choices of those, default `top`."""

    func: PageFunc
    allowed: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_top: int = 20


#: URL path (below base_path) → page
PAGES: dict[str, Spec] = {
    "/": Spec(overview, default_top=OVERVIEW_TOP),
    "/executables": Spec(executables, ("path",)),
    "/executable": Spec(executable, ("path", "page"), default_top=50),
    "/libraries": Spec(libraries, ("q", "by"), {"by": tuple(queries.LIBRARY_USE_BY)}),
    "/modules": Spec(modules),
    "/users": Spec(users),
    "/jobs": Spec(jobs, ("page",), default_top=50),
    "/signatures": Spec(signatures, ("signature",)),
    "/software": Spec(software, ("source", "name", "unused"),
                      {"source": ("",) + queries.CENSUS_SOURCES, "unused": ("", "1")}),
}
JOB = Spec(job)  # /jobs/{job_id}
