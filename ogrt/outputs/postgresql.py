"""`postgresql` output: the normalized schema of ogrt/sql/postgresql.sql, written with COPY.

Per batch, in one transaction: new executables/libraries/modules are inserted (sorted,
ON CONFLICT DO NOTHING) and their ids cached; the merged process rows are COPYed into a
temporary staging table and upserted into `processes` by uuid (sorted by uuid, so several
workers never deadlock). Library and module links are COPYed straight into their tables:
the process row lock taken by the upsert keeps other writers from adding links of the same
process meanwhile, so the links already there are known exactly (none for a process this
transaction inserted; read back for one that existed: the other half of a start/end pair,
a replayed batch) and only the missing ones are sent.
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
# a library first reported by the end record (late) and then listed by the start record
SET_EARLY = (
    "UPDATE process_libraries SET late = false FROM unnest(%s::bigint[], %s::bigint[]) "
    "AS t(p, l) WHERE process_id = t.p AND library_id = t.l"
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
        # New links are COPYed straight into the link tables. No other transaction can add
        # links of these processes before we commit: every writer upserts the process row
        # first, which locks it. So the links a process already has are known exactly:
        # none when this transaction inserted it (xmax = 0), else read them here.
        have_libs: dict[tuple[int, int], bool] = {}
        have_mods: set[tuple[int, int]] = set()
        stale = [pids[r.uuid][0] for r in rows if not pids[r.uuid][1]]
        if stale:
            cur.execute("SELECT process_id, library_id, late FROM process_libraries "
                        "WHERE process_id = ANY(%s)", (stale,))
            have_libs = {(p, lib): late for p, lib, late in cur.fetchall()}
            if any(r.modules for r in rows if not pids[r.uuid][1]):
                cur.execute("SELECT process_id, module_id FROM process_modules "
                            "WHERE process_id = ANY(%s)", (stale,))
                have_mods = set(cur.fetchall())
        now_early: list[tuple[int, int]] = []  # links known as late, now seen at start
        if any(r.libs for r in rows):
            with cur.copy("COPY process_libraries (process_id, library_id, late) FROM STDIN") as cp:
                write = cp.write_row
                for r in rows:
                    if not r.libs:
                        continue
                    pid = pids[r.uuid][0]
                    if pids[r.uuid][1]:
                        for k, late in r.libs.items():
                            write((pid, lib_ids[k], late))
                        continue
                    for k, late in r.libs.items():
                        key = (pid, lib_ids[k])
                        old = have_libs.get(key)
                        if old is None:
                            write((pid, key[1], late))
                        elif old and not late:
                            now_early.append(key)
        if now_early:
            cur.execute(SET_EARLY, ([p for p, _ in now_early], [lib for _, lib in now_early]))
        if any(r.modules for r in rows):
            with cur.copy("COPY process_modules (process_id, module_id) FROM STDIN") as cp:
                for r in rows:
                    if r.modules:
                        pid = pids[r.uuid][0]
                        for m in r.modules:
                            key = (pid, mod_ids[m])
                            if key not in have_mods:
                                cp.write_row(key)

    def close(self) -> None:
        self._disconnect()
