"""`postgresql` output: the normalized schema of ogrt/sql/postgresql.sql, written with COPY.

Per batch, in one transaction: new executables/libraries/modules, then new library sets and
module sets (content-addressed by digest, with their members), are inserted (sorted, ON
CONFLICT DO NOTHING, so several workers never deadlock) and their ids cached; the merged
process rows, which point to their sets, are COPYed into a temporary staging table and
upserted into `processes` by uuid (sorted by uuid). Once the caches are warm a batch is one
COPY and one INSERT ... SELECT.
A committed batch is as durable as the server's settings make a commit.

The schema is created on connect, under a transaction-level advisory lock so concurrent
workers do not race; a database of another schema version is refused (OutputError: the
runner keeps the records in its spool). A lost connection raises OutputError (the runner
spools the batch and retries); the next write reconnects.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg costs ~23 MB per process: imported only where a postgresql output is used
    import psycopg

from ogrt.outputs import options as opt
from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.sqlite import (PICK_VALUES, PROC_COLS, SCHEMA_VERSION, SET_CACHE_LIMIT,
                                 schema_mismatch, schema_statements)
from ogrt.outputs.sqlrecords import IdCache, ProcessRow, SetMembers, SetResolver, merge

MIGRATE_LOCK = 0x4F47_5254_0001  # pg_advisory_xact_lock key ("OGRT" 1)

_TYPES = {
    "uuid": "text", "host": "text", "peer": "text", "job_id": "text", "pid": "integer",
    "ppid": "integer", "uid": "bigint", "gid": "bigint", "username": "text", "args": "jsonb",
    "cwd": "text", "env": "jsonb", "rank": "integer", "start_time": "timestamptz",
    "end_time": "timestamptz", "exit_status": "integer", "duration": "double precision",
    "utime": "double precision", "stime": "double precision", "maxrss_kb": "bigint",
    "minflt": "bigint", "majflt": "bigint", "inblock": "bigint", "oublock": "bigint",
    "nvcsw": "bigint", "nivcsw": "bigint", "executable_id": "bigint", "libset_id": "bigint",
    "late_libset_id": "bigint", "modset_id": "bigint",
}
_COLS = ", ".join(PROC_COLS)
STAGING = [
    "CREATE TEMP TABLE IF NOT EXISTS ogrt_stage_proc ("
    + ", ".join(f"{c} {_TYPES[c]}" for c in PROC_COLS) + ") ON COMMIT DELETE ROWS",
]
UPSERT_PROCESSES = (
    f"INSERT INTO processes ({_COLS}) SELECT {_COLS} FROM ogrt_stage_proc ORDER BY uuid "
    "ON CONFLICT (uuid) DO UPDATE SET "
    + ", ".join(f"{c} = COALESCE(EXCLUDED.{c}, processes.{c})" for c in PROC_COLS[1:])
)


class PostgresOutput(Output):
    type_name = "postgresql"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.dsn: str = self.options["dsn"]
        self.connect_timeout = float(self.options.get("connect_timeout", 10.0))
        self.statement_timeout = float(self.options.get("statement_timeout", 300.0))
        self.conn: psycopg.Connection[Any] | None = None
        self.exes, self.libs, self.mods = IdCache(), IdCache(), IdCache()
        self.libsets, self.modsets = IdCache(SET_CACHE_LIMIT), IdCache(SET_CACHE_LIMIT)
        self.sets = SetResolver(self.libs, self.mods)

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
    def open(self) -> None:
        import psycopg
        self._disconnect()
        try:
            conn = psycopg.connect(
                self.dsn, connect_timeout=max(1, round(self.connect_timeout)),
                application_name=f"ogrt-{self.name}-{self.worker_index}",
                options=f"-c statement_timeout={int(self.statement_timeout * 1000)}")
            try:
                self._set_up(conn)
            except BaseException:
                conn.close()
                raise
        except psycopg.Error as e:
            raise OutputError(f"postgresql {self.name}: cannot connect or set up: {e}") from e
        self.conn = conn

    def _set_up(self, conn: psycopg.Connection[Any]) -> None:
        """Create the schema (or check its version) and this session's staging table."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            stmts = schema_statements("postgresql")
            conn.execute(stmts[0])  # schema_version: checked before anything else
            found = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
            if found and found != [SCHEMA_VERSION]:
                raise OutputError(f"postgresql {self.name}: {schema_mismatch(max(found))}")
            if not found:
                # only a new database gets DDL: CREATE INDEX IF NOT EXISTS locks its table
                # even when the index exists, and would deadlock with a worker writing
                for stmt in stmts[1:]:
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        with conn.transaction():
            for stmt in STAGING:
                conn.execute(stmt)

    def _disconnect(self) -> None:
        import psycopg
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

    def _set_ids(self, cur: psycopg.Cursor[Any], kind: str, member: str, cache: IdCache,
                 sets: SetMembers) -> None:
        """Make sure every set of `sets` (digest -> member ids) has a row in `{kind}s`, its
        members in `{kind}_members`, and a cached id."""
        missing = cache.missing(sets)
        if not missing:
            return
        cur.execute(f"INSERT INTO {kind}s (digest) SELECT d FROM unnest(%s::bytea[]) AS t(d) "
                    "ORDER BY d ON CONFLICT DO NOTHING", (missing,))
        cur.execute(f"SELECT s.id, s.digest FROM {kind}s s JOIN unnest(%s::bytea[]) AS t(d) "
                    "ON s.digest = t.d", (missing,))
        for ident, digest in cur.fetchall():
            cache.stage(bytes(digest), ident)
        # a set another writer made (committed) has its members already: DO NOTHING (rare:
        # only on a cache miss)
        ids = cache.ids
        set_col = [ids[d] for d in missing for _ in sets[d]]
        member_col = [m for d in missing for m in sets[d]]
        cur.execute(f"INSERT INTO {kind}_members ({kind}_id, {member}_id) SELECT s, m FROM "
                    "unnest(%s::bigint[], %s::bigint[]) AS t(s, m) ORDER BY s, m "
                    "ON CONFLICT DO NOTHING", (set_col, member_col))

    # -- writing -------------------------------------------------------------------
    def write(self, records: Sequence[dict[str, Any]]) -> None:
        import psycopg
        if not records:
            return
        if self.conn is None or self.conn.closed:
            self.open()
        conn = self.conn
        assert conn is not None
        rows = merge(records)
        caches = (self.exes, self.libs, self.mods, self.libsets, self.modsets, *self.sets.caches)
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
        self._pair_ids(cur, "libraries", self.libs, self.sets.missing_libs(rows))
        self._module_ids(cur, self.sets.missing_modules(rows))
        digests, libsets, modsets = self.sets.resolve(rows)
        self._set_ids(cur, "libset", "library", self.libsets, libsets)
        self._set_ids(cur, "modset", "module", self.modsets, modsets)
        exe_ids, ls_ids, ms_ids = self.exes.ids, self.libsets.ids, self.modsets.ids
        pick = PICK_VALUES
        with cur.copy(f"COPY ogrt_stage_proc ({_COLS}) FROM STDIN") as cp:
            write = cp.write_row
            for r, (start, late, mods) in zip(rows, digests):
                v = r.values
                k = r.exe_key
                write(pick(v) + (
                    exe_ids[k] if k else None,
                    ls_ids[start] if start else None,
                    ls_ids[late] if late else None,
                    ms_ids[mods] if mods else None))
        cur.execute(UPSERT_PROCESSES)

    def close(self) -> None:
        self._disconnect()
