"""The SQL of retention (`ogrt purge`), beside schema.py: which rows are old, which shared rows
no kept row refers to any more, and the purge epoch that keeps the writers' id caches true.

Statements use `?` placeholders (ogrt/report/db.py `Dialect.sql` turns them into psycopg's)
and one `?` per comparison with the cut-off. Deleting happens in two phases, each in
bounded batches (one transaction per batch, so the daemon keeps writing between them):

1. `AGE_STEPS`: rows of a table older than the cut-off. A step is (table, key, time ended,
   time started): a row goes when it ended before the cut-off, or, without an end time,
   started before it: processes and job records.
2. `SHARED_STEPS`, in order: library/module sets no process refers to (with their members),
   then executables, libraries and modules no process or set refers to.

Phase 2 races with the writers, which cache the ids of shared rows across batches: each of
its transactions bumps `purge_epoch` (a writer reading another epoch at the start of its
transaction drops its caches) and, in PostgreSQL, holds `PURGE_LOCK` exclusively, which
the writers take shared for each batch, so no writer links a row between its check and
its deletion. SQLite serializes write transactions by itself.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AgeStep", "SharedStep", "AGE_STEPS", "SHARED_STEPS", "PURGE_LOCK", "EPOCH_QUERY",
           "PG_WRITER_GUARD", "BUMP_EPOCH", "SEED_EPOCH"]

PURGE_LOCK = 0x4F47_5254_0002  # pg_advisory_xact_lock key ("OGRT" 2)
#: the writers' check at the start of each transaction (ogrt/outputs/sqlbase.py)
EPOCH_QUERY = "SELECT max(epoch) FROM purge_epoch"
#: PostgreSQL writers: the shared purge lock, then (a new snapshot, after the wait) the epoch
PG_WRITER_GUARD = f"SELECT pg_advisory_xact_lock_shared({PURGE_LOCK}); {EPOCH_QUERY}"
BUMP_EPOCH = "UPDATE purge_epoch SET epoch = epoch + 1"
SEED_EPOCH = "INSERT INTO purge_epoch (epoch) VALUES (1)"


@dataclass(frozen=True)
class AgeStep:
    """Rows of `table` (keyed by `key`) that ended before the cut-off, or, when `started` is
    given and they have no end, started before it (a row ends after it starts, so the
    index on `started` narrows both)."""

    table: str
    key: str
    ended: str
    started: str | None = None

    def old(self, t: str = "t") -> str:
        """The condition (each `?`: the cut-off) on a row aliased `t`."""
        if self.started is None:
            return f"({t}.{self.ended} < ?)"
        return f"({t}.{self.started} < ? AND ({t}.{self.ended} < ? OR {t}.{self.ended} IS NULL))"

    def count_old(self) -> str:
        return f"SELECT count(*) FROM {self.table} t WHERE {self.old()}"

    def delete_batch(self, n: int) -> str:
        return (f"DELETE FROM {self.table} WHERE {self.key} IN "
                f"(SELECT t.{self.key} FROM {self.table} t WHERE {self.old()} LIMIT {int(n)})")

    def count(self) -> str:
        return f"SELECT count(*) FROM {self.table}"


#: the tables whose rows age; processes first (the shared rows are freed by them)
AGE_STEPS: tuple[AgeStep, ...] = (
    AgeStep("processes", "id", "end_time", "start_time"),
    AgeStep("jobs", "job_id", "end_time", "start_time"),
)

_PROCESSES = AGE_STEPS[0]


@dataclass(frozen=True)
class SharedStep:
    """Rows of `table` no row refers to: `refs` are (table, column) pairs pointing at its
    id; `members` is the table listing a set's members (deleted with the set), by `member_of`."""

    table: str
    refs: tuple[tuple[str, str], ...]
    members: str | None = None
    member_of: str | None = None

    def _unreferenced(self, ident: str, kept: bool, depth: int = 0) -> str:
        """No row refers to the row whose id is `ident`; with `kept`, no row a purge would
        keep (for --dry-run; each `?` is the cut-off)."""
        parts = []
        for table, column in self.refs:
            r = f"r{depth}"
            extra = ""
            if kept and table == _PROCESSES.table:
                extra = f" AND NOT COALESCE({_PROCESSES.old(r)}, FALSE)"
            elif kept:  # a member of a set: of a set that a kept process refers to
                owner = next(s for s in SHARED_STEPS if s.members == table)
                extra = f" AND NOT ({owner._unreferenced(f'{r}.{owner.member_of}', True, depth + 1)})"
            parts.append(f"NOT EXISTS (SELECT 1 FROM {table} {r} WHERE {r}.{column} = {ident}{extra})")
        return " AND ".join(parts)

    def next_batch(self, n: int) -> str:
        """The ids of the next `n` unreferenced rows after id `?` (keyset order)."""
        return (f"SELECT s.id FROM {self.table} s WHERE s.id > ? AND {self._unreferenced('s.id', False)} "
                f"ORDER BY s.id LIMIT {int(n)}")

    def count_unreferenced_after_purge(self) -> str:
        """--dry-run: how many rows no kept row would refer to (each `?`: the cut-off)."""
        return f"SELECT count(*) FROM {self.table} s WHERE {self._unreferenced('s.id', True)}"

    def delete(self, ids_sql: str) -> list[str]:
        """The members, then the rows, whose id is in `ids_sql` — but only if still
        unreferenced (a writer may have linked one since it was listed)."""
        where = f"id IN {ids_sql} AND {self._unreferenced('s.id', False)}"
        out = []
        if self.members:
            out.append(f"DELETE FROM {self.members} WHERE {self.member_of} IN "
                       f"(SELECT s.id FROM {self.table} s WHERE s.{where})")
        out.append(f"DELETE FROM {self.table} WHERE id IN (SELECT s.id FROM {self.table} s WHERE s.{where})")
        return out

    def count(self) -> str:
        return f"SELECT count(*) FROM {self.table}"


#: shared rows, in the order they are freed: sets (by processes), then their members
SHARED_STEPS: tuple[SharedStep, ...] = (
    SharedStep("libsets", (("processes", "libset_id"), ("processes", "late_libset_id")),
               "libset_members", "libset_id"),
    SharedStep("modsets", (("processes", "modset_id"),), "modset_members", "modset_id"),
    SharedStep("executables", (("processes", "executable_id"),)),
    SharedStep("libraries", (("libset_members", "library_id"),)),
    SharedStep("modules", (("modset_members", "module_id"),)),
)
