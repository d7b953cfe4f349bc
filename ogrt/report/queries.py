"""One parameterized SQL per report, written once for SQLite and PostgreSQL.

Dialect differences (placeholders, list aggregation, case-insensitive LIKE, time
parameters) go through `ogrt.report.db.Dialect`. Every value from the command line is
a bound parameter; only fixed SQL fragments chosen from this file are interpolated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ogrt.report.db import Dialect, ReportDB, ReportError
from ogrt.report.periods import Period
from ogrt.sql import aggregates
from ogrt.sql.aggregates import USAGE_DAYS, USAGE_EXECUTABLES, USAGE_MODSETS, Aggregate


@dataclass(frozen=True)
class Filters:
    """--since/--until (on the process start time; until is exclusive), --user, --host, --job."""

    since: datetime | None = None
    until: datetime | None = None
    user: str | None = None  # a user name, or a numeric uid
    host: str | None = None
    job: str | None = None

    def where(self, dialect: Dialect, alias: str = "p") -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            clauses.append(f"{alias}.start_time >= ?")
            params.append(dialect.time_param(self.since))
        if self.until is not None:
            clauses.append(f"{alias}.start_time < ?")
            params.append(dialect.time_param(self.until))
        if self.user is not None:
            if self.user.isdigit():
                clauses.append(f"{alias}.uid = ?")
                params.append(int(self.user))
            else:
                clauses.append(f"{alias}.username = ?")
                params.append(self.user)
        if self.host is not None:
            clauses.append(f"{alias}.host = ?")
            params.append(self.host)
        if self.job is not None:
            clauses.append(f"{alias}.job_id = ?")
            params.append(self.job)
        return clauses, params

    def selects(self, dialect: Dialect, column: str = "p.id") -> tuple[list[str], list[Any]]:
        """The filters as one `column IN (SELECT id ...)` clause (none when empty).

        Selecting the ids first lets the database drive the report from the filter's own
        index (start_time, job_id, host, uid) and join the rest by primary key; with a plain
        join SQLite often prefers scanning the whole join table (measured: 4x-15x slower).
        """
        clauses, params = self.where(dialect, "fp")
        if not clauses:
            return [], []
        return [f"{column} IN (SELECT fp.id FROM processes fp WHERE {' AND '.join(clauses)})"], params

    def cell_where(self, table: str) -> tuple[list[str], list[Any]]:
        """--user and --host over the key columns of day cells (`table`: its alias)."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.user is not None:
            clauses.append(f"{table}.uid = ?" if self.user.isdigit() else f"{table}.username = ?")
            params.append(int(self.user) if self.user.isdigit() else self.user)
        if self.host is not None:
            clauses.append(f"{table}.host = ?")
            params.append(self.host)
        return clauses, params

    @property
    def period(self) -> Period:
        return Period(self.since, self.until)

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.since, self.until, self.user, self.host, self.job))


@dataclass
class Report:
    """What a report returns: a title, ordered columns (key, header) and rows of dicts."""

    title: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]
    list_columns: tuple[str, ...] = ()  # comma-joined lists: arrays in JSON
    extra: dict[str, Any] = field(default_factory=dict)


def _where(clauses: list[str]) -> str:
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


def _limit(top: int) -> tuple[str, list[Any]]:
    return ("LIMIT ?", [top]) if top and top > 0 else ("", [])


def _split_lists(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    for row in rows:
        for key in keys:
            value = row.get(key)
            row[key] = sorted(value.split(",")) if value else []


@dataclass(frozen=True)
class Only:
    """Cells restricted to those whose key `column` is `IN (subquery)`: pushed into each part
    of `cells_sql` (a UNION ALL the planners do not push a join's condition into)."""

    column: str
    subquery: str
    params: list[Any] = field(default_factory=list)

    def clause(self, dialect: str, alias: str, raw: bool) -> str:
        value = aggregates.expr(dialect, self.column, alias) if raw else f"{alias}.{self.column}"
        return f"{value} IN ({self.subquery})"


def cells_sql(db: ReportDB, agg: Aggregate, f: Filters, only: Only | None = None) -> tuple[str, list[Any]]:
    """The cells of an aggregate table (ogrt/sql/aggregates.py) that the filters select, as
    a subquery `c` with the table's columns: whole UTC days from the table, the processes of
    a day the time range cuts (since/until not at midnight) as cells of one process each
    (ogrt/report/periods.py). Every filter is a key of every cell, so reports over `c` equal
    reports over the rows. A job's processes are few: with --job every cell is one of its
    process rows."""
    d = dialect = db.dialect
    t = agg.table
    raw = ", ".join(f"{aggregates.expr(dialect.name, c, 'r')} AS {c}" for c in agg.columns)
    oraw, oparams = ([only.clause(d.name, "r", True)], only.params) if only else ([], [])
    if f.job is not None:  # a job's processes, by the processes_job_id index
        rclauses, rparams = f.where(d, "r")
        return f"(SELECT {raw} FROM processes r {_where(rclauses + oraw)}) c", rparams + oparams
    clauses, params = f.cell_where(t)
    if only is not None:
        clauses.append(only.clause(d.name, t, False))
        params += only.params
    cols = ", ".join(f"{t}.{c}" for c in agg.columns)
    period = f.period
    if not period.timed:
        return f"(SELECT {cols} FROM {t} {_where(clauses)}) c", params
    parts, out_params = [], []
    if period.whole_days:
        days, dparams = period.day_clauses(f"{t}.day")
        parts.append(f"SELECT {cols} FROM {t} {_where(days + clauses)}")
        out_params += dparams + params
    rclauses, rparams = f.where(d, "r")
    edge, eparams = period.edge(d, "r")
    parts.append(f"SELECT {raw} FROM processes r {_where(rclauses + [edge] + oraw)}")
    out_params += rparams + eparams + oparams
    return "(" + " UNION ALL ".join(parts) + ") c", out_params


def _distinct(column: str) -> str:
    """COUNT(DISTINCT) of a key column of the cells `c`, its NULL sentinel not counted (cheaper
    than counting NULLIF(column, sentinel): no function call per cell)."""
    return (f"(COUNT(DISTINCT c.{column}) - "
            f"MAX(CASE WHEN c.{column} = {aggregates.SENTINEL[column]} THEN 1 ELSE 0 END))")


def _nonnull(column: str) -> str:
    """A key column of the cells `c` with its NULL sentinel as NULL again."""
    return f"NULLIF(c.{column}, {aggregates.SENTINEL[column]})"


BACKSLASH = "\\"
CPU = "COALESCE(p.utime, 0) + COALESCE(p.stime, 0)"
FAILED = "CASE WHEN p.exit_status IS NOT NULL AND p.exit_status <> 0 THEN 1 ELSE 0 END"


#: the sums of the executables report over the cells `c` (and of a ranked path `x`)
EXE_SUMS = {"cpu_seconds": "SUM({}.cpu_seconds)", "failed": "SUM({}.failed)", "last_run": "MAX({}.last_start)"}


def executables_sql(db: ReportDB, f: Filters, top: int, pattern: str | None = None) -> tuple[str, list[Any]]:
    """The paths ranked by runs first (sums only: cheap, and they add up over the ids of one
    path), then the distinct users, hosts and jobs of the `top` paths shown only, from their
    cells (the cells' primary key starts with the executable id). Over 1,000,000 processes
    the top 20 paths hold ~28% of the cells: distinct counts were most of the time.
    CPU s, failed and last run: on SQLite from the shown cells too (a WITHOUT ROWID table:
    every column is in the key's b-tree), on PostgreSQL with the ranking (the shown cells are
    read from the key's index alone; their other columns would be a heap read each)."""
    wide = db.dialect.name == "sqlite"
    ranked, params = top_executables_sql(db, f, top, pattern, sums=not wide)
    shown = Only("executable_id", "SELECT s.id FROM executables s WHERE s.path IN (SELECT r.executable FROM ranked r)")
    cells, cparams = cells_sql(db, USAGE_EXECUTABLES, f, shown)
    sums = ", ".join(f"{'d' if wide else 't'}.{c} AS {c}" for c in EXE_SUMS)
    dsums = "".join(f", {v.format('c')} AS {c}" for c, v in EXE_SUMS.items()) if wide else ""
    # executables first (CROSS JOIN: SQLite keeps that order): the cells arrive in path order,
    # grouped without a sort
    sql = f"""
        WITH ranked AS ({ranked})
        SELECT t.executable AS executable, t.runs AS runs, d.users AS users, d.hosts AS hosts,
               d.jobs AS jobs, {sums},
               ({exe_packages_sql(db, "ce.executable_id IN (SELECT xe.id FROM executables xe "
                                      "WHERE xe.path = t.executable)")}) AS package
        FROM ranked t
        JOIN (SELECT e.path AS executable, {_distinct("uid")} AS users, {_distinct("host")} AS hosts,
                     {_distinct("job_id")} AS jobs{dsums}
              FROM executables e CROSS JOIN {cells}
              WHERE e.id = c.executable_id AND e.path IN (SELECT r.executable FROM ranked r)
              GROUP BY e.path) d ON d.executable = t.executable
        ORDER BY t.runs DESC, t.executable"""
    return sql, params + cparams


def package_label(alias: str = "k") -> str:
    """How a report names a package of the census: name@version (name alone without one)."""
    return (f"{alias}.name || CASE WHEN {alias}.version <> '' THEN '@' || {alias}.version ELSE '' END")


def exe_packages_sql(db: ReportDB, where: str) -> str:
    """A scalar subquery: the census packages (name@version, ','-joined) of the executables
    `where` selects (over census_executables `ce`)."""
    return (f"SELECT {db.dialect.list_agg(package_label())} FROM census_executables ce "
            f"JOIN census_packages k ON k.id = ce.package_id WHERE {where}")


def executables(db: ReportDB, f: Filters, top: int, pattern: str | None = None) -> Report:
    rows = db.query(*executables_sql(db, f, top, pattern))
    for row in rows:
        row["cpu_seconds"] = round(float(row["cpu_seconds"] or 0.0), 3)
    return Report(
        "Executables",
        [("executable", "Executable"), ("package", "Package"), ("runs", "Runs"), ("users", "Users"),
         ("hosts", "Hosts"), ("jobs", "Jobs"), ("cpu_seconds", "CPU s"), ("failed", "Failed"),
         ("last_run", "Last run")],
        rows,
    )


def library_pattern(pattern: str) -> str:
    """A --path value (libraries, executables) as a LIKE pattern (escape char `\\`).

    Without `*` or `?` it matches anywhere in the path (`libmkl`); with them it is a
    glob over the whole path (`*/libmkl_core.so*`).
    """
    out = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    like = "".join(out)
    if "*" not in pattern and "?" not in pattern:
        like = f"%{like}%"
    return like


#: the late half of the process_libraries view: a library of the late set (from the end
#: record) that is not also in the start set (ogrt/sql/*.sql)
NOT_AT_START = ("NOT EXISTS (SELECT 1 FROM libset_members s0 "
                "WHERE s0.libset_id = p.libset_id AND s0.library_id = m.library_id)")


def library_uses(columns: str, lib_from: str, lib_clauses: list[str], clauses: list[str]) -> str:
    """One row per (process, library it loaded), like the `process_libraries` view, with
    `columns` (over `lib_from`'s libraries `l`, m = libset_members, p = processes,
    e = executables) and a `late` column (0/1): the view's two halves written out so the
    libraries matched first drive the query, libset_members (library_id) → processes
    (libset_id), instead of the whole view being built. Its parameters: the ones of
    `lib_clauses + clauses`, twice."""
    halves = []
    for late, col, extra in ((0, "libset_id", []),
                             (1, "late_libset_id", ["p.late_libset_id IS NOT NULL", NOT_AT_START])):
        halves.append(f"""
            SELECT {columns}, {late} AS late
            FROM {lib_from}
            JOIN libset_members m ON m.library_id = l.id
            JOIN processes p ON p.{col} = m.libset_id
            LEFT JOIN executables e ON e.id = p.executable_id
            {_where(lib_clauses + extra + clauses)}""")
    return "\n            UNION ALL".join(halves)


def libraries_sql(db: ReportDB, f: Filters, top: int) -> tuple[str, list[Any]]:
    clauses, params = f.selects(db.dialect)
    limit, lparams = _limit(top)
    # the processes are counted per library set first (the processes_libset index alone
    # without filters), then spread over the sets' members: no row per (process, library)
    inner = f"""
        SELECT m.library_id, SUM(c.n) AS n
        FROM (SELECT p.libset_id, COUNT(*) AS n FROM processes p
              {_where(["p.libset_id IS NOT NULL"] + clauses)}
              GROUP BY p.libset_id) c
        JOIN libset_members m ON m.libset_id = c.libset_id
        GROUP BY m.library_id
        UNION ALL
        SELECT m.library_id, COUNT(*) AS n
        FROM processes p JOIN libset_members m ON m.libset_id = p.late_libset_id
        {_where(["p.late_libset_id IS NOT NULL", NOT_AT_START] + clauses)}
        GROUP BY m.library_id"""
    sql = f"""
        SELECT l.path AS library, SUM(c.n) AS processes,
               SUM(CASE WHEN l.signature <> '' THEN c.n ELSE 0 END) AS stamped
        FROM ({inner}) c JOIN libraries l ON l.id = c.library_id
        GROUP BY l.path
        ORDER BY processes DESC, library
        {limit}"""
    return sql, params + params + lparams


def libraries(db: ReportDB, f: Filters, top: int) -> Report:
    rows = db.query(*libraries_sql(db, f, top))
    return Report(
        "Shared libraries",
        [("library", "Library"), ("processes", "Processes"), ("stamped", "Stamped")],
        rows,
    )


#: --by of `libraries --path`: the SQL expression and column header of each grouping
LIBRARY_USE_BY = {
    "executable": ("e.path", "Executable"),
    "user": ("COALESCE(p.username, CAST(p.uid AS TEXT))", "User"),
    "job": ("p.job_id", "Job"),
    "host": ("p.host", "Host"),
}


def _library_hits(db: ReportDB, f: Filters, pattern: str, by: str) -> tuple[str, list[Any]]:
    """Two CTEs: `procs`, one row per process that loaded a library matching `pattern` (its
    start set holds one, or its late set: `late` 1, `set_id` the set that matched), each
    process row read once (the rows are the cost: ~50,000 scattered rows for libmkl over
    1,000,000 processes; not once per matched library); `hits`, one row per (process, matched
    library it loaded), the `process_libraries` view's rows: a library of the late set only
    where the start set lacks it."""
    if by not in LIBRARY_USE_BY:
        raise ReportError(f"--by must be one of {', '.join(LIBRARY_USE_BY)}")
    clauses, params = f.selects(db.dialect)
    like = library_pattern(pattern)
    matched = f"SELECT ml.id FROM libraries ml WHERE ml.path {db.dialect.ilike} ? ESCAPE '{BACKSLASH}'"
    sets = f"SELECT ms.libset_id FROM libset_members ms WHERE ms.library_id IN ({matched})"
    cols = (f"p.id AS id, p.libset_id AS start_set, {LIBRARY_USE_BY[by][0]} AS k, "
            "p.executable_id AS executable_id, COALESCE(p.username, CAST(p.uid AS TEXT)) AS u, "
            "p.job_id AS job_id, p.start_time AS start_time")
    halves = [f"""
            SELECT {cols}, p.{col} AS set_id, {late} AS late
            FROM processes p LEFT JOIN executables e ON e.id = p.executable_id
            {_where([f"p.{col} IN ({sets})"] + clauses)}"""
              for late, col in ((0, "libset_id"), (1, "late_libset_id"))]
    sql = f"""
        WITH procs AS ({" UNION ALL".join(halves)}),
        hits AS (
            SELECT x.id AS id, x.k AS k, x.executable_id AS executable_id, x.u AS u, x.job_id AS job_id,
                   x.start_time AS start_time, x.late AS late, l.path AS library
            FROM procs x
            JOIN libset_members m ON m.libset_id = x.set_id
            JOIN libraries l ON l.id = m.library_id
            WHERE m.library_id IN ({matched})
              AND (x.late = 0 OR NOT EXISTS (SELECT 1 FROM libset_members s0
                                             WHERE s0.libset_id = x.start_set AND s0.library_id = m.library_id)))"""
    return sql, [like] + params + [like] + params + [like]


def _library_uses_part(db: ReportDB, top: int) -> tuple[str, list[Any]]:
    """Per (library, --by key) over `hits`: the rows of `libraries --path`, most used first."""
    limit, lparams = _limit(top)
    return f"""
        SELECT x.library AS library, x.k AS k, COUNT(*) AS processes, SUM(x.late) AS dlopened,
               COUNT(DISTINCT x.executable_id) AS executables, {db.dialect.list_agg("x.u")} AS users,
               COUNT(DISTINCT x.job_id) AS jobs, MAX(x.start_time) AS last_seen
        FROM hits x
        GROUP BY x.library, x.k
        ORDER BY processes DESC, library, k
        {limit}""", lparams


def _library_daily_part(db: ReportDB) -> str:
    """Per UTC day over `procs`: the processes and jobs that loaded a matching library (a
    process in both halves counted once)."""
    day = db.dialect.day("x.start_time")
    return f"""
        SELECT {day} AS day, COUNT(DISTINCT x.id) AS processes, COUNT(DISTINCT x.job_id) AS jobs
        FROM procs x
        WHERE x.start_time IS NOT NULL
        GROUP BY {day}"""


def _uses_report(rows: list[dict[str, Any]], pattern: str, by: str) -> Report:
    for row in rows:
        row[by] = row.pop("k")
    _split_lists(rows, ("users",))
    return Report(
        f"Processes loading a library matching {pattern!r}, by {by}",
        [("library", "Library"), (by, LIBRARY_USE_BY[by][1]), ("processes", "Processes"),
         ("dlopened", "dlopen'ed"), ("executables", "Executables"), ("users", "Users"),
         ("jobs", "Jobs"), ("last_seen", "Last seen")],
        [{k: r[k] for k in ("library", by, "processes", "dlopened", "executables", "users", "jobs",
                            "last_seen")} for r in rows],
        list_columns=("users",),
    )


def _daily_report(rows: list[dict[str, Any]], pattern: str) -> Report:
    return Report(
        f"Processes loading a library matching {pattern!r}, per day (UTC)",
        [("day", "Day"), ("processes", "Processes"), ("jobs", "Jobs")],
        [{k: r[k] for k in ("day", "processes", "jobs")} for r in rows],
    )


def library_users_sql(db: ReportDB, f: Filters, top: int, pattern: str, by: str) -> tuple[str, list[Any]]:
    hits, params = _library_hits(db, f, pattern, by)
    part, lparams = _library_uses_part(db, top)
    return f"{hits} {part}", params + lparams


def library_users(db: ReportDB, f: Filters, top: int, pattern: str, by: str = "executable") -> Report:
    return _uses_report(db.query(*library_users_sql(db, f, top, pattern, by)), pattern, by)


def library_daily_sql(db: ReportDB, f: Filters, pattern: str) -> tuple[str, list[Any]]:
    hits, params = _library_hits(db, f, pattern, "executable")
    return f"{hits} {_library_daily_part(db)} ORDER BY day", params


def library_daily(db: ReportDB, f: Filters, pattern: str) -> Report:
    """Per UTC day: processes and jobs that loaded a library matching `pattern`."""
    return _daily_report(db.query(*library_daily_sql(db, f, pattern)), pattern)


def library_search_sql(db: ReportDB, f: Filters, top: int, pattern: str, by: str) -> tuple[str, list[Any]]:
    """The uses (part 'uses') and the per-day counts (part 'daily') in one statement over one
    read of the process rows: `procs` is referenced twice, so both databases materialize it."""
    hits, params = _library_hits(db, f, pattern, by)
    uses, lparams = _library_uses_part(db, top)
    sql = f"""
        {hits}
        SELECT 'daily' AS part, NULL AS library, NULL AS k, d.processes AS processes, NULL AS dlopened,
               NULL AS executables, NULL AS users, d.jobs AS jobs, NULL AS last_seen, d.day AS day
        FROM ({_library_daily_part(db)}) d
        UNION ALL
        SELECT 'uses', u.library, u.k, u.processes, u.dlopened, u.executables, u.users, u.jobs,
               u.last_seen, NULL
        FROM ({uses}) u
        ORDER BY part, day, processes DESC, library, k"""
    return sql, params + lparams


def library_search(db: ReportDB, f: Filters, top: int, pattern: str, by: str = "executable") -> tuple[Report, Report]:
    """`library_users` and `library_daily` (the dashboard's library search) from one query."""
    rows = db.query(*library_search_sql(db, f, top, pattern, by))
    return (_uses_report([r for r in rows if r["part"] == "uses"], pattern, by),
            _daily_report([r for r in rows if r["part"] == "daily"], pattern))


def modules_sql(db: ReportDB, f: Filters, top: int) -> tuple[str, list[Any]]:
    cells, params = cells_sql(db, USAGE_MODSETS, f)
    limit, lparams = _limit(top)
    # grouped by module_id (names are unique): integer keys sort and hash cheaper than names
    sql = f"""
        SELECT m.name AS module, a.processes, a.users, a.jobs, a.last_used
        FROM (SELECT mm.module_id, SUM(c.processes) AS processes,
                     {_distinct("uid")} AS users,
                     {_distinct("job_id")} AS jobs,
                     MAX(c.last_start) AS last_used
              FROM {cells} JOIN modset_members mm ON mm.modset_id = c.modset_id
              GROUP BY mm.module_id) a
        JOIN modules m ON m.id = a.module_id
        ORDER BY a.processes DESC, module
        {limit}"""
    return sql, params + lparams


def modules(db: ReportDB, f: Filters, top: int) -> Report:
    rows = db.query(*modules_sql(db, f, top))
    return Report(
        "Modules loaded by processes",
        [("module", "Module"), ("processes", "Processes"), ("users", "Users"), ("jobs", "Jobs"),
         ("last_used", "Last used")],
        rows,
    )


def users_sql(db: ReportDB, f: Filters, top: int) -> tuple[str, list[Any]]:
    """Per uid from the small per-day cells, ranked by processes; then the distinct
    executables of the `top` users shown only, from their executable cells."""
    days, dparams = cells_sql(db, USAGE_DAYS, f)
    shown = Only("uid", "SELECT r.key FROM ranked r")
    exes, eparams = cells_sql(db, USAGE_EXECUTABLES, f, shown)
    limit, lparams = _limit(top)
    sql = f"""
        WITH ranked AS (
            SELECT c.uid AS key,
                   COALESCE(MAX(NULLIF(c.username, '')), CAST({_nonnull("uid")} AS TEXT)) AS "user",
                   {_nonnull("uid")} AS uid,
                   SUM(c.processes) AS processes,
                   {_distinct("job_id")} AS jobs,
                   {_distinct("host")} AS hosts,
                   SUM(c.cpu_seconds) AS cpu_seconds,
                   SUM(c.failed) AS failed,
                   MAX(c.last_start) AS last_seen
            FROM {days}
            GROUP BY c.uid
            ORDER BY processes DESC, uid
            {limit})
        SELECT r."user" AS "user", r.uid AS uid, r.processes AS processes, r.jobs AS jobs,
               r.hosts AS hosts, x.executables AS executables, r.cpu_seconds AS cpu_seconds,
               r.failed AS failed, r.last_seen AS last_seen
        FROM ranked r
        LEFT JOIN (SELECT c.uid AS uid, {_distinct("executable_id")} AS executables
                   FROM {exes} GROUP BY c.uid) x ON x.uid = r.key
        ORDER BY r.processes DESC, r.uid"""
    return sql, dparams + lparams + eparams


def users(db: ReportDB, f: Filters, top: int) -> Report:
    rows = db.query(*users_sql(db, f, top))
    for row in rows:
        row["cpu_seconds"] = round(float(row["cpu_seconds"] or 0.0), 3)
    return Report(
        "Users",
        [("user", "User"), ("uid", "UID"), ("processes", "Processes"), ("jobs", "Jobs"),
         ("hosts", "Hosts"), ("executables", "Executables"), ("cpu_seconds", "CPU s"),
         ("failed", "Failed"), ("last_seen", "Last seen")],
        rows,
    )


def signatures_sql(db: ReportDB, f: Filters, top: int, signature: str | None) -> tuple[str, list[Any]]:
    d = db.dialect
    clauses, params = f.selects(d)
    limit, lparams = _limit(top)
    users_expr = d.list_agg("COALESCE(p.username, CAST(p.uid AS TEXT))")
    hosts_expr = d.list_agg("p.host")
    sig_clause = ["s.signature = ?"] if signature else ["s.signature <> ''"]
    sig_params: list[Any] = [signature] if signature else []
    exe_part = f"""
        SELECT 'executable' AS kind, s.signature AS signature, s.path AS path,
               COUNT(*) AS runs, {users_expr} AS users, {hosts_expr} AS hosts,
               COUNT(DISTINCT p.job_id) AS jobs,
               MIN(p.start_time) AS first_seen, MAX(p.start_time) AS last_seen
        FROM executables s JOIN processes p ON p.executable_id = s.id
        {_where(sig_clause + clauses)}
        GROUP BY s.signature, s.path"""
    uses = library_uses(
        "l.signature AS signature, l.path AS path, "
        "COALESCE(p.username, CAST(p.uid AS TEXT)) AS u, p.host AS host, p.job_id AS job_id, "
        "p.start_time AS start_time",
        "libraries l", [c.replace("s.", "l.", 1) for c in sig_clause], clauses)
    lib_part = f"""
        SELECT 'library' AS kind, x.signature AS signature, x.path AS path,
               COUNT(*) AS runs, {d.list_agg("x.u")} AS users, {d.list_agg("x.host")} AS hosts,
               COUNT(DISTINCT x.job_id) AS jobs,
               MIN(x.start_time) AS first_seen, MAX(x.start_time) AS last_seen
        FROM ({uses}) x
        GROUP BY x.signature, x.path"""
    sql = exe_part + "\nUNION ALL\n" + lib_part + f"\nORDER BY runs DESC, kind, signature\n{limit}"
    one = sig_params + params
    return sql, one + one + one + lparams


def signatures(db: ReportDB, f: Filters, top: int, signature: str | None = None) -> Report:
    rows = db.query(*signatures_sql(db, f, top, signature))
    _split_lists(rows, ("users", "hosts"))
    return Report(
        "Stamped binaries and libraries",
        [("signature", "Signature"), ("kind", "Kind"), ("path", "Path"), ("runs", "Runs"),
         ("users", "Users"), ("hosts", "Hosts"), ("jobs", "Jobs"), ("first_seen", "First seen"),
         ("last_seen", "Last seen")],
        rows,
        list_columns=("users", "hosts"),
    )


def job_sql(db: ReportDB, job_id: str, f: Filters) -> tuple[str, list[Any]]:
    clauses, params = Filters(since=f.since, until=f.until, user=f.user, host=f.host, job=job_id).where(db.dialect)
    sql = f"""
        SELECT p.uuid AS uuid, p.host AS host, p.pid AS pid, p.ppid AS ppid,
               COALESCE(p.username, CAST(p.uid AS TEXT)) AS "user",
               e.path AS exe, e.signature AS signature, p.args AS args, p.rank AS rank,
               p.start_time AS start_time, p.end_time AS end_time, p.duration AS duration,
               p.exit_status AS exit_status, p.utime AS utime, p.stime AS stime,
               p.step_id AS step_id,
               ({exe_packages_sql(db, "ce.executable_id = p.executable_id")}) AS package
        FROM processes p LEFT JOIN executables e ON e.id = p.executable_id
        {_where(clauses)}
        ORDER BY p.host, p.start_time, p.id"""
    return sql, params


def job_processes(db: ReportDB, job_id: str, f: Filters) -> list[dict[str, Any]]:
    """Every process of a job, in start order per host."""
    rows = db.query(*job_sql(db, job_id, f))
    for row in rows:
        args = row.get("args")
        if isinstance(args, str):
            try:
                row["args"] = json.loads(args)
            except ValueError:
                row["args"] = [args]
        elif args is None:
            row["args"] = []
    return rows


def _job_filters(f: Filters, dialect: Dialect) -> tuple[list[str], list[Any]]:
    """The filters over the jobs table `j`, for jobs no recorded process belongs to: times
    apply to the job's start, --host (a process's) matches none of them."""
    clauses: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        clauses.append("j.start_time >= ?")
        params.append(dialect.time_param(f.since))
    if f.until is not None:
        clauses.append("j.start_time < ?")
        params.append(dialect.time_param(f.until))
    if f.user is not None:
        clauses.append("j.uid = ?" if f.user.isdigit() else "j.username = ?")
        params.append(int(f.user) if f.user.isdigit() else f.user)
    if f.host is not None:
        clauses.append("1 = 0")
    if f.job is not None:
        clauses.append("j.job_id = ?")
        params.append(f.job)
    return clauses, params


def jobs_sql(db: ReportDB, f: Filters, top: int) -> tuple[str, list[Any]]:
    """The jobs of the recorded processes, with their job record where there is one, and
    the jobs with a record but no recorded process."""
    d = db.dialect
    cells, params = cells_sql(db, USAGE_DAYS, f)
    jclauses, jparams = _job_filters(f, d)
    limit, lparams = _limit(top)
    user = f"COALESCE(NULLIF(c.username, ''), CAST({_nonnull('uid')} AS TEXT))"
    sql = f"""
        SELECT x.job AS job, COALESCE(j.username, x.users) AS "user", j.account AS account,
               j.partition AS partition, j.nodelist AS nodes, j.num_nodes AS num_nodes,
               j.state AS state, j.exit_code AS exit_code,
               {d.seconds_between("j.start_time", "j.end_time")} AS elapsed,
               x.processes AS processes, x.hosts AS hosts, x.cpu_seconds AS cpu_seconds,
               x.failed AS failed, COALESCE(j.start_time, x.first_start) AS start_time
        FROM (SELECT c.job_id AS job, SUM(c.processes) AS processes,
                     {d.list_agg(user)} AS users,
                     {_distinct("host")} AS hosts, SUM(c.cpu_seconds) AS cpu_seconds,
                     SUM(c.failed) AS failed, MIN(c.first_start) AS first_start,
                     MAX(c.last_start) AS last_start
              FROM {cells}
              WHERE c.job_id <> ''
              GROUP BY c.job_id
              UNION ALL
              SELECT j.job_id, 0, NULL, 0, 0, 0, NULL, NULL
              FROM jobs j
              {_where(["NOT EXISTS (SELECT 1 FROM processes p WHERE p.job_id = j.job_id)"] + jclauses)}
             ) x LEFT JOIN jobs j ON j.job_id = x.job
        ORDER BY COALESCE(x.last_start, j.start_time) DESC, job
        {limit}"""
    return sql, params + jparams + lparams


def jobs(db: ReportDB, f: Filters, top: int) -> Report:
    rows = db.query(*jobs_sql(db, f, top))
    for row in rows:
        row["cpu_seconds"] = round(float(row["cpu_seconds"] or 0.0), 3)
        if row["elapsed"] is not None:
            row["elapsed"] = round(float(row["elapsed"]), 3)
    return Report(
        "Jobs (most recent first)",
        [("job", "Job"), ("user", "User"), ("account", "Account"), ("partition", "Partition"),
         ("nodes", "Nodes"), ("state", "State"), ("exit_code", "Exit"), ("elapsed", "Elapsed s"),
         ("processes", "Processes"), ("hosts", "Hosts"), ("cpu_seconds", "CPU s"),
         ("failed", "Failed"), ("start_time", "Start")],
        rows,
    )


# -- queries the web dashboard added (ogrt/web/); the CLI may use them too -------------------
def daily_sql(db: ReportDB, f: Filters) -> tuple[str, list[Any]]:
    cells, params = cells_sql(db, USAGE_DAYS, f)
    sql = f"""
        SELECT c.day AS day, SUM(c.processes) AS processes,
               {_distinct("job_id")} AS jobs,
               {_distinct("uid")} AS users,
               {_distinct("host")} AS hosts
        FROM {cells}
        WHERE c.day <> ''
        GROUP BY c.day
        ORDER BY day"""
    return sql, params


def daily(db: ReportDB, f: Filters) -> Report:
    """Processes, jobs, users and hosts per UTC day (of the process start)."""
    return Report(
        "Activity per day (UTC)",
        [("day", "Day"), ("processes", "Processes"), ("jobs", "Jobs"), ("users", "Users"),
         ("hosts", "Hosts")],
        db.query(*daily_sql(db, f)),
    )


def top_executables_sql(db: ReportDB, f: Filters, top: int, pattern: str | None = None,
                        sums: bool = True) -> tuple[str, list[Any]]:
    """The `top` paths by runs, with CPU s, failed and last run (`sums`)."""
    cells, params = cells_sql(db, USAGE_EXECUTABLES, f)
    limit, lparams = _limit(top)
    # the executables table is small: match it first, then its cells by key
    match, mparams = "", []
    if pattern is not None:
        match = (f"WHERE c.executable_id IN (SELECT s.id FROM executables s "
                 f"WHERE s.path {db.dialect.ilike} ? ESCAPE '{BACKSLASH}')")
        mparams = [library_pattern(pattern)]
    # sums only (they add up over the ids of one path): no distinct counts, a fraction of the
    # executables report's time
    inner = "".join(f", {v.format('c')} AS {c}" for c, v in EXE_SUMS.items()) if sums else ""
    outer = "".join(f", {'MAX' if c == 'last_run' else 'SUM'}(x.{c}) AS {c}" for c in EXE_SUMS) if sums else ""
    sql = f"""
        SELECT e.path AS executable, SUM(x.runs) AS runs{outer}
        FROM (SELECT c.executable_id, SUM(c.processes) AS runs{inner}
              FROM {cells} {match} GROUP BY c.executable_id) x
        JOIN executables e ON e.id = x.executable_id
        GROUP BY e.path
        ORDER BY runs DESC, executable
        {limit}"""
    return sql, params + mparams + lparams


def top_executables(db: ReportDB, f: Filters, top: int) -> Report:
    """The most run executables: the executables report's runs, CPU s, failed and last run
    (same rows, same order), without its distinct counts."""
    rows = db.query(*top_executables_sql(db, f, top))
    for row in rows:
        row["cpu_seconds"] = round(float(row["cpu_seconds"] or 0.0), 3)
    return Report(
        "Most run executables",
        [("executable", "Executable"), ("runs", "Runs"), ("cpu_seconds", "CPU s"), ("failed", "Failed"),
         ("last_run", "Last run")],
        rows,
    )


def failing_sql(db: ReportDB, f: Filters, top: int) -> tuple[str, list[Any]]:
    cells, params = cells_sql(db, USAGE_EXECUTABLES, f)
    limit, lparams = _limit(top)
    # a cell with failed > 0 holds a failing process of its user and job
    sql = f"""
        SELECT e.path AS executable, SUM(c.failed) AS failed,
               {_distinct("uid")} AS users,
               {_distinct("job_id")} AS jobs,
               MAX(c.last_failure) AS last_failure
        FROM {cells} JOIN executables e ON e.id = c.executable_id
        WHERE c.failed > 0
        GROUP BY e.path
        ORDER BY failed DESC, executable
        {limit}"""
    return sql, params + lparams


def failing(db: ReportDB, f: Filters, top: int) -> Report:
    """Executables by number of runs that exited non-zero."""
    return Report(
        "Failing programs (non-zero exit)",
        [("executable", "Executable"), ("failed", "Failed runs"), ("users", "Users"),
         ("jobs", "Jobs"), ("last_failure", "Last failure")],
        db.query(*failing_sql(db, f, top)),
    )


def executable_jobs_sql(db: ReportDB, f: Filters, top: int, path: str) -> tuple[str, list[Any]]:
    cells, params = cells_sql(db, USAGE_EXECUTABLES, f)
    limit, lparams = _limit(top)
    users_expr = db.dialect.list_agg(f"COALESCE(NULLIF(c.username, ''), CAST({_nonnull('uid')} AS TEXT))")
    sql = f"""
        SELECT c.job_id AS job, SUM(c.processes) AS runs, {users_expr} AS users,
               {_distinct("host")} AS hosts,
               SUM(c.failed) AS failed,
               MIN(c.first_start) AS first_start, MAX(c.last_start) AS last_start
        FROM {cells}
        WHERE c.executable_id IN (SELECT x.id FROM executables x WHERE x.path = ?) AND c.job_id <> ''
        GROUP BY c.job_id
        ORDER BY last_start DESC, job
        {limit}"""
    return sql, params + [path] + lparams


def executable_jobs(db: ReportDB, f: Filters, top: int, path: str) -> Report:
    """The jobs that ran one executable (exact path), most recent first."""
    rows = db.query(*executable_jobs_sql(db, f, top, path))
    _split_lists(rows, ("users",))
    return Report(
        f"Jobs that ran {path}",
        [("job", "Job"), ("runs", "Runs"), ("users", "Users"), ("hosts", "Hosts"),
         ("failed", "Failed"), ("first_start", "First start"), ("last_start", "Last start")],
        rows,
        list_columns=("users",),
    )


#: the job record's columns a report shows (`ogrt report job` header, JSON "record")
JOB_RECORD_COLUMNS = ("job_id", "array_job_id", "array_task_id", "username", "uid", "account",
                      "partition", "name", "nodelist", "num_nodes", "num_tasks", "num_cpus",
                      "submit_time", "start_time", "end_time", "work_dir", "state", "exit_code",
                      "exit_signal", "cluster")


def job_record(db: ReportDB, job_id: str) -> dict[str, Any] | None:
    """The job's row of the jobs table (JOB_RECORD_COLUMNS and elapsed), or None."""
    cols = ", ".join(f"j.{c} AS {c}" for c in JOB_RECORD_COLUMNS)
    rows = db.query(f"SELECT {cols}, {db.dialect.seconds_between('j.start_time', 'j.end_time')} AS elapsed "
                    "FROM jobs j WHERE j.job_id = ?", [job_id])
    if not rows:
        return None
    row = rows[0]
    if row["elapsed"] is not None:
        row["elapsed"] = round(float(row["elapsed"]), 3)
    return row


# -- the software census (ogrt/census/, `ogrt census update`) -------------------------------
CENSUS_SOURCES = ("spack", "lmod", "python", "dpkg")


@dataclass(frozen=True)
class PackageFilter:
    """--source (one of CENSUS_SOURCES) and --name (a substring or glob of the package name)."""

    source: str | None = None
    name: str | None = None

    def where(self, dialect: Dialect, alias: str = "k") -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.source is not None:
            if self.source not in CENSUS_SOURCES:
                raise ReportError(f"--source must be one of {', '.join(CENSUS_SOURCES)}")
            clauses.append(f"{alias}.source = ?")
            params.append(self.source)
        if self.name is not None:
            clauses.append(f"{alias}.name {dialect.ilike} ? ESCAPE '{BACKSLASH}'")
            params.append(library_pattern(self.name))
        return clauses, params


def census_exists(db: ReportDB) -> bool:
    """Whether `ogrt census update` indexed anything in this database."""
    return bool(db.query("SELECT 1 AS x FROM census_packages LIMIT 1"))


#: a process's packages: its executable's, its library set's, its late library set's
_PACKAGE_LINKS = (("census_executables", "executable_id", "executable_id"),
                  ("census_libsets", "libset_id", "libset_id"),
                  ("census_libsets", "libset_id", "late_libset_id"))
def usage_mark(db: ReportDB) -> int:
    """The processes after this id are not in the census_usage_* roll-ups (ogrt/census/usage.py).
    Given to the queries as a value: a planner that knows it reads just those processes by
    their primary key (PostgreSQL, given a subquery, scanned them all: 45 s instead of 1)."""
    rows = db.query("SELECT s.value AS v FROM census_state s WHERE s.name = 'usage'")
    return int(rows[0]["v"]) if rows else 0


def package_uses_sql(clauses: list[str]) -> str:
    """One row per (process, package it ran or loaded) of the processes `p` that `clauses`
    select: pid, package_id, uid, username, host, job_id, start_time. UNION drops a package
    that the executable and a library (or both library sets) bring to the same process. Its
    parameters: those of `clauses`, three times."""
    return " UNION ".join(f"""
              SELECT p.id AS pid, c.package_id AS package_id, p.uid AS uid, p.username AS username,
                     p.host AS host, p.job_id AS job_id, p.start_time AS start_time
              FROM processes p JOIN {table} c ON c.{col} = p.{pcol}
              {_where(clauses)}""" for table, col, pcol in _PACKAGE_LINKS)


#: the columns of the census's day cells a software report reads
_SOFTWARE_CELL = ("package_id", "uid", "host", "job_id", "processes", "first_start", "last_start")


def software_cells_sql(db: ReportDB, f: Filters, mark: int) -> tuple[str, list[Any]]:
    """The census's day cells (census_usage_days, rolled up up to process id `mark`) that the
    filters select, as a subquery `c` of _SOFTWARE_CELL columns, the way `cells_sql` reads
    the usage aggregates: the whole days of the period from the roll-up; as cells of one
    process and package each, the processes of the days the period cuts and those after the
    mark; with --job, the job's processes alone. Every package: a filter on the packages
    inside made the planners drive the expansion from the packages (measured 5-15x slower)."""
    d = db.dialect
    raw = ", ".join(f"{aggregates.expr(d.name, c, 'r')} AS {c}" for c in _SOFTWARE_CELL)
    parts: list[str] = []
    args: list[Any] = []

    def uses(clauses: list[str], params: list[Any]) -> None:
        parts.append(f"SELECT {raw} FROM ({package_uses_sql(clauses)}) r")
        args.extend(params * 3)

    if f.job is not None:  # a job's processes, by the processes_job_id index
        uses(*f.selects(d))
        return "(" + parts[0] + ") c", args
    period = f.period
    if period.whole_days:
        t = aggregates.CENSUS_DAYS.table
        days, dparams = period.day_clauses(f"{t}.day")
        keys, params = f.cell_where(t)
        cols = ", ".join(f"{t}.{c}" for c in _SOFTWARE_CELL)
        parts.append(f"SELECT {cols} FROM {t} {_where(days + keys)}")
        args.extend(dparams + params)
    where, params = f.where(d, "p")
    uses([f"p.id > {int(mark)}"] + where, params)
    if period.timed:
        # by the start time index (with `p.id IN (SELECT fp.id ...)` PostgreSQL hash-joined
        # every process: 2.6 s of 5)
        edge, eparams = period.edge(d, "p")
        uses(where + [edge, f"p.id <= {int(mark)}"], params + eparams)
    return "(" + " UNION ALL ".join(parts) + ") c", args


def _software_cells(db: ReportDB, f: Filters) -> tuple[str, list[Any]]:
    """Per package, over the day cells of the filters (any filter)."""
    cells, params = software_cells_sql(db, f, usage_mark(db))
    return f"""
        SELECT c.package_id, SUM(c.processes) AS processes, {_distinct("uid")} AS users,
               {_distinct("job_id")} AS jobs, {_distinct("host")} AS hosts,
               MIN(c.first_start) AS first_use, MAX(c.last_start) AS last_use
        FROM {cells}
        GROUP BY c.package_id""", params


def _software_rolled_up(pick: list[str], mark: int) -> tuple[str, str]:
    """Per package, without filters: the census_usage_* roll-ups plus the processes after
    their watermark (users, jobs and hosts the roll-ups do not hold yet)."""
    kpick = [c.replace("c.package_id", "r.package_id") for c in pick]
    live = package_uses_sql(pick + [f"p.id > {int(mark)}"])
    return f"""
        SELECT a.package_id, SUM(a.processes) AS processes, SUM(a.users) AS users,
               SUM(a.jobs) AS jobs, SUM(a.hosts) AS hosts, MIN(a.first_use) AS first_use,
               MAX(a.last_use) AS last_use
        FROM (SELECT r.package_id, SUM(r.processes) AS processes,
                     SUM(CASE WHEN r.uid >= 0 THEN 1 ELSE 0 END) AS users, 0 AS jobs, 0 AS hosts,
                     MIN(r.first_use) AS first_use, MAX(r.last_use) AS last_use
              FROM census_usage_users r {_where(kpick)} GROUP BY r.package_id
              UNION ALL
              SELECT r.package_id, 0, 0, COUNT(*), 0, NULL, NULL
              FROM census_usage_jobs r {_where(kpick)} GROUP BY r.package_id
              UNION ALL
              SELECT r.package_id, 0, 0, 0, COUNT(*), NULL, NULL
              FROM census_usage_hosts r {_where(kpick)} GROUP BY r.package_id
              UNION ALL
              SELECT l.package_id, COUNT(*), 0, 0, 0, MIN(l.start_time), MAX(l.start_time)
              FROM live l GROUP BY l.package_id
              UNION ALL
              SELECT l.package_id, 0, COUNT(DISTINCT l.uid), 0, 0, NULL, NULL FROM live l
              WHERE l.uid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM census_usage_users r
                    WHERE r.package_id = l.package_id AND r.uid = l.uid)
              GROUP BY l.package_id
              UNION ALL
              SELECT l.package_id, 0, 0, COUNT(DISTINCT l.job_id), 0, NULL, NULL FROM live l
              WHERE l.job_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM census_usage_jobs r
                    WHERE r.package_id = l.package_id AND r.job_id = l.job_id)
              GROUP BY l.package_id
              UNION ALL
              SELECT l.package_id, 0, 0, 0, COUNT(DISTINCT l.host), NULL, NULL FROM live l
              WHERE l.host IS NOT NULL AND NOT EXISTS (SELECT 1 FROM census_usage_hosts r
                    WHERE r.package_id = l.package_id AND r.host = l.host)
              GROUP BY l.package_id) a
        GROUP BY a.package_id""", live


def software_sql(db: ReportDB, f: Filters, top: int, pf: PackageFilter) -> tuple[str, list[Any]]:
    d = db.dialect
    kclauses, kparams = pf.where(d)
    limit, lparams = _limit(top)
    if f.empty:
        # the roll-ups (kept by `ogrt census update`) and the processes recorded since
        pick = ([f"c.package_id IN (SELECT k.id FROM census_packages k {_where(kclauses)})"]
                if kclauses else [])
        body, live = _software_rolled_up(pick, usage_mark(db))
        with_, outer = f"WITH live AS ({live})", []
        args = kparams * 3 + kparams * 3
    else:
        # the per-day roll-up, the cut days and the processes after it; the packages after
        (body, args), with_, outer = _software_cells(db, f), "", kclauses
        args = args + kparams
    sql = f"""
        {with_}
        SELECT k.source AS source, k.name AS package, k.version AS version, k.hash AS hash,
               a.processes, a.users, a.jobs, a.hosts, a.first_use, a.last_use
        FROM ({body}) a
        JOIN census_packages k ON k.id = a.package_id
        {_where(outer)}
        ORDER BY a.processes DESC, package, version, k.id
        {limit}"""
    return sql, args + lparams


SOFTWARE_COLUMNS = [("source", "Source"), ("package", "Package"), ("version", "Version"),
                    ("hash", "Hash")]


def software(db: ReportDB, f: Filters, top: int, pf: PackageFilter = PackageFilter()) -> Report:
    """Per indexed package: the processes that ran or loaded it, their users, jobs, hosts."""
    return Report(
        "Software (packages of the census) by processes",
        SOFTWARE_COLUMNS + [("processes", "Processes"), ("users", "Users"), ("jobs", "Jobs"),
                            ("hosts", "Hosts"), ("first_use", "First use"), ("last_use", "Last use")],
        db.query(*software_sql(db, f, top, pf)),
    )


def software_unused_sql(db: ReportDB, f: Filters, top: int, pf: PackageFilter) -> tuple[str, list[Any]]:
    d = db.dialect
    kclauses, kparams = pf.where(d)
    limit, lparams = _limit(top)
    if f.user is None and f.host is None and f.job is None and (f.since is None or f.until is None):
        # the roll-ups know each package's first and last use: used after --since (or before
        # --until) when its last (first) use is; plus the processes after the roll-ups
        times, tparams, rclauses = [], [], []
        if f.since is not None:
            times.append("p.start_time >= ?")
            rclauses.append("r.last_use >= ?")
            tparams.append(d.time_param(f.since))
        if f.until is not None:
            times.append("p.start_time < ?")
            rclauses.append("r.first_use < ?")
            tparams.append(d.time_param(f.until))
        used = (f"SELECT r.package_id FROM census_usage_users r {_where(rclauses)} UNION "
                f"SELECT u.package_id FROM ({package_uses_sql([f'p.id > {usage_mark(db)}'] + times)}) u")
        uparams = tparams + tparams * 3
    else:
        cells, uparams = software_cells_sql(db, f, usage_mark(db))
        used = f"SELECT c.package_id FROM {cells}"
    sql = f"""
        SELECT k.source AS source, k.name AS package, k.version AS version, k.hash AS hash,
               k.prefix AS prefix
        FROM census_packages k
        {_where(kclauses + [f"k.id NOT IN ({used})"])}
        ORDER BY k.source, k.name, k.version, k.id
        {limit}"""
    return sql, kparams + uparams + lparams


def software_unused(db: ReportDB, f: Filters, top: int, pf: PackageFilter = PackageFilter()) -> Report:
    """The indexed packages no process (of the filters' period, users, hosts, jobs) used."""
    return Report(
        "Software (packages of the census) no process used",
        SOFTWARE_COLUMNS + [("prefix", "Prefix")],
        db.query(*software_unused_sql(db, f, top, pf)),
    )
