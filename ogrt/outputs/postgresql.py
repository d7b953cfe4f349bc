"""`postgresql` output: the normalized schema of ogrt/sql/postgresql.sql, written with COPY.

Per batch, in one transaction: new executables/libraries/modules are inserted (sorted,
ON CONFLICT DO NOTHING) and their ids cached; the merged process rows are COPYed into a
temporary staging table and upserted into `processes` by uuid (sorted by uuid, so several
workers never deadlock). Library and module links of processes this transaction inserted
are COPYed straight into their tables (they cannot exist yet); links of processes that
existed (the other half of a start/end pair, a replayed batch) are sent as arrays and
upserted (unnest ... ON CONFLICT), in sorted order.
A committed batch is as durable as the server's settings make a commit.

The schema is created or migrated on connect, under a transaction-level advisory lock so
concurrent workers do not race. A lost connection raises OutputError (the runner spools
the batch and retries); the next write reconnects.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from ogrt.outputs import options as opt
from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.sqlite import SCHEMA_VERSION, schema_statements
from ogrt.outputs.sqlrecords import COLUMNS, IDX, IdCache, ProcessRow, merge

MIGRATE_LOCK = 0x4F47_5254_0001  # pg_advisory_xact_lock key ("OGRT" 1)

_PROC_COLS = [c for c in COLUMNS if c not in ("exe_path", "exe_signature")] + ["executable_id"]
_PROC_IDX = [IDX[c] for c in _PROC_COLS[:-1]]
_TYPES = {
    "uuid": "text", "host": "text", "peer": "text", "job_id": "text", "pid": "integer",
    "ppid": "integer", "uid": "bigint", "gid": "bigint", "username": "text", "args": "jsonb",
    "cwd": "text", "env": "jsonb", "rank": "integer", "start_time": "timestamptz",
    "end_time": "timestamptz", "exit_status": "integer", "duration": "double precision",
    "utime": "double precision", "stime": "double precision", "maxrss_kb": "bigint",
    "minflt": "bigint", "majflt": "bigint", "inblock": "bigint", "oublock": "bigint",
    "nvcsw": "bigint", "nivcsw": "bigint", "executable_id": "bigint",
}
_COLS = ", ".join(_PROC_COLS)
STAGING = [
    "CREATE TEMP TABLE IF NOT EXISTS ogrt_stage_proc ("
    + ", ".join(f"{c} {_TYPES[c]}" for c in _PROC_COLS) + ") ON COMMIT DELETE ROWS",
]
UPSERT_PROCESSES = (
    f"INSERT INTO processes ({_COLS}) SELECT {_COLS} FROM ogrt_stage_proc ORDER BY uuid "
    "ON CONFLICT (uuid) DO UPDATE SET "
    + ", ".join(f"{c} = COALESCE(EXCLUDED.{c}, processes.{c})" for c in _PROC_COLS[1:])
    + " RETURNING uuid, id, (xmax = 0)"  # xmax = 0: inserted now, so it has no links yet
)
# links of processes that existed before this transaction: rows sent as three arrays
# (unique per batch: merge() folds each process once), upserted in sorted order
UPSERT_LIBS = (
    "INSERT INTO process_libraries (process_id, library_id, late) "
    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::boolean[]) ORDER BY 1, 2 "
    "ON CONFLICT (process_id, library_id) DO UPDATE "
    "SET late = process_libraries.late AND EXCLUDED.late"
)
UPSERT_MODS = (
    "INSERT INTO process_modules (process_id, module_id) "
    "SELECT * FROM unnest(%s::bigint[], %s::bigint[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING"
)


def _migrate(conn: psycopg.Connection[Any]) -> None:
    """Bring a database made by an earlier schema up to date (only when needed: these
    statements lock tables)."""
    for (table, name) in conn.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid IN ('process_libraries'::regclass, 'process_modules'::regclass)"
            ).fetchall():
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "{name}"')
    opts = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'processes'::regclass"
                        ).fetchone()
    if not opts or not opts[0] or "fillfactor=70" not in opts[0]:
        conn.execute("ALTER TABLE processes SET (fillfactor = 70)")


class PostgresOutput(Output):
    type_name = "postgresql"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.dsn: str = self.options["dsn"]
        self.connect_timeout = float(self.options.get("connect_timeout", 10.0))
        self.statement_timeout = float(self.options.get("statement_timeout", 300.0))
        self.conn: psycopg.Connection[Any] | None = None
        self.exes, self.libs, self.mods = IdCache(), IdCache(), IdCache()

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        out = opt.check(name, options, {
            "dsn": opt.Key((str,), check=opt.non_empty),
            "connect_timeout": opt.Key((int, float), 10.0, opt.positive),
            "statement_timeout": opt.Key((int, float), 300.0, opt.positive),
        })
        try:
            psycopg.conninfo.conninfo_to_dict(out["dsn"])
        except psycopg.ProgrammingError as e:
            raise opt.ConfigError(f"outputs.{name}.dsn", f"not a libpq conninfo string or URL: {e}")
        return out

    # -- connection ----------------------------------------------------------------
    def open(self) -> None:
        self._disconnect()
        try:
            conn = psycopg.connect(
                self.dsn, connect_timeout=max(1, round(self.connect_timeout)),
                application_name=f"ogrt-{self.name}-{self.worker_index}",
                options=f"-c statement_timeout={int(self.statement_timeout * 1000)}")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                for stmt in schema_statements("postgresql"):
                    conn.execute(stmt)
                if conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:  # type: ignore[index]
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
                _migrate(conn)
            with conn.transaction():
                for stmt in STAGING:
                    conn.execute(stmt)
        except psycopg.Error as e:
            raise OutputError(f"postgresql {self.name}: cannot connect or set up: {e}") from e
        self.conn = conn

    def _disconnect(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None

    # -- id lookups ----------------------------------------------------------------
    def _pair_ids(self, cur: psycopg.Cursor[Any], table: str, cache: IdCache,
                  keys: Iterable[tuple[str, str]]) -> None:
        missing = cache.missing(keys)
        if not missing:
            return
        paths = [p for p, _ in missing]
        sigs = [s for _, s in missing]
        cur.execute(f"INSERT INTO {table} (path, signature) SELECT p, s FROM "
                    "unnest(%s::text[], %s::text[]) AS t(p, s) ORDER BY p, s "
                    "ON CONFLICT DO NOTHING", (paths, sigs))
        cur.execute(f"SELECT x.id, x.path, x.signature FROM {table} x JOIN "
                    "unnest(%s::text[], %s::text[]) AS t(p, s) ON x.path = t.p AND x.signature = t.s",
                    (paths, sigs))
        for ident, path, sig in cur.fetchall():
            cache.stage((path, sig), ident)

    def _module_ids(self, cur: psycopg.Cursor[Any], names: Iterable[str]) -> None:
        missing = self.mods.missing(names)
        if not missing:
            return
        cur.execute("INSERT INTO modules (name) SELECT n FROM unnest(%s::text[]) AS t(n) "
                    "ORDER BY n ON CONFLICT DO NOTHING", (missing,))
        cur.execute("SELECT m.id, m.name FROM modules m JOIN unnest(%s::text[]) AS t(n) "
                    "ON m.name = t.n", (missing,))
        for ident, name in cur.fetchall():
            self.mods.stage(name, ident)

    # -- writing -------------------------------------------------------------------
    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        if self.conn is None or self.conn.closed:
            self.open()
        conn = self.conn
        assert conn is not None
        rows = merge(records)
        caches = (self.exes, self.libs, self.mods)
        try:
            with conn.transaction():
                self._write_rows(conn, rows)
        except BaseException as e:
            for c in caches:
                c.rollback()
            if conn.closed or conn.broken:
                self._disconnect()
            if isinstance(e, psycopg.Error) and not (
                    isinstance(e, (psycopg.DataError, psycopg.IntegrityError)) and self.conn):
                raise OutputError(f"postgresql {self.name}: {type(e).__name__}: {e}") from e
            raise  # a value the server refuses: the runner isolates the record
        for c in caches:
            c.commit()

    def _write_rows(self, conn: psycopg.Connection[Any], rows: list[ProcessRow]) -> None:
        cur = conn.cursor()
        self._pair_ids(cur, "executables", self.exes, (k for r in rows if (k := r.exe_key)))
        self._pair_ids(cur, "libraries", self.libs, (k for r in rows for k in r.libs))
        self._module_ids(cur, (m for r in rows for m in r.modules))
        exe_ids = self.exes.ids
        with cur.copy(f"COPY ogrt_stage_proc ({_COLS}) FROM STDIN") as cp:
            for r in rows:
                v = r.values
                k = r.exe_key
                cp.write_row([v[i] for i in _PROC_IDX] + [exe_ids[k] if k else None])
        cur.execute(UPSERT_PROCESSES)
        pids = {uuid: (ident, fresh) for uuid, ident, fresh in cur.fetchall()}
        lib_ids, mod_ids = self.libs.ids, self.mods.ids
        fresh = [r for r in rows if pids[r.uuid][1]]
        stale = [r for r in rows if not pids[r.uuid][1]]
        # links of processes inserted by this transaction cannot conflict: COPY them straight
        # in; links of processes that existed (the other record of a pair, a replayed batch)
        # go through a staging table and an upsert
        if any(r.libs for r in fresh):
            with cur.copy("COPY process_libraries (process_id, library_id, late) FROM STDIN") as cp:
                write = cp.write_row
                for r in fresh:
                    if r.libs:
                        pid = pids[r.uuid][0]
                        for k, late in r.libs.items():
                            write((pid, lib_ids[k], late))
        if any(r.modules for r in fresh):
            with cur.copy("COPY process_modules (process_id, module_id) FROM STDIN") as cp:
                for r in fresh:
                    if r.modules:
                        pid = pids[r.uuid][0]
                        for m in r.modules:
                            cp.write_row((pid, mod_ids[m]))
        p_ids: list[int] = []
        l_ids: list[int] = []
        lates: list[bool] = []
        for r in stale:
            if r.libs:
                pid = pids[r.uuid][0]
                for k, late in r.libs.items():
                    p_ids.append(pid)
                    l_ids.append(lib_ids[k])
                    lates.append(late)
        if p_ids:
            cur.execute(UPSERT_LIBS, (p_ids, l_ids, lates))
        p_ids, m_ids = [], []
        for r in stale:
            if r.modules:
                pid = pids[r.uuid][0]
                for m in r.modules:
                    p_ids.append(pid)
                    m_ids.append(mod_ids[m])
        if p_ids:
            cur.execute(UPSERT_MODS, (p_ids, m_ids))

    def close(self) -> None:
        self._disconnect()
