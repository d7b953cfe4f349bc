"""SQLite: the usage aggregates (ogrt/sql/aggregates.py) kept per batch by the output, in SQL
over temp tables of the batch's rows.

Row triggers on INSERT/UPDATE of `processes` cost the sqlite output more CPU per record than
the rest of its work (SQLite journals each row's statement when a table has triggers), and
cells computed in Python cost nearly as much (a tuple per row and cell, parameters bound row by
row, the garbage collections they bring; README, benchmarks/outputs.py). So the output keeps
the cells with a few statements per batch, in the batch's transaction (ogrt/outputs/sqlite.py):

1. `Cells.before()`, before the process upsert: the stored source columns (SOURCE) of the
   batch's uuids are copied into temp.ogrt_cells_old (one INSERT ... SELECT per chunk);
2. the process rows are upserted;
3. `Cells.after()`: the rows of those uuids that are new or whose SOURCE values changed are
   copied into temp.ogrt_cells_new with their kind of change (a row whose SOURCE values did
   not change, such as an end record's other columns or a repeat, costs nothing more):
   - ADDED (a new row): one upsert per aggregate table of their contributions, which adds
     up the rows of one cell as it meets them (no grouping);
   - IN_PLACE (the same cells, no extreme can go down: an end record adding CPU time and an
     exit status): one upsert per table of the differences of the sums and the extremes
     gained;
   - MOVED (anything else: a start record after its end record, a failure turned into a
     success, another user...; rare): as PostgreSQL's statement triggers do
     (aggregates.delta_select: per cell, the old rows out and the new ones in), then an
     extreme a leaving row held that no added row reaches is recomputed from the cell's rows
     and cells left without process are deleted.

The values are the stored ones (SQLite's column affinity applied: text in an INTEGER column,
a NaN stored as NULL), so the cells are those aggregates.build_statements computes from the rows.
Deletes (`ogrt purge`, admin deletes) keep their row trigger (aggregates.sqlite_triggers).
Anything else that inserts or updates `processes` on SQLite with plain SQL bypasses the
aggregates: delete the cells and run aggregates.build_statements("sqlite") after it.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ogrt.sql.aggregates import (AGGREGATES, Aggregate, delta_columns, delta_select, expr, recompute_extremes,
                                 upsert_delta, upsert_tail)

#: the processes columns the cells are computed from
SOURCE = ("start_time", "uid", "username", "host", "job_id", "executable_id", "modset_id",
          "utime", "stime", "exit_status")
#: those a row's cells (keys, extremes) depend on but through its failure: when they are the
#: same and the row did not go from failed to not, it stays in its cells and no extreme of
#: them goes down
_PLACE = ("start_time", "uid", "username", "host", "job_id", "executable_id", "modset_id")
_OLD, _NEW = "temp.ogrt_cells_old", "temp.ogrt_cells_new"
_COLS = ", ".join(SOURCE)
_CHUNK = 500  # host parameters per IN (...)
#: temp.ogrt_cells_new.kind: how a row of the batch changed
ADDED, IN_PLACE, MOVED = 0, 1, 2


def _kind(new: str, old: str) -> str:
    """The kind of change from the row `old` (NULLs: none) to the row `new`."""
    return (f"CASE WHEN {old}.uuid IS NULL THEN {ADDED} "
            f"WHEN {' AND '.join(f'{new}.{c} IS {old}.{c}' for c in _PLACE)} "
            f"AND NOT ({expr('sqlite', 'failed', old)} = 1 AND {expr('sqlite', 'failed', new)} = 0) "
            f"THEN {IN_PLACE} ELSE {MOVED} END")


def _values(r: str) -> str:
    return ", ".join(f"{r}.{c}" for c in SOURCE)


_SAME = " AND ".join(f"p.{c} IS o.{c}" for c in SOURCE)


def _in(n: int) -> str:
    return f"IN ({','.join('?' * n)})"


def _delta_table(table: str) -> str:
    return f"temp.ogrt_cells_{table}"


def _add(a: Aggregate) -> str:
    """Upsert the contributions of the new rows (kind ADDED): the upsert adds up the rows of
    one cell as it meets them."""
    vals = ", ".join(expr("sqlite", c, "r") for c in a.columns)
    return (f"INSERT INTO {a.table} ({', '.join(a.columns)}) SELECT {vals} FROM {_NEW} r "
            f"WHERE r.kind = {ADDED} {upsert_tail('sqlite', a)}")


def _in_place(a: Aggregate) -> str:
    """Add the differences of the rows that stay in their cells (kind IN_PLACE): the sums'
    differences, the extremes they gain (an upsert: rows of one cell add up)."""
    n, o = "n", "o"
    vals = [expr("sqlite", k, n) for k in a.keys] + ["0"]
    vals += [f"({expr('sqlite', c, n)}) - ({expr('sqlite', c, o)})" for c in a.sums[1:]]
    vals += [expr("sqlite", m, n) for m in a.extremes]
    changed = [f"({expr('sqlite', c, n)}) <> ({expr('sqlite', c, o)})" for c in a.sums[1:]]
    changed += [f"({expr('sqlite', m, n)}) IS NOT ({expr('sqlite', m, o)})" for m in a.extremes]
    return (f"INSERT INTO {a.table} ({', '.join(a.columns)}) SELECT {', '.join(vals)} "
            f"FROM {_NEW} n JOIN {_OLD} o ON o.uuid = n.uuid WHERE n.kind = {IN_PLACE} "
            f"AND ({' OR '.join(changed)}) {upsert_tail('sqlite', a)}")


def _moved(a: Aggregate) -> list[str]:
    """The rows that change cells or may take an extreme away (kind MOVED): their old
    contributions out and new ones in per cell (aggregates.delta_select, in a temp table),
    then the extremes they took away recomputed, the cells left empty deleted."""
    d = _delta_table(a.table)
    old = f"(SELECT o.* FROM {_OLD} o JOIN {_NEW} n ON n.uuid = o.uuid WHERE n.kind = {MOVED})"
    new = f"(SELECT * FROM {_NEW} WHERE kind = {MOVED})"
    keys = ", ".join(a.keys)
    return [f"INSERT INTO {d} {delta_select('sqlite', a, old, new)}", upsert_delta("sqlite", a, d),
            *recompute_extremes("sqlite", a, d),
            f"DELETE FROM {a.table} WHERE ({keys}) IN (SELECT {keys} FROM {d} WHERE processes < 0) "
            f"AND processes <= 0",
            f"DELETE FROM {d}"]


class Cells:
    """The cell maintenance of one connection (its temp tables are the connection's)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # untyped columns: the stored values copied as they are
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_OLD.split('.')[1]} (uuid PRIMARY KEY, {_COLS})")
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_NEW.split('.')[1]} (uuid, {_COLS}, kind)")
        for a in AGGREGATES:
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_delta_table(a.table).split('.')[1]} "
                         f"({', '.join(delta_columns(a))})")
        self._steps = {ADDED: [_add(a) for a in AGGREGATES], IN_PLACE: [_in_place(a) for a in AGGREGATES],
                       MOVED: [s for a in AGGREGATES for s in _moved(a)]}

    def before(self, uuids: Sequence[str]) -> None:
        """Before the batch's upserts: copy the stored SOURCE values of these uuids' rows."""
        conn = self.conn
        conn.execute(f"DELETE FROM {_OLD}")
        conn.execute(f"DELETE FROM {_NEW}")
        for i in range(0, len(uuids), _CHUNK):
            chunk = uuids[i:i + _CHUNK]
            conn.execute(f"INSERT INTO {_OLD} SELECT uuid, {_COLS} FROM main.processes WHERE uuid {_in(len(chunk))}",
                         chunk)

    def after(self, uuids: Sequence[str]) -> None:
        """After them: move the rows of these uuids that are new or changed from their old
        cells to their new ones."""
        conn = self.conn
        for i in range(0, len(uuids), _CHUNK):
            chunk = uuids[i:i + _CHUNK]
            conn.execute(f"INSERT INTO {_NEW} SELECT p.uuid, {_values('p')}, {_kind('p', 'o')} "
                         f"FROM main.processes p LEFT JOIN {_OLD} o ON o.uuid = p.uuid "
                         f"WHERE p.uuid {_in(len(chunk))} AND (o.uuid IS NULL OR NOT ({_SAME}))", chunk)
        kinds = [k for k, in conn.execute(f"SELECT DISTINCT kind FROM {_NEW}")]
        for kind in (ADDED, IN_PLACE, MOVED):
            if kind in kinds:
                for stmt in self._steps[kind]:
                    conn.execute(stmt)
