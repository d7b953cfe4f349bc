"""`sqlite` output: the embedded default; the normalized schema of ogrt/sql/sqlite.sql.

One transaction (BEGIN IMMEDIATE) per batch; WAL journal. Durability: with
`synchronous = "normal"` (default) a committed batch survives a crash of the daemon, and
a power loss may roll back the batches committed since the last checkpoint (the WAL
is synced at checkpoints, every ~40 MB of changes); `synchronous = "full"` syncs the WAL at every commit (every batch).
Several writers (daemon workers) may share the file: each waits up to `busy_timeout`
seconds for the write lock; past that the batch goes to the spool and is retried.

Per batch: new executables/libraries/modules and new library/module sets (with their
members) are inserted and their ids cached (ogrt/outputs/sqlrecords.py); then each process
is one upsert of its `processes` row, which points to its sets. A database of another
schema version is refused (OutputError: the runner keeps the records in its spool).
"""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from operator import itemgetter
from typing import Any

from ogrt.outputs import options as opt
from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.sqlrecords import COLUMNS, END_COLUMNS, IDX, IdCache, ProcessRow, SetMembers, SetResolver, merge

SCHEMA_VERSION = 2  # 2: library and module sets (libsets, modsets) instead of link tables
_CHUNK = 500  # host parameters per IN (...) lookup
# errors caused by the records themselves (not by the database being unavailable)
_REFUSED = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
            sqlite3.ProgrammingError)

#: the processes columns written per row: the record columns, then the ids the backend adds
PROC_COLS = [c for c in COLUMNS if c not in ("exe_path", "exe_signature")] + [
    "executable_id", "libset_id", "late_libset_id", "modset_id"]
_UPDATES = ", ".join(f"{c} = COALESCE(excluded.{c}, processes.{c})" for c in PROC_COLS[1:])
UPSERT_PROCESS = (
    f"INSERT INTO processes ({', '.join(PROC_COLS)}) VALUES ({', '.join('?' * len(PROC_COLS))}) "
    f"ON CONFLICT (uuid) DO UPDATE SET {_UPDATES}"
)
PROC_IDX = [IDX[c] for c in COLUMNS if c not in ("exe_path", "exe_signature")]
#: ProcessRow.values -> the tuple of the record columns of PROC_COLS (at C speed)
PICK_VALUES = itemgetter(*PROC_IDX)
#: indexed columns an end record also carries (same values as its start record's)
_SHARED_INDEXED = ("host", "job_id", "uid", "start_time")
#: a row with no start record in the batch. SQLite rewrites every index whose column is in
#: the SET list, changed or not: an end record updating the row its start record wrote sets
#: only the columns it brings and no indexed column it shares with the start record (the
#: start record is authoritative for those; the end record's fill a row it inserts).
#: The columns only a start record fills are NULL in such a row: leaving them out changes
#: nothing.
#: Measured: end records ~20 % faster.
UPSERT_END = (
    f"INSERT INTO processes ({', '.join(PROC_COLS)}) VALUES ({', '.join('?' * len(PROC_COLS))}) "
    "ON CONFLICT (uuid) DO UPDATE SET " + ", ".join(
        f"{c} = COALESCE(excluded.{c}, processes.{c})"
        for c in END_COLUMNS + ("late_libset_id",) if c not in _SHARED_INDEXED)
)
SET_CACHE_LIMIT = 100_000  # set digests remembered per output (one entry: ~150 bytes)


def schema_mismatch(found: int) -> str:
    """The error for a database made by another schema version (no migration: unreleased)."""
    return (f"database schema version {found}, this OGRT writes version {SCHEMA_VERSION} "
            "(library/module sets); it does not migrate older databases: point the output "
            "at a new database (path or dsn) and keep the old one for reading")


def schema_statements(dialect: str) -> list[str]:
    """The statements of ogrt/sql/DIALECT.sql (comments removed; no literal holds '--' or ';')."""
    text = resources.files("ogrt").joinpath(f"sql/{dialect}.sql").read_text()
    text = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return [s.strip() for s in text.split(";") if s.strip()]


class SqliteOutput(Output):
    type_name = "sqlite"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.path = os.fspath(self.options["path"])
        self.busy_timeout = float(self.options.get("busy_timeout", 30.0))
        self.synchronous = str(self.options.get("synchronous", "normal")).upper()
        self.conn: sqlite3.Connection | None = None
        self.exes, self.libs, self.mods = IdCache(), IdCache(), IdCache()
        self.libsets, self.modsets = IdCache(SET_CACHE_LIMIT), IdCache(SET_CACHE_LIMIT)
        self.sets = SetResolver(self.libs, self.mods)

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        return opt.check(name, options, {
            "path": opt.Key((str,), check=opt.non_empty),
            "busy_timeout": opt.Key((int, float), 30.0, opt.positive),
            "synchronous": opt.Key((str,), "normal", opt.one_of("normal", "full")),
        })

    def open(self) -> None:
        try:
            d = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(d, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # checkpoint the WAL every ~40 MB instead of ~4 MB: fewer fsyncs (~10 % faster)
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("BEGIN IMMEDIATE")
            try:
                stmts = schema_statements("sqlite")
                conn.execute(stmts[0])  # schema_version: checked before anything else
                found = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
                if found and found != [SCHEMA_VERSION]:
                    raise OutputError(f"sqlite {self.path}: {schema_mismatch(max(found))}")
                for stmt in stmts[1:]:
                    conn.execute(stmt)
                if not found:
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            # the write lock is waited for in _begin(), in short steps (see there)
            conn.execute("PRAGMA busy_timeout = 0")
        except (sqlite3.Error, OSError) as e:
            raise OutputError(f"sqlite {self.path}: {e}") from e
        self.conn = conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. Two writers opening a new file at once: the switch needs an
        exclusive lock and SQLite answers "database is locked" at once (no busy wait, to
        avoid a deadlock), so retry until busy_timeout."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE (take the write lock), waiting up to busy_timeout for another
        writer. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between
        tries, so a worker waiting for another's batch (~30 ms) oversleeps by up to 25 ms;
        with two workers that cost a quarter of the throughput. Here: 1 ms steps."""
        deadline = 0.0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.busy_timeout
                elif now > deadline:
                    raise
                time.sleep(0.001)

    # -- id lookups ----------------------------------------------------------------
    def _pair_ids(self, table: str, cache: IdCache, keys: Iterable[tuple[str, str]]) -> None:
        """Make sure every (path, signature) of `keys` has a row in `table` and a cached id."""
        assert self.conn is not None
        missing = cache.missing(keys)
        if not missing:
            return
        cur = self.conn.cursor()
        cur.executemany(f"INSERT OR IGNORE INTO {table} (path, signature) VALUES (?, ?)", missing)
        want = set(missing)
        paths = sorted({p for p, _ in missing})
        for i in range(0, len(paths), _CHUNK):
            chunk = paths[i:i + _CHUNK]
            q = f"SELECT id, path, signature FROM {table} WHERE path IN ({','.join('?' * len(chunk))})"
            for ident, path, sig in cur.execute(q, chunk):
                if (path, sig) in want:
                    cache.stage((path, sig), ident)

    def _module_ids(self, names: Iterable[str]) -> None:
        assert self.conn is not None
        missing = self.mods.missing(names)
        if not missing:
            return
        cur = self.conn.cursor()
        cur.executemany("INSERT OR IGNORE INTO modules (name) VALUES (?)", [(n,) for n in missing])
        for i in range(0, len(missing), _CHUNK):
            chunk = missing[i:i + _CHUNK]
            q = f"SELECT id, name FROM modules WHERE name IN ({','.join('?' * len(chunk))})"
            for ident, name in cur.execute(q, chunk):
                self.mods.stage(name, ident)

    def _set_ids(self, kind: str, member: str, cache: IdCache, sets: SetMembers) -> None:
        """Make sure every set of `sets` (digest -> member ids) has a row in `{kind}s`, its
        members in `{kind}_members`, and a cached id."""
        assert self.conn is not None
        missing = cache.missing(sets)
        if not missing:
            return
        cur = self.conn.cursor()
        cur.executemany(f"INSERT OR IGNORE INTO {kind}s (digest) VALUES (?)", [(d,) for d in missing])
        for i in range(0, len(missing), _CHUNK):
            chunk = missing[i:i + _CHUNK]
            q = f"SELECT id, digest FROM {kind}s WHERE digest IN ({','.join('?' * len(chunk))})"
            for ident, digest in cur.execute(q, chunk):
                cache.stage(digest, ident)
        # members of a set another writer made already are there: INSERT OR IGNORE (rare:
        # only on a cache miss)
        ids = cache.ids
        cur.executemany(
            f"INSERT OR IGNORE INTO {kind}_members ({kind}_id, {member}_id) VALUES (?, ?)",
            [(ids[d], m) for d in missing for m in sets[d]])

    # -- writing -------------------------------------------------------------------
    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        if self.conn is None:
            self.open()
        conn = self.conn
        assert conn is not None
        rows = merge(records)
        caches = (self.exes, self.libs, self.mods, self.libsets, self.modsets, *self.sets.caches)
        try:
            self._begin(conn)
            try:
                self._write_rows(rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException as e:
            for c in caches:
                c.rollback()
            if isinstance(e, sqlite3.Error) and not isinstance(e, _REFUSED):
                raise OutputError(f"sqlite {self.path}: {e}") from e
            raise  # a value this database refuses: the runner isolates the record
        for c in caches:
            c.commit()

    def _write_rows(self, rows: list[ProcessRow]) -> None:
        assert self.conn is not None
        self._pair_ids("executables", self.exes, (k for r in rows if (k := r.exe_key)))
        self._pair_ids("libraries", self.libs, self.sets.missing_libs(rows))
        self._module_ids(self.sets.missing_modules(rows))
        digests, libsets, modsets = self.sets.resolve(rows)
        self._set_ids("libset", "library", self.libsets, libsets)
        self._set_ids("modset", "module", self.modsets, modsets)
        exe_ids, ls_ids, ms_ids = self.exes.ids, self.libsets.ids, self.modsets.ids
        pick = PICK_VALUES
        with_start: list[tuple[Any, ...]] = []
        end_only: list[tuple[Any, ...]] = []
        for r, (start, late, mods) in zip(rows, digests):
            v = r.values
            k = r.exe_key
            (with_start if r.has_start else end_only).append(pick(v) + (
                exe_ids[k] if k else None,
                ls_ids[start] if start else None,
                ls_ids[late] if late else None,
                ms_ids[mods] if mods else None))
        cur = self.conn.cursor()
        if with_start:
            cur.executemany(UPSERT_PROCESS, with_start)
        if end_only:
            cur.executemany(UPSERT_END, end_only)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None
