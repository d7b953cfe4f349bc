"""The SQL schema of OGRT in one place: its version, the `processes` columns, the tables
referred to by id, and the statements the outputs run. ogrt/sql/DIALECT.sql creates it.

The sqlite and postgresql outputs (ogrt/outputs/sqlbase.py and its dialects) write it,
`ogrt report` reads it; all of them take version, columns and statements from here.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ogrt.sql import aggregates

SCHEMA_VERSION = 5  # 2: library and module sets (libsets, modsets); 3: jobs, processes.step_id;
#                    4: per-day usage aggregates (ogrt/sql/aggregates.py), the software census
#                       tables (census_*), processes.verified; migrated from 3 (migrate_from_3)
#                    5: the census's per-day roll-up (census_usage_days); from 4 (migrate_from_4)
#: the versions a database is migrated from, with what the migration adds
MIGRATES_FROM: dict[int, str] = {
    3: "the usage aggregates, the software census tables (census_*) and processes.verified",
    4: "the software census's per-day roll-up (census_usage_days)"}
DIALECTS = ("sqlite", "postgresql")
VERSION_QUERY = "SELECT version FROM schema_version"
#: PostgreSQL: the pg_advisory_xact_lock key ("OGRT" 1) of creating or migrating the schema
MIGRATE_LOCK = 0x4F47_5254_0001

# -- the processes table -----------------------------------------------------------------
#: the columns a start record fills (uuid aside); exe_path + exe_signature name the executable
START_COLUMNS: tuple[str, ...] = (
    "host", "peer", "job_id", "pid", "ppid", "uid", "gid", "username", "exe_path",
    "exe_signature", "args", "cwd", "env", "rank", "step_id", "start_time", "verified",
)
#: the columns an end record fills (uuid aside)
END_COLUMNS: tuple[str, ...] = (
    "host", "peer", "job_id", "pid", "uid", "username", "end_time", "start_time",
    "exit_status", "duration", "utime", "stime", "maxrss_kb", "minflt", "majflt", "inblock",
    "oublock", "nvcsw", "nivcsw", "verified",
)
#: the columns filled from records, in the order of a merged row (ogrt/outputs/sqlrecords.py)
RECORD_COLUMNS: tuple[str, ...] = ("uuid",) + START_COLUMNS + tuple(
    c for c in END_COLUMNS if c not in START_COLUMNS)
#: record columns that are not processes columns: they become executable_id
EXE_KEY = ("exe_path", "exe_signature")
#: the ids of other tables' rows a process points to
ID_COLUMNS = ("executable_id", "libset_id", "late_libset_id", "modset_id")
#: the processes columns the outputs write, in the order of their row tuples
PROCESS_COLUMNS: tuple[str, ...] = tuple(
    c for c in RECORD_COLUMNS if c not in EXE_KEY) + ID_COLUMNS
#: indexed columns an end record also carries (the same values as its start record's)
SHARED_INDEXED = ("host", "job_id", "uid", "start_time")


# -- the jobs table -----------------------------------------------------------------------
#: its columns: the job record's keys (ogrt.record.JOB_FIELDS) with user → username, and the
#: times the scheduler's hooks sent the job_start and the job_end record
JOB_COLUMNS: tuple[str, ...] = (
    "job_id", "array_job_id", "array_task_id", "username", "uid", "account", "partition",
    "name", "nodelist", "num_nodes", "num_tasks", "num_cpus", "submit_time", "start_time",
    "end_time", "work_dir", "state", "exit_code", "exit_signal", "cluster", "started_event",
    "ended_event",
)


def upsert_job(dialect: str) -> str:
    """Insert a job row or fill in the stored one: each column takes the new value unless it
    is NULL. A job's start and end records may come in any order and more than once."""
    mark = "?" if dialect == "sqlite" else "%s"
    excluded = "excluded" if dialect == "sqlite" else "EXCLUDED"
    return (f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join([mark] * len(JOB_COLUMNS))}) "
            "ON CONFLICT (job_id) DO UPDATE SET "
            + ", ".join(f"{c} = COALESCE({excluded}.{c}, jobs.{c})" for c in JOB_COLUMNS[1:]))


# -- tables referred to by id ------------------------------------------------------------
@dataclass(frozen=True)
class KeyTable:
    """A table whose rows have an id and a unique key (one or two columns)."""

    name: str
    key: tuple[str, ...]
    pg_types: tuple[str, ...]  # of the key columns, for unnest(%s::TYPE[])


@dataclass(frozen=True)
class SetTable:
    """A content-addressed set table (key: digest) and its members table."""

    sets: KeyTable
    members: str
    columns: tuple[str, str]  # (set id, member id)


EXECUTABLES = KeyTable("executables", ("path", "signature"), ("text", "text"))
LIBRARIES = KeyTable("libraries", ("path", "signature"), ("text", "text"))
MODULES = KeyTable("modules", ("name",), ("text",))
LIBSETS = SetTable(KeyTable("libsets", ("digest",), ("bytea",)), "libset_members",
                   ("libset_id", "library_id"))
MODSETS = SetTable(KeyTable("modsets", ("digest",), ("bytea",)), "modset_members",
                   ("modset_id", "module_id"))


# -- creating and checking the schema ----------------------------------------------------
class SchemaVersionError(Exception):
    """The database holds a schema version this OGRT neither writes nor migrates."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"database schema version {found}, this OGRT writes version {SCHEMA_VERSION} "
            f"and migrates versions {', '.join(map(str, MIGRATES_FROM))} only: point the output "
            "at a new database (path or dsn) and keep the old one for reading")
        self.found = found


def schema_statements(dialect: str) -> list[str]:
    """The statements of ogrt/sql/DIALECT.sql (comments removed; no literal holds '--' or ';')."""
    text = resources.files("ogrt.sql").joinpath(f"{dialect}.sql").read_text()
    text = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return [s.strip() for s in text.split(";") if s.strip()]


def create_schema(execute: Callable[[str], Iterable[Any]], dialect: str) -> None:
    """In the caller's transaction: create the schema in a new database, accept one of
    this version, migrate one of a version in MIGRATES_FROM, raise SchemaVersionError for
    another.

    Only a new database gets DDL: in PostgreSQL, CREATE INDEX IF NOT EXISTS locks its
    table even when the index exists, and would deadlock with a worker writing."""
    stmts = schema_statements(dialect)
    execute(stmts[0])  # schema_version: checked before anything else
    found = [v for (v,) in execute(VERSION_QUERY)]
    if found == [SCHEMA_VERSION]:
        return
    if found in ([3], [4]):
        if found == [3]:
            migrate_from_3(execute, dialect, stmts)
        migrate_from_4(execute, dialect)
        execute(f"UPDATE schema_version SET version = {SCHEMA_VERSION}")
        return
    if found:
        raise SchemaVersionError(max(found))
    for stmt in stmts[1:] + aggregates.schema_statements(dialect) + aggregates.census_statements(dialect):
        execute(stmt)
    execute(f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})")


# -- migration 3 → 4 --------------------------------------------------------------------------
#: processes.verified, added to a version-3 table (NULL: a record stored before relays existed)
VERIFIED_DDL = {"sqlite": "ALTER TABLE processes ADD COLUMN verified INTEGER",  # 0/1
                "postgresql": "ALTER TABLE processes ADD COLUMN IF NOT EXISTS verified BOOLEAN"}
_COLUMNS_QUERY = {"sqlite": "SELECT name FROM pragma_table_info('processes')",
                  "postgresql": "SELECT column_name FROM information_schema.columns "
                                "WHERE table_name = 'processes' AND table_schema = current_schema()"}


def migrate_from_3(execute: Callable[[str], Iterable[Any]], dialect: str, stmts: list[str]) -> None:
    """In the caller's transaction: version 3 → 4 (the caller sets the version). Every
    statement of DIALECT.sql is idempotent (CREATE ... IF NOT EXISTS): running them again adds
    the census tables and keeps the rest; processes gains `verified`; the usage aggregates are built from the rows
    (ogrt/sql/aggregates.py). PostgreSQL: no statement timeout for it (the build reads every row)."""
    if dialect == "postgresql":
        execute("SET LOCAL statement_timeout = 0")
    for stmt in stmts[1:]:
        execute(stmt)
    if "verified" not in {name for (name,) in execute(_COLUMNS_QUERY[dialect])}:
        execute(VERIFIED_DDL[dialect])
    for stmt in aggregates.migrate_statements(dialect):
        execute(stmt)


# -- migration 4 → 5 --------------------------------------------------------------------------
def migrate_from_4(execute: Callable[[str], Iterable[Any]], dialect: str) -> None:
    """In the caller's transaction: version 4 → 5, the census's per-day roll-up table. It is
    filled by the next `ogrt census update`, which rolls everything up again (its watermark is
    dropped here); until then the software report reads the processes themselves."""
    for stmt in aggregates.census_statements(dialect):
        execute(stmt)
    execute("DELETE FROM census_state WHERE name = 'usage'")


# -- the statements of the outputs -------------------------------------------------------
def _coalesce(columns: Iterable[str], excluded: str) -> str:
    """SET c = the new value unless NULL, else the stored one, per column."""
    return ", ".join(f"{c} = COALESCE({excluded}.{c}, processes.{c})" for c in columns)


_COLS = ", ".join(PROCESS_COLUMNS)
_SQLITE_INSERT_PROCESS = f"INSERT INTO processes ({_COLS}) VALUES ({', '.join('?' * len(PROCESS_COLUMNS))}) "
#: SQLite: one process row with its start record in the batch
SQLITE_UPSERT_PROCESS = (_SQLITE_INSERT_PROCESS + "ON CONFLICT (uuid) DO UPDATE SET "
                         + _coalesce(PROCESS_COLUMNS[1:], "excluded"))
#: SQLite: a row with no start record in the batch. SQLite rewrites every index whose column
#: is in the SET list, changed or not: an end record updating the row its start record wrote
#: sets only the columns it brings and no indexed column it shares with the start record (the
#: start record is authoritative for those; the end record's fill a row it inserts). The
#: columns only a start record fills are NULL in such a row: leaving them out changes nothing.
SQLITE_END_SET = tuple(c for c in END_COLUMNS + ("late_libset_id",) if c not in SHARED_INDEXED)
SQLITE_UPSERT_END = (_SQLITE_INSERT_PROCESS + "ON CONFLICT (uuid) DO UPDATE SET "
                     + _coalesce(SQLITE_END_SET, "excluded"))


def sqlite_insert(table: str, columns: tuple[str, ...]) -> str:
    """SQLite: insert a row unless its key exists."""
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def sqlite_lookup(table: KeyTable, n: int) -> str:
    """SQLite: the id and key of the rows whose first key column is one of n values."""
    return (f"SELECT id, {', '.join(table.key)} FROM {table.name} "
            f"WHERE {table.key[0]} IN ({','.join('?' * n)})")


#: PostgreSQL: the session's staging table of process rows (COPY target), typed like processes
PG_STAGING = ("CREATE TEMP TABLE IF NOT EXISTS ogrt_stage_proc ON COMMIT DELETE ROWS AS "
              f"SELECT {_COLS} FROM processes WITH NO DATA")
PG_COPY_STAGE = f"COPY ogrt_stage_proc ({_COLS}) FROM STDIN"
#: PostgreSQL: the staged rows into processes, in uuid order (a fixed lock order)
PG_UPSERT_PROCESSES = (
    f"INSERT INTO processes ({_COLS}) SELECT {_COLS} FROM ogrt_stage_proc ORDER BY uuid "
    "ON CONFLICT (uuid) DO UPDATE SET " + _coalesce(PROCESS_COLUMNS[1:], "EXCLUDED"))


def _unnest(columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    return f"unnest({arrays}) AS t({', '.join(columns)})"


def pg_insert(table: str, columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    """PostgreSQL: insert rows given as one array per column unless their key exists, in
    key order (several writers take their locks in one order: no deadlock)."""
    cols = ", ".join(columns)
    return (f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {_unnest(columns, types)} "
            f"ORDER BY {cols} ON CONFLICT DO NOTHING")


def pg_lookup(table: KeyTable) -> str:
    """PostgreSQL: the id and key of the rows whose keys are given as one array per column."""
    on = " AND ".join(f"x.{c} = t.{c}" for c in table.key)
    return (f"SELECT x.id, {', '.join('x.' + c for c in table.key)} FROM {table.name} x "
            f"JOIN {_unnest(table.key, table.pg_types)} ON {on}")
