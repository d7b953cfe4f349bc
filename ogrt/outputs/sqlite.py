"""`sqlite` output: the embedded default; the schema of ogrt/sql/sqlite.sql.

One transaction (BEGIN IMMEDIATE) per batch; WAL journal. Durability: with
`synchronous = "normal"` (default) a committed batch survives a crash of the daemon, and
a power loss may roll back the batches committed since the last checkpoint (the WAL
is synced at checkpoints, every ~40 MB of changes); `synchronous = "full"` syncs the WAL at every commit (every batch).
Several writers (daemon workers) may share the file: each waits up to `busy_timeout`
seconds for the write lock; past that the batch goes to the spool and is retried.

The write path is ogrt/outputs/sqlbase.py; here only the SQLite dialect: executemany of
INSERT OR IGNORE, ids read back with chunked IN (...) lookups, and one upsert per process
row (a lighter one for rows with only their end record), the usage aggregates kept in the
same transaction from the rows' source columns read before and after (ogrt/sql/cells.py).
The database file is created 0640
(SQLite gives -wal/-shm its mode). A database of another schema
version is refused (OutputError: the runner keeps the records in its spool).
"""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ogrt.filemodes import FILE_MODE, make_dirs
from ogrt.outputs import options as opt
from ogrt.outputs.sqlbase import Row, SqlOutput
from ogrt.sql import cells
from ogrt.sql.retention import EPOCH_QUERY
from ogrt.sql.schema import (SQLITE_UPSERT_END, SQLITE_UPSERT_PROCESS, KeyTable, SetTable,
                             create_schema, sqlite_insert, sqlite_lookup, upsert_job)

_CHUNK = 500  # host parameters per IN (...) lookup
_UPSERT_JOB = upsert_job("sqlite")
# errors caused by the records themselves (not by the database being unavailable)
_REFUSED = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
            sqlite3.ProgrammingError)


class SqliteOutput(SqlOutput):
    type_name = "sqlite"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.path = self.where = os.fspath(self.options["path"])
        self.busy_timeout = float(self.options["busy_timeout"])
        self.synchronous = str(self.options["synchronous"]).upper()
        self.conn: sqlite3.Connection | None = None
        self.cells: cells.Cells | None = None

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        return opt.check(name, options, {
            "path": opt.Key((str,), check=opt.non_empty),
            "busy_timeout": opt.Key((int, float), 30.0, opt.positive),
            "synchronous": opt.Key((str,), "normal", opt.one_of("normal", "full")),
        })

    # -- connection ----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        make_dirs(os.path.dirname(os.path.abspath(self.path)))
        # SQLite gives its -wal and -shm files the database file's mode: create it 0640
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._locked_retry(conn, "PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # checkpoint the WAL every ~40 MB instead of ~4 MB: fewer fsyncs
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
            conn.execute("PRAGMA foreign_keys = OFF")
            # a page cache of up to 64 MiB instead of 2: a batch's cells and the entries it adds to
            # the indexes of processes are spread over many pages (benchmarks/outputs.py)
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA temp_store = MEMORY")  # the cells' temp tables (ogrt/sql/cells.py)
            conn.execute("BEGIN IMMEDIATE")
            try:
                create_schema(conn.execute, self.type_name)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # the write lock is waited for in _transaction(), in short steps (see there)
            conn.execute("PRAGMA busy_timeout = 0")
            self.cells = cells.Cells(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _locked_retry(self, conn: sqlite3.Connection, stmt: str, pause: float = 0.02) -> None:
        """Run `stmt`, again every `pause` seconds while the database is locked or busy, up
        to busy_timeout. Switching to WAL needs an exclusive lock, and SQLite answers
        "database is locked" at once (no busy wait, to avoid a deadlock) when two writers
        open a new file at once."""
        deadline = 0.0
        while True:
            try:
                conn.execute(stmt)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.busy_timeout
                elif now > deadline:
                    raise
                time.sleep(pause)

    def _driver_error(self) -> type[Exception]:
        return sqlite3.Error

    def _refused(self, exc: BaseException) -> bool:
        return isinstance(exc, _REFUSED)

    def _purge_epoch(self) -> int:
        assert self.conn is not None
        return self.conn.execute(EPOCH_QUERY).fetchone()[0] or 0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE (the write lock), waiting up to busy_timeout for another writer
        in 1 ms steps: SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms, so a
        worker waiting for another's batch (~30 ms) would oversleep by up to 25 ms."""
        conn = self.conn
        assert conn is not None
        self._locked_retry(conn, "BEGIN IMMEDIATE", 0.001)
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writing -------------------------------------------------------------------
    def _insert_keys(self, table: KeyTable, keys: list[tuple[Any, ...]]) -> Iterator[Sequence[Any]]:
        assert self.conn is not None
        cur = self.conn.cursor()
        cur.executemany(sqlite_insert(table.name, table.key), keys)
        want = set(keys)
        firsts = sorted({k[0] for k in keys})
        for i in range(0, len(firsts), _CHUNK):
            chunk = firsts[i:i + _CHUNK]
            for row in cur.execute(sqlite_lookup(table, len(chunk)), chunk):
                if row[1:] in want:
                    yield row

    def _insert_members(self, table: SetTable, set_ids: list[int], member_ids: list[int]) -> None:
        assert self.conn is not None
        self.conn.executemany(sqlite_insert(table.members, table.columns), zip(set_ids, member_ids))

    def _write_processes(self, with_start: Iterable[Row], end_only: Iterable[Row]) -> None:
        assert self.conn is not None and self.cells is not None
        starts, ends = list(with_start), list(end_only)
        uuids = [r[0] for r in starts] + [r[0] for r in ends]
        self.cells.before(uuids)
        cur = self.conn.cursor()
        cur.executemany(SQLITE_UPSERT_PROCESS, starts)
        cur.executemany(SQLITE_UPSERT_END, ends)
        self.cells.after(uuids)

    def _write_jobs(self, rows: list[Row]) -> None:
        assert self.conn is not None
        self.conn.executemany(_UPSERT_JOB, rows)
