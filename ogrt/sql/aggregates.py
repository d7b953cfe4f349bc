"""Per-day usage aggregates (schema version 4): what the reports' heavy summaries read
instead of every process row.

Each aggregate table holds one row ("cell") per distinct key (UTC day of the process
start, uid, user name, host, job, and the executable or module set) with the number of
processes, sums and maxima of the processes in it. Every key a report filters on (user,
host, job, day) is in every cell, so a filtered report over the cells equals the one over
the rows; distinct counts (users, hosts, jobs) are counted over cells, which is exact since
two processes of one cell share those values. Times that are not midnight split a day: the
reports take whole days from the cells and the rows of the partial days from `processes`
(ogrt/report/queries.py, `cells_sql`).

PostgreSQL: maintained by statement triggers on `processes` over the transition tables (one
grouped statement per batch), so every writer keeps them equal to the rows: an insert adds
the row to its cell, a delete removes it (a cell with no process left is deleted; a maximum
or minimum that left with the row is recomputed from the cell's remaining rows), an update
moves the row's contribution from its old cell to its new one (an end record adds CPU time
and the exit status; a start record arriving after its end record sets the executable and
module set). SQLite: the same per batch by the sqlite output (ogrt/sql/cells.py: row
triggers on INSERT/UPDATE cost the output more than the rest of its work) and a row trigger on
DELETE (`ogrt purge`, admin deletes); a plain-SQL INSERT or UPDATE of `processes` on SQLite
bypasses the aggregates (rebuild them: delete the cells, run `build_statements`). Key
columns are NOT NULL: NULL is stored as '' (text), -1 (uid) or 0 (ids), which the reports
read back as NULL.

A database of version 3 gets the tables, the triggers and cells built from its rows
(`migrate_statements`). These statements are separate from ogrt/sql/DIALECT.sql (other
additions of version 4 go there).
"""
from __future__ import annotations

from dataclasses import dataclass

#: key column → (SQLite type, PostgreSQL type, expression over the process row {r})
KEYS: dict[str, tuple[str, str, str]] = {
    "day": ("TEXT", "TEXT", ""),  # dialect-specific: day_expr()
    "uid": ("INTEGER", "BIGINT", "COALESCE({r}.uid, -1)"),
    "username": ("TEXT", "TEXT", "COALESCE({r}.username, '')"),
    "host": ("TEXT", "TEXT", "COALESCE({r}.host, '')"),
    "job_id": ("TEXT", "TEXT", "COALESCE({r}.job_id, '')"),
    "executable_id": ("INTEGER", "BIGINT", "COALESCE({r}.executable_id, 0)"),
    "modset_id": ("INTEGER", "BIGINT", "COALESCE({r}.modset_id, 0)"),
    # the census's per-day roll-up (CENSUS_DAYS): rows of a process's packages (package_uses_sql)
    "package_id": ("INTEGER", "BIGINT", "{r}.package_id"),
}
_FAILED = "CASE WHEN {r}.exit_status IS NOT NULL AND {r}.exit_status <> 0 THEN 1 ELSE 0 END"
#: summed column → (SQLite type, PostgreSQL type, expression)
SUMS: dict[str, tuple[str, str, str]] = {
    "processes": ("INTEGER", "BIGINT", "1"),
    "cpu_seconds": ("REAL", "DOUBLE PRECISION", "COALESCE({r}.utime, 0) + COALESCE({r}.stime, 0)"),
    "failed": ("INTEGER", "BIGINT", _FAILED),
}
#: extreme (maximum, or minimum: MINIMA) column → (SQLite type, PostgreSQL type, expression)
EXTREMES: dict[str, tuple[str, str, str]] = {
    "last_start": ("TEXT", "TIMESTAMPTZ", "{r}.start_time"),
    "first_start": ("TEXT", "TIMESTAMPTZ", "{r}.start_time"),
    "last_failure": ("TEXT", "TIMESTAMPTZ", f"CASE WHEN {_FAILED} = 1 THEN {{r}}.start_time END"),
}
#: the columns of EXTREMES that keep the minimum (the others: the maximum)
MINIMA = ("first_start",)
#: the key values that stand for NULL (reports: NULLIF(column, sentinel))
SENTINEL = {"day": "''", "uid": "-1", "username": "''", "host": "''", "job_id": "''",
            "executable_id": "0", "modset_id": "0"}


@dataclass(frozen=True)
class Aggregate:
    """One aggregate table: its key (primary key order) and value columns."""

    table: str
    keys: tuple[str, ...]
    sums: tuple[str, ...]
    extremes: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys + self.sums + self.extremes


#: per day, user, host, job: the activity per day, the users and the jobs report
USAGE_DAYS = Aggregate("usage_days", ("day", "uid", "host", "job_id", "username"),
                       ("processes", "cpu_seconds", "failed"), ("first_start", "last_start"))
#: ... and executable: the executables and failing-programs reports, executables per user, the
#: jobs of an executable
USAGE_EXECUTABLES = Aggregate("usage_executables",
                              ("executable_id", "job_id", "uid", "host", "username", "day"),
                              ("processes", "cpu_seconds", "failed"), ("first_start", "last_start", "last_failure"))
#: ... and module set: the modules report
USAGE_MODSETS = Aggregate("usage_modsets", ("modset_id", "job_id", "uid", "host", "username", "day"),
                          ("processes",), ("last_start",))
AGGREGATES = (USAGE_DAYS, USAGE_EXECUTABLES, USAGE_MODSETS)


def day_expr(dialect: str, r: str) -> str:
    """The UTC day (YYYY-MM-DD, '' when unknown) of the start time of process row `r`."""
    if dialect == "sqlite":
        return f"COALESCE(substr({r}.start_time, 1, 10), '')"
    return f"COALESCE(to_char({r}.start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '')"


def expr(dialect: str, column: str, r: str) -> str:
    """A column's value for the process row `r` (a table alias, NEW or OLD)."""
    if column == "day":
        return day_expr(dialect, r)
    return {**KEYS, **SUMS, **EXTREMES}[column][2].format(r=r)


def _type(dialect: str, column: str) -> str:
    t = {**KEYS, **SUMS, **EXTREMES}[column]
    return t[0] if dialect == "sqlite" else t[1]


def create_table(dialect: str, a: Aggregate, temp: bool = False) -> str:
    cols = [f"{c} {_type(dialect, c)} NOT NULL" for c in a.keys + a.sums]
    cols += [f"{c} {_type(dialect, c)}" for c in a.extremes]
    tail = " WITHOUT ROWID" if dialect == "sqlite" else ""
    return (f"CREATE {'TEMP ' if temp else ''}TABLE IF NOT EXISTS {a.table} ({', '.join(cols)}, "
            f"PRIMARY KEY ({', '.join(a.keys)})){tail}")


def func(column: str) -> str:
    """How a column of an aggregate combines its rows: SUM, MAX or MIN."""
    return "SUM" if column in SUMS else "MIN" if column in MINIMA else "MAX"


def _better(dialect: str, column: str, a: str, b: str) -> str:
    """The larger (MAX) or smaller (MIN) of a and b, ignoring NULLs."""
    if dialect == "postgresql":
        return f"{'LEAST' if column in MINIMA else 'GREATEST'}({a}, {b})"  # ignore NULLs
    op = "<=" if column in MINIMA else ">="
    return f"CASE WHEN {b} IS NULL OR {a} {op} {b} THEN {a} ELSE {b} END"  # a NULL: b


def at_or_beyond(column: str, a: str, b: str) -> str:
    """a is b or worse than b for the extreme `column` (b may have been the cell's extreme)."""
    return f"{a} >= {b}" if column in MINIMA else f"{a} <= {b}"


def worse(column: str, a: str, b: str) -> str:
    return f"{a} > {b}" if column in MINIMA else f"{a} < {b}"


def upsert_tail(dialect: str, a: Aggregate) -> str:
    """ON CONFLICT of a cell: its sums added, its extremes kept."""
    new = "excluded" if dialect == "sqlite" else "EXCLUDED"
    sets = [f"{c} = {a.table}.{c} + {new}.{c}" for c in a.sums]
    sets += [f"{c} = {_better(dialect, c, f'{a.table}.{c}', f'{new}.{c}')}" for c in a.extremes]
    return f"ON CONFLICT ({', '.join(a.keys)}) DO UPDATE SET {', '.join(sets)}"


def match_cell(dialect: str, a: Aggregate, x: str) -> str:
    """Process rows `x` of the cell `a.table` (its job first: the processes_job_id index)."""
    if dialect == "sqlite":
        first = f"{x}.job_id IS NULLIF({a.table}.job_id, '')"
    else:
        first = f"({x}.job_id = {a.table}.job_id OR ({a.table}.job_id = '' AND {x}.job_id IS NULL))"
    return " AND ".join([first] + [f"{expr(dialect, k, x)} = {a.table}.{k}" for k in a.keys])


# -- SQLite: row triggers ----------------------------------------------------------------------
def _sqlite_cell(a: Aggregate, r: str) -> str:
    return " AND ".join(f"{a.table}.{k} = {expr('sqlite', k, r)}" for k in a.keys)


def _sqlite_remove(a: Aggregate, old: str) -> list[str]:
    """Take row `old` out of its cell: the sums, then (the row is already changed or gone) the
    extremes it may have held, recomputed from the cell's rows, and the cell if now empty."""
    cell = _sqlite_cell(a, old)
    sets = ", ".join(f"{c} = {c} - ({expr('sqlite', c, old)})" for c in a.sums)
    out = [f"UPDATE {a.table} SET {sets} WHERE {cell}"]
    for m in a.extremes:
        mv = expr("sqlite", m, old)
        out.append(f"UPDATE {a.table} SET {m} = (SELECT {func(m)}({expr('sqlite', m, 'x')}) FROM processes x "
                   f"WHERE {match_cell('sqlite', a, 'x')}) WHERE {cell} AND processes > 0 "
                   f"AND {mv} IS NOT NULL AND {at_or_beyond(m, m, mv)}")
    out.append(f"DELETE FROM {a.table} WHERE {cell} AND processes <= 0")
    return out


def sqlite_triggers(a: Aggregate) -> list[str]:
    """The row trigger that takes a deleted process out of its cell (`ogrt purge`, admin
    deletes). Inserts and updates are applied per batch by the output (ogrt/sql/cells.py):
    row triggers on them cost the output more CPU than the rest of its work."""
    return [f"CREATE TRIGGER IF NOT EXISTS {a.table}_delete AFTER DELETE ON processes "
            f"BEGIN {'; '.join(_sqlite_remove(a, 'OLD'))}; END"]


# -- a batch's rows moved between cells: PostgreSQL's statement triggers, SQLite's output -------
def delta_select(dialect: str, a: Aggregate, removed: str | None, added: str | None) -> str:
    """Per cell of the rows of `removed` (taken out) and `added` (put in): the differences of
    the sums, and the extremes of the added (new_X) and of the removed rows (old_X). An
    update is its old rows removed and its new rows added: no join of the two."""
    parts = []
    for src, sign in ((removed, "-"), (added, "")):
        if src is None:
            continue
        sel = [f"{expr(dialect, k, 'r')} AS {k}" for k in a.keys]
        sel += [f"{sign}({expr(dialect, c, 'r')}) AS {c}" for c in a.sums]
        for m in a.extremes:
            value, null = expr(dialect, m, "r"), f"CAST(NULL AS {_type(dialect, m)})"
            sel += [f"{null if sign else value} AS new_{m}", f"{value if sign else null} AS old_{m}"]
        parts.append(f"SELECT {', '.join(sel)} FROM {src} r")
    values = [f"SUM(d.{c}) AS {c}" for c in a.sums]
    values += [f"{func(m)}(d.{p}_{m}) AS {p}_{m}" for m in a.extremes for p in ("new", "old")]
    n = ", ".join(a.keys)
    return f"SELECT {n}, {', '.join(values)} FROM ({' UNION ALL '.join(parts)}) d GROUP BY {n}"


def delta_columns(a: Aggregate) -> tuple[str, ...]:
    """The columns of delta_select, in its order."""
    return a.keys + a.sums + tuple(f"{p}_{m}" for m in a.extremes for p in ("new", "old"))


def upsert_delta(dialect: str, a: Aggregate, delta: str) -> str:
    """One upsert in key order (concurrent writers lock the cells of a table in one order) of
    the cells that change, from `delta` (delta_select's rows: a parenthesized query or a table)."""
    n = ", ".join(a.keys)
    changes = [f"g.{c} <> 0" for c in a.sums]
    changes += [f"(g.new_{m} IS NOT NULL AND (g.old_{m} IS NULL OR {worse(m, f'g.old_{m}', f'g.new_{m}')}))"
                for m in a.extremes]
    values = ", ".join([f"g.{c}" for c in a.sums] + [f"g.new_{m}" for m in a.extremes])
    return (f"INSERT INTO {a.table} ({', '.join(a.columns)}) SELECT {n}, {values} FROM {delta} g "
            f"WHERE {' OR '.join(changes)} ORDER BY {n} {upsert_tail(dialect, a)}")


def recompute_extremes(dialect: str, a: Aggregate, delta: str) -> list[str]:
    """After upsert_delta: each extreme a removed row held that no added row reaches, from the
    cell's rows left."""
    cell = " AND ".join(f"{a.table}.{k} = g.{k}" for k in a.keys)
    return [f"UPDATE {a.table} SET {m} = (SELECT {func(m)}({expr(dialect, m, 'x')}) FROM processes x "
            f"WHERE {match_cell(dialect, a, 'x')}) FROM {delta} g "
            f"WHERE {cell} AND {a.table}.processes > 0 AND g.old_{m} IS NOT NULL "
            f"AND {at_or_beyond(m, f'{a.table}.{m}', f'g.old_{m}')} "
            f"AND (g.new_{m} IS NULL OR {worse(m, f'g.new_{m}', f'{a.table}.{m}')})"
            for m in a.extremes]


# -- PostgreSQL: statement triggers over the transition tables -----------------------------------
def _pg_apply(a: Aggregate, removed: str | None, added: str | None) -> list[str]:
    """The statements that move the rows of `removed` out of and those of `added` into their
    cells: the upsert, then the cleanup of the cells rows left."""
    delta = f"({delta_select('postgresql', a, removed, added)})"
    out = [upsert_delta("postgresql", a, delta)]
    if removed is None:
        return out
    out += recompute_extremes("postgresql", a, delta)
    cell = " AND ".join(f"{a.table}.{k} = g.{k}" for k in a.keys)
    out.append(f"DELETE FROM {a.table} USING {delta} g WHERE {cell} AND {a.table}.processes <= 0")
    return out


def build_sql(dialect: str, a: Aggregate, rows: str = "processes r") -> str:
    """Insert into the (empty) table `a` the cells of `rows` (a FROM item aliased r: the
    process rows, or rows with their columns), grouped by a's key."""
    sel = [expr(dialect, k, "r") for k in a.keys]
    sel += [f"{func(c)}({expr(dialect, c, 'r')})" for c in a.sums + a.extremes]
    n = ", ".join(str(i + 1) for i in range(len(a.keys)))
    return (f"INSERT INTO {a.table} ({', '.join(a.columns)}) SELECT {', '.join(sel)} "
            f"FROM {rows} GROUP BY {n}")


def _pg_function(name: str, body: list[str]) -> str:
    return (f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
            + " ".join(s + ";" for s in body) + " RETURN NULL; END $f$")


def pg_statements() -> list[str]:
    """The trigger functions (one per event, over every aggregate) and their triggers."""
    ins: list[str] = []
    dele: list[str] = []
    upd: list[str] = []
    for a in AGGREGATES:
        ins += _pg_apply(a, None, "ogrt_new")
        dele += _pg_apply(a, "ogrt_old", None)
        upd += _pg_apply(a, "ogrt_old", "ogrt_new")
    out = [_pg_function("ogrt_usage_insert", ins), _pg_function("ogrt_usage_delete", dele),
           _pg_function("ogrt_usage_update", upd)]
    for event, tables in (("insert", "NEW TABLE AS ogrt_new"), ("delete", "OLD TABLE AS ogrt_old"),
                          ("update", "OLD TABLE AS ogrt_old NEW TABLE AS ogrt_new")):
        out.append(f"DROP TRIGGER IF EXISTS ogrt_usage_{event} ON processes")
        out.append(f"CREATE TRIGGER ogrt_usage_{event} AFTER {event.upper()} ON processes "
                   f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION ogrt_usage_{event}()")
    return out


# -- what the schema runs ------------------------------------------------------------------------
def schema_statements(dialect: str) -> list[str]:
    """The aggregate tables and the triggers that maintain them (a new, empty database)."""
    out = [create_table(dialect, a) for a in AGGREGATES]
    if dialect == "sqlite":
        for a in AGGREGATES:
            out += sqlite_triggers(a)
    else:
        out += pg_statements()
    return out


def build_statements(dialect: str) -> list[str]:
    """Fill the (empty) aggregate tables from the process rows there are."""
    return [build_sql(dialect, a) for a in AGGREGATES]


def migrate_statements(dialect: str) -> list[str]:
    """Version 3 → 4: the aggregates, built from the rows (in the caller's transaction)."""
    return schema_statements(dialect) + build_statements(dialect)


# -- the software census's per-day roll-up (schema version 5) ------------------------------------
#: per package of the census and day, user, host, job: the processes that ran or loaded the
#: package (their first and last start). Not kept by triggers: `ogrt census update` adds the
#: settled processes up to its watermark (ogrt/census/usage.py); the software report with a
#: filter reads its whole days and the rows of cut days and after the watermark
#: (ogrt/report/queries.py). Its day first: a period is a range of its primary key.
CENSUS_DAYS = Aggregate("census_usage_days", ("day", "package_id", "uid", "host", "job_id", "username"),
                        ("processes",), ("first_start", "last_start"))


def census_statements(dialect: str) -> list[str]:
    """The census's per-day roll-up table (a new database, and the migration 4 → 5)."""
    return [create_table(dialect, CENSUS_DAYS)]
