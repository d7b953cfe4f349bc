"""`postgresql` output: the schema of ogrt/sql/postgresql.sql, written with COPY.

The write path is ogrt/outputs/sqlbase.py; here only the PostgreSQL dialect: new keys are
inserted as arrays (unnest), sorted, ON CONFLICT DO NOTHING, so several workers never
deadlock; the process rows are COPYed into a temporary staging table and upserted into
`processes` by one INSERT ... SELECT in uuid order. Once the caches are warm a batch is
one COPY and one INSERT ... SELECT.
A committed batch is as durable as the server's settings make a commit.

The schema is created on connect, under a transaction-level advisory lock so concurrent
workers do not race; a database of another schema version is refused (OutputError: the
runner keeps the records in its spool). A lost connection raises OutputError (the runner
spools the batch and retries); the next write reconnects.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg costs ~23 MB per process: imported only where a postgresql output is used
    import psycopg

from ogrt.outputs import options as opt
from ogrt.outputs.sqlbase import Row, SqlOutput
from ogrt.sql.retention import PG_WRITER_GUARD
from ogrt.sql.schema import (MIGRATE_LOCK, PG_COPY_STAGE, PG_STAGING, PG_UPSERT_PROCESSES, KeyTable, SetTable,
                             create_schema, pg_insert, pg_lookup, upsert_job)

_UPSERT_JOB = upsert_job("postgresql")


class PostgresOutput(SqlOutput):
    type_name = "postgresql"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.where = name  # the DSN may hold a password
        self.dsn: str = self.options["dsn"]
        self.connect_timeout = float(self.options["connect_timeout"])
        self.statement_timeout = float(self.options["statement_timeout"])
        self.conn: psycopg.Connection[Any] | None = None

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        out = opt.check(name, options, {
            "dsn": opt.Key((str,), check=opt.non_empty),
            "connect_timeout": opt.Key((int, float), 10.0, opt.positive),
            "statement_timeout": opt.Key((int, float), 300.0, opt.positive),
        })
        import psycopg
        try:
            psycopg.conninfo.conninfo_to_dict(out["dsn"])
        except psycopg.ProgrammingError as e:
            raise opt.ConfigError(f"outputs.{name}.dsn", f"not a libpq conninfo string or URL: {e}")
        return out

    # -- connection ----------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        """Connect, create the schema (or check its version) and this session's staging table."""
        import psycopg
        conn = psycopg.connect(
            self.dsn, connect_timeout=max(1, round(self.connect_timeout)),
            application_name=f"ogrt-{self.name}-{self.worker_index}",
            options=f"-c statement_timeout={int(self.statement_timeout * 1000)}")
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                create_schema(conn.execute, self.type_name)
            with conn.transaction():
                conn.execute(PG_STAGING)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def _driver_error(self) -> type[Exception]:
        import psycopg
        return psycopg.Error

    def _refused(self, exc: BaseException) -> bool:
        """A value the server refuses, on a connection that is still up."""
        import psycopg
        return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)) and self.conn is not None

    def _purge_epoch(self) -> int:
        """The purge lock shared, then the epoch (two statements, one round trip: the
        second reads after the wait)."""
        assert self.conn is not None
        cur = self.conn.execute(PG_WRITER_GUARD)
        cur.nextset()
        row = cur.fetchone()
        return (row[0] if row else 0) or 0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        conn = self.conn
        assert conn is not None
        try:
            with conn.transaction():
                yield
        except BaseException:
            if conn.closed or conn.broken:
                self.close()
            raise

    # -- writing -------------------------------------------------------------------
    def _insert_keys(self, table: KeyTable, keys: list[tuple[Any, ...]]) -> list[Sequence[Any]]:
        assert self.conn is not None
        cur = self.conn.cursor()
        columns = [[k[i] for k in keys] for i in range(len(table.key))]
        cur.execute(pg_insert(table.name, table.key, table.pg_types), columns)
        cur.execute(pg_lookup(table), columns)
        return cur.fetchall()

    def _insert_members(self, table: SetTable, set_ids: list[int], member_ids: list[int]) -> None:
        assert self.conn is not None
        self.conn.execute(pg_insert(table.members, table.columns, ("bigint", "bigint")),
                          (set_ids, member_ids))

    def _write_processes(self, with_start: Iterable[Row], end_only: Iterable[Row]) -> None:
        assert self.conn is not None
        cur = self.conn.cursor()
        with cur.copy(PG_COPY_STAGE) as cp:
            write = cp.write_row
            for rows in (with_start, end_only):
                for row in rows:
                    write(row)
        cur.execute(PG_UPSERT_PROCESSES)

    def _write_jobs(self, rows: list[Row]) -> None:
        assert self.conn is not None
        self.conn.cursor().executemany(_UPSERT_JOB, rows)
