"""The write path of the SQL outputs, once: `SqlOutput`; sqlite.py and postgresql.py add
only their dialect (connecting, transactions, how rows are inserted, which errors mean
"the records are refused").

Per batch, in one transaction: job records (job_start/job_end) are upserted into `jobs`
by job id; `merge()` folds the records into one row per process
(ogrt/outputs/sqlrecords.py); the executables, libraries and modules without a cached id
are inserted (unless there) and their ids cached, then likewise the library sets and
module sets (content-addressed by digest) with their members; last, each process row,
which points to those ids, is upserted by uuid. Once the caches are warm a batch is only
the process rows. A failed transaction removes the ids it cached (`IdCache.rollback`), so
no cached id is left that the database does not hold.

Purges: `ogrt purge` may delete shared rows (sets, executables, libraries, modules) that no
process refers to any more, and bumps the purge epoch as it does; each transaction reads
the epoch first (`_purge_epoch`) and drops every cached id when it changed, so no process
row is written pointing to a deleted row (ogrt/sql/retention.py).

Errors: a driver error the dialect classes as refused (a value the database will not
take) is raised as it is, so the runner isolates the record; any other driver error means
the database is unavailable: OutputError, the runner spools the batch and retries.
"""
from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from typing import Any

from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.sqlrecords import (IdCache, ProcessRow, RowSets, SetMembers, SetResolver, job_rows,
                                    merge, row_values, split_jobs)
from ogrt.sql import schema
from ogrt.sql.schema import KeyTable, SchemaVersionError, SetTable

SET_CACHE_LIMIT = 100_000  # set digests remembered per output (one entry: ~150 bytes)
#: a process row as written: its PROCESS_COLUMNS values
Row = tuple[Any, ...]


class SqlOutput(Output):
    """An output writing the SQL schema of ogrt/sql/schema.py."""

    #: the database, for messages (a path; never a DSN, which may hold a password)
    where: str

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.conn: Any = None
        self.exes, self.libs, self.mods = IdCache(), IdCache(), IdCache()
        self.libsets, self.modsets = IdCache(SET_CACHE_LIMIT), IdCache(SET_CACHE_LIMIT)
        self.sets = SetResolver(self.libs, self.mods)
        self._caches = (self.exes, self.libs, self.mods, self.libsets, self.modsets,
                        *self.sets.caches)
        self._epoch = 0

    # -- the dialect -----------------------------------------------------------------
    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new connection with the schema created or checked (schema.create_schema)."""

    @abc.abstractmethod
    def _driver_error(self) -> type[Exception]:
        """The base class of the driver's errors."""

    @abc.abstractmethod
    def _refused(self, exc: BaseException) -> bool:
        """Whether a driver error that failed a transaction refuses the records themselves
        (rather than meaning the database is unavailable)."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """Begin; commit at the end of the block, roll back when it raises."""

    @abc.abstractmethod
    def _insert_keys(self, table: KeyTable, keys: list[tuple[Any, ...]]) -> Iterable[Sequence[Any]]:
        """Insert the rows of `table` with these keys (sorted) unless there; return the
        (id, *key) of each."""

    @abc.abstractmethod
    def _insert_members(self, table: SetTable, set_ids: list[int], member_ids: list[int]) -> None:
        """Insert the rows (set_ids[i], member_ids[i]) unless there."""

    @abc.abstractmethod
    def _write_processes(self, with_start: Iterable[Row], end_only: Iterable[Row]) -> None:
        """Upsert the process rows: those with their start record in the batch, and those
        with only their end record (each iterable read once)."""

    @abc.abstractmethod
    def _purge_epoch(self) -> int:
        """In the transaction, before any id is used: the purge epoch (0: never purged).
        PostgreSQL also takes the purge lock shared here (see ogrt/sql/retention.py)."""

    @abc.abstractmethod
    def _write_jobs(self, rows: list[Row]) -> None:
        """Upsert job rows (JOB_COLUMNS tuples) with schema.upsert_job(dialect)."""

    def _connected(self) -> bool:
        return self.conn is not None

    # -- the algorithm ---------------------------------------------------------------
    def open(self) -> None:
        self.close()
        try:
            self.conn = self._connect()
        except SchemaVersionError as e:
            raise OutputError(f"{self.type_name} {self.where}: {e}") from e
        except (self._driver_error(), OSError) as e:
            raise OutputError(f"{self.type_name} {self.where}: cannot connect or set up: {e}") from e

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        if not self._connected():
            self.open()
        processes, jobs = split_jobs(records)
        rows = merge(processes)
        try:
            with self._transaction():
                epoch = self._purge_epoch()
                if epoch != self._epoch:  # a purge may have deleted rows whose ids we hold
                    for c in self._caches:
                        c.clear()
                    self._epoch = epoch
                if jobs:
                    self._write_jobs(job_rows(jobs))
                self._write_rows(rows)
        except BaseException as e:
            for c in self._caches:
                c.rollback()
            if isinstance(e, self._driver_error()) and not self._refused(e):
                raise OutputError(f"{self.type_name} {self.where}: {type(e).__name__}: {e}") from e
            raise  # a value the database refuses: the runner isolates the record
        for c in self._caches:
            c.commit()

    def _write_rows(self, rows: list[ProcessRow]) -> None:
        sets = self.sets
        self._ids(schema.EXECUTABLES, self.exes, (k for r in rows if (k := r.exe_key)))
        self._ids(schema.LIBRARIES, self.libs, sets.missing_libs(rows))
        self._ids(schema.MODULES, self.mods, sets.missing_modules(rows))
        digests, libsets, modsets = sets.resolve(rows)
        self._set_ids(schema.LIBSETS, self.libsets, libsets)
        self._set_ids(schema.MODSETS, self.modsets, modsets)
        self._write_processes(self._row_tuples(rows, digests, True),
                              self._row_tuples(rows, digests, False))

    def _row_tuples(self, rows: list[ProcessRow], digests: list[RowSets],
                    with_start: bool) -> Iterator[Row]:
        """The row tuples of the processes whose start record is (with_start) or is not in
        the batch, made one at a time as the dialect writes them (a list of them all would
        keep a batch of tuples alive for the garbage collector to traverse)."""
        exe_ids, ls_ids, ms_ids = self.exes.ids, self.libsets.ids, self.modsets.ids
        pick = row_values
        for r, (start, late, mods) in zip(rows, digests):
            if r.has_start is with_start:
                k = r.exe_key
                yield pick(r.values) + (
                    exe_ids[k] if k else None,
                    ls_ids[start] if start else None,
                    ls_ids[late] if late else None,
                    ms_ids[mods] if mods else None)

    def _ids(self, table: KeyTable, cache: IdCache, keys: Iterable[Any]) -> None:
        """Make sure every key has a row in `table` and a cached id. A key of one column
        is cached as the value, of two as a tuple."""
        missing = cache.missing(keys)
        if not missing:
            return
        if len(table.key) == 1:
            for ident, key in self._insert_keys(table, [(k,) for k in missing]):
                cache.stage(key, ident)
        else:
            for ident, *key in self._insert_keys(table, missing):
                cache.stage(tuple(key), ident)

    def _set_ids(self, table: SetTable, cache: IdCache, sets: SetMembers) -> None:
        """Make sure every set of `sets` (digest -> member ids) has a row, its members and a
        cached id. The members of a set another writer made are there already: inserted
        unless there (rare: only on a cache miss)."""
        missing = cache.missing(sets)
        if not missing:
            return
        self._ids(table.sets, cache, missing)
        ids = cache.ids  # two columns, not a tuple per member: fewer objects to collect
        self._insert_members(table, [ids[d] for d in missing for _ in sets[d]],
                             [m for d in missing for m in sets[d]])

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with suppress(self._driver_error()):
                conn.close()
