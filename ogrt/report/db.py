"""Open the database a report reads: SQLite (the daemon's embedded default) or PostgreSQL.

`ReportDB` hides the two dialects behind one small adapter, so every report's SQL is
written once (with `?` placeholders) in ogrt/report/queries.py.
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ogrt.config import Config, ConfigError, OutputConfig, load_config
from ogrt.report.timespec import to_rfc3339
from ogrt.sql.schema import DIALECTS, MIGRATES_FROM, SCHEMA_VERSION, VERSION_QUERY, MIGRATE_LOCK, create_schema


class ReportError(Exception):
    """A report cannot run: no database, bad option, unreachable server. Exit code 2."""


@dataclass(frozen=True)
class Dialect:
    """The few places where SQLite and PostgreSQL SQL differ."""

    name: str  # "sqlite" | "postgresql"

    def sql(self, text: str) -> str:
        """Turn `?` placeholders into the driver's style (queries never hold a literal `?`)."""
        if self.name == "postgresql":
            return text.replace("%", "%%").replace("?", "%s")
        return text

    def time_param(self, moment: datetime) -> Any:
        """SQLite stores RFC 3339 UTC text (sorts as time); PostgreSQL timestamptz."""
        return to_rfc3339(moment) if self.name == "sqlite" else moment

    def list_agg(self, expr: str) -> str:
        """Distinct values of `expr` joined with ','."""
        if self.name == "sqlite":
            return f"group_concat(DISTINCT {expr})"
        return f"string_agg(DISTINCT {expr}, ',')"

    def day(self, expr: str) -> str:
        """The UTC calendar day (YYYY-MM-DD text) of a stored time."""
        if self.name == "sqlite":
            return f"substr({expr}, 1, 10)"  # RFC 3339 UTC text
        return f"to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def seconds_between(self, start: str, end: str) -> str:
        """Seconds from time `start` to time `end` (NULL when either is)."""
        if self.name == "sqlite":
            return f"((julianday({end}) - julianday({start})) * 86400.0)"
        return f"EXTRACT(EPOCH FROM ({end} - {start}))"

    @property
    def ilike(self) -> str:
        """Case-insensitive LIKE (SQLite's LIKE already is, for ASCII)."""
        return "LIKE" if self.name == "sqlite" else "ILIKE"


def normalize_value(value: Any) -> Any:
    """Times as RFC 3339 UTC text, numbers as int/float, whatever the backend."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return to_rfc3339(value)
    return value


class ReportDB:
    """A read-only connection (SQLite `mode=ro`, PostgreSQL read-only transactions) plus its dialect."""

    def __init__(self, conn: Any, dialect: Dialect, where: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.where = where  # for messages: a path or a redacted URL

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one SELECT; rows as dicts with normalized values."""
        text = self.dialect.sql(sql)
        try:
            cur = self.conn.execute(text, tuple(params))
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            raise ReportError(f"{self.where}: {exc}") from exc
        except Exception as exc:  # psycopg errors (imported lazily)
            if type(exc).__module__.startswith("psycopg"):
                raise ReportError(f"{self.where}: {exc}") from exc
            raise
        return [{n: normalize_value(v) for n, v in zip(names, row)} for row in rows]

    def explain(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        """The query plan lines (EXPLAIN QUERY PLAN / EXPLAIN)."""
        prefix = "EXPLAIN QUERY PLAN " if self.dialect.name == "sqlite" else "EXPLAIN "
        cur = self.conn.execute(self.dialect.sql(prefix + sql), tuple(params))
        return [str(row[-1]) for row in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ReportDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: PRAGMA mmap_size of the read-only connections (SQLite clamps it to its compile-time limit)
MMAP_BYTES = 0x7FFF0000


def open_sqlite(path: str) -> ReportDB:
    """SQLite's mode=ro: no write is possible through this connection (reports and ogrt web)."""
    if not os.path.exists(path):
        raise ReportError(f"no OGRT database at {path} (use --db PATH or --config PATH)")
    try:
        # mode=ro: reports never write (nor create a file); query_only as well
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True, timeout=30)
        conn.execute("PRAGMA query_only = ON")
        # read the file through a memory map (up to SQLite's maximum, ~2 GiB): a report reading
        # scattered rows (a library search: ~50,000 process rows) does no read() per page
        # (measured: 0.5 → 0.3 s for those rows over 1,000,000 processes)
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        versions = _versions(conn)
    except sqlite3.Error as exc:
        text = str(exc)
        if "not a database" in text or "no such table" in text:
            raise ReportError(f"{path}: not an OGRT database ({text})") from exc
        raise ReportError(f"cannot read the OGRT database {path}: {text} (reading a WAL database "
                          "needs write access to its directory or to its -shm file)") from exc
    _check_version(versions, path, conn)
    return ReportDB(conn, Dialect("sqlite"), path)


def _versions(conn: Any) -> list[int]:
    """The schema versions a database holds (an error when it has no OGRT tables)."""
    conn.execute("SELECT 1 FROM processes LIMIT 1").fetchall()
    return [v for (v,) in conn.execute(VERSION_QUERY)]


def _check_version(versions: list[int], where: str, conn: Any) -> None:
    """Reports read the schema the outputs write (SCHEMA_VERSION); refuse any other."""
    if versions == [SCHEMA_VERSION]:
        return
    conn.close()
    found = max(versions) if versions else "unknown"
    hint = ("the daemon (or `ogrt census update`) of this release migrates it on its first write"
            if found in MIGRATES_FROM else
            "reports never convert databases: report from it with the ogrt release that wrote it")
    raise ReportError(f"{where}: database schema version {found}; this ogrt reads version "
                      f"{SCHEMA_VERSION}: {hint}")


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path), safe="/")


def _redact(dsn: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn if "://" in dsn else "postgresql"


def open_postgresql(dsn: str) -> ReportDB:
    import psycopg

    try:
        # reports never write: every transaction of the session is read-only
        conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True,
                               options="-c default_transaction_read_only=on")
        # reports are one-off scans: compiling them (JIT) costs more than it saves
        conn.execute("SET jit = off")
        # reports sort and hash whole aggregate tables (distinct counts): in memory, not on disk
        conn.execute("SET work_mem = '64MB'")
        versions = _versions(conn)
    except psycopg.Error as exc:
        raise ReportError(f"{_redact(dsn)}: {exc}".strip()) from exc
    _check_version(versions, _redact(dsn), conn)
    return ReportDB(conn, Dialect("postgresql"), _redact(dsn))


def sql_output(config: str | None, name: str | None = None) -> OutputConfig:
    """The SQL output of an ogrt.conf (read as the daemon reads it; None: the daemon's
    defaults) that reports read: the one named `name`, else the first sqlite or postgresql
    output."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise ReportError(f"config error: {exc}") from None
    return pick_sql_output(cfg, name, config or "the default config")


def pick_sql_output(cfg: Config, name: str | None, where: str) -> OutputConfig:
    """The output of `cfg` named `name` (an SQL one), else its first SQL output;
    ReportError naming `where` and the outputs when there is none."""
    sql = [o for o in cfg.outputs if o.type in DIALECTS]
    listed = ", ".join(f"{o.name} ({o.type})" for o in cfg.outputs)
    if name is None:
        if not sql:
            raise ReportError(f"{where}: no sqlite or postgresql output to report from "
                              f"(outputs: {listed})")
        return sql[0]
    for o in cfg.outputs:
        if o.name == name:
            if o.type not in DIALECTS:
                raise ReportError(f"{where}: output {name} is a {o.type} output; reports read "
                                  f"an sqlite or postgresql output (outputs: {listed})")
            return o
    raise ReportError(f"{where}: no output named {name} (outputs: {listed})")


def db_target(db: str | None = None, config: str | None = None, output: str | None = None) -> tuple[str, str]:
    """(dialect name, SQLite path or DSN) of the database a report reads: --db wins; else the
    SQL output of --config (--output NAME, or its first), or of the daemon's defaults (its
    SQLite file in the state directory)."""
    if db is None:
        out = sql_output(config, output)
        if out.type == "postgresql":
            return "postgresql", out.options["dsn"]
        return "sqlite", out.options["path"]
    if db.startswith(("postgresql://", "postgres://")) or ("=" in db and not os.path.exists(db)):
        return "postgresql", db
    return "sqlite", db


def open_target(target: tuple[str, str]) -> ReportDB:
    """Open a `db_target()`; PostgreSQL sessions are always read-only."""
    kind, where = target
    return open_postgresql(where) if kind == "postgresql" else open_sqlite(where)


def open_db(db: str | None = None, config: str | None = None, output: str | None = None) -> ReportDB:
    """Open the database of `db_target()` (the arguments are the same)."""
    return open_target(db_target(db, config, output))


# -- the one writer among the readers: `ogrt census update` ------------------------------------
class WriteDB(ReportDB):
    """A writable connection to the database the reports read (only `ogrt census update`
    writes through it): explicit transactions, SQL with `?` placeholders like the reports'."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: SQLite's write lock taken at BEGIN (no upgrade deadlock)."""
        if self.dialect.name == "postgresql":
            with self.conn.transaction():
                yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement in the current transaction; the cursor."""
        return self.conn.execute(self.dialect.sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        text = self.dialect.sql(sql)
        if self.dialect.name == "postgresql":
            with self.conn.cursor() as cur:
                cur.executemany(text, rows)
        else:
            self.conn.executemany(text, rows)


def open_writable(target: tuple[str, str]) -> WriteDB:
    """Open a `db_target()` for writing; create the schema in a new database, migrate one of
    an older version the outputs migrate (ogrt.sql.schema.MIGRATES_FROM), refuse another."""
    from ogrt.sql.schema import SchemaVersionError

    kind, where = target
    try:
        if kind == "postgresql":
            import psycopg

            try:
                conn: Any = psycopg.connect(where, connect_timeout=10, autocommit=True)
                conn.execute("SET jit = off")
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                    create_schema(conn.execute, "postgresql")
            except psycopg.Error as exc:
                raise ReportError(f"{_redact(where)}: {exc}".strip()) from exc
            return WriteDB(conn, Dialect("postgresql"), _redact(where))
        if not os.path.exists(where):
            raise ReportError(f"no OGRT database at {where} (use --db PATH or --config PATH)")
        try:
            conn = sqlite3.connect(where, timeout=60, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("BEGIN IMMEDIATE")
            try:
                create_schema(conn.execute, "sqlite")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise ReportError(f"{where}: {exc}") from exc
        return WriteDB(conn, Dialect("sqlite"), where)
    except SchemaVersionError as exc:
        raise ReportError(f"{where if kind == 'sqlite' else _redact(where)}: {exc}") from exc
