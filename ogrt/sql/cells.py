"""SQLite: the usage aggregates (ogrt/sql/aggregates.py) kept per batch by the output.

Row triggers on INSERT/UPDATE of `processes` cost the sqlite output more CPU per record than
the rest of its work (README, benchmarks/outputs.py), so on SQLite the output keeps the
cells itself, in the batch's transaction (ogrt/outputs/sqlite.py):

1. `read()` before the process upsert: the stored source columns (SOURCE) of the batch's
   uuids, one SELECT ... WHERE uuid IN (...) per chunk;
2. the process rows are upserted;
3. `written()`: the values the upsert stored, from those and the rows (its COALESCE rules);
   read() again when a value has a type SQLite converts (column affinity);
4. `apply()`: per cell, the rows' old contributions out and their new ones in (counts, CPU,
   failures; the extremes the rows bring and take away); one executemany upsert per
   aggregate table of the cells that gain, an UPDATE of those only whose sums change (an
   end record); an extreme a leaving row held that no added row reaches is recomputed from
   the cell's rows left (a row moving between cells, a failure turned into a success:
   rare); cells left without process are deleted. A row whose source columns did not
   change (an end record's other columns, a repeat) costs nothing here.

Deletes (`ogrt purge`, admin deletes) keep their row trigger (aggregates.sqlite_triggers).
Anything else that inserts or updates `processes` on SQLite with plain SQL bypasses the
aggregates: delete the cells and run aggregates.build_statements("sqlite") after it.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from ogrt.sql.aggregates import (AGGREGATES, MINIMA, Aggregate, _at_or_beyond, _match_cell, _upsert_tail, expr,
                                 func)
from ogrt.sql.schema import PROCESS_COLUMNS, SQLITE_END_SET

#: the processes columns the cells are computed from, in the order read() returns them
SOURCE = ("start_time", "uid", "username", "host", "job_id", "executable_id", "modset_id",
          "utime", "stime", "exit_status")
_CHUNK = 500  # host parameters per IN (...)
#: a row's uuid and values of SOURCE
Source = tuple[Any, ...]
#: a process row as the output writes it (schema.PROCESS_COLUMNS)
Row = tuple[Any, ...]


def read(conn: sqlite3.Connection, uuids: Sequence[str]) -> dict[str, Source]:
    """The stored uuid and SOURCE values of the rows with these uuids (those that exist)."""
    out: dict[str, Source] = {}
    cols = ", ".join(SOURCE)
    for i in range(0, len(uuids), _CHUNK):
        chunk = uuids[i:i + _CHUNK]
        sql = f"SELECT uuid, {cols} FROM processes WHERE uuid IN ({','.join('?' * len(chunk))})"
        for row in conn.execute(sql, chunk):
            out[row[0]] = row
    return out


_SOURCE = itemgetter(0, *(PROCESS_COLUMNS.index(c) for c in SOURCE))  # row tuple -> uuid, SOURCE values
_END_SETS = [i + 1 for i, c in enumerate(SOURCE) if c in SQLITE_END_SET]  # an end record's upsert sets these
_NONE = type(None)
#: the types of SOURCE values SQLite stores unchanged (column affinity) in processes
_STORED_AS_IS = ({str},) + tuple({_NONE, int} if c in ("uid", "executable_id", "modset_id", "exit_status")
                      else {_NONE, int, float} if c in ("utime", "stime") else {_NONE, str} for c in SOURCE)


def written(before: dict[str, Source], starts: Sequence[Row], ends: Sequence[Row]) -> dict[str, Source] | None:
    """The SOURCE values the process upserts (schema.SQLITE_UPSERT_PROCESS, SQLITE_UPSERT_END)
    store for these rows, from the values before; None when a value's type is one SQLite
    converts (column affinity: text in an INTEGER column...; a NaN becomes NULL): read() them
    then. An int stored in a REAL column adds up the same."""
    new = [_SOURCE(r) for r in starts] + [_SOURCE(r) for r in ends]
    for col, ok in zip(zip(*new), _STORED_AS_IS):
        types = set(map(type, col))
        if not types <= ok or (float in types and any(v != v for v in col)):  # NaN: stored as NULL
            return None
    out: dict[str, Source] = {}
    get = before.get
    for s in new[:len(starts)]:
        old = get(s[0])
        out[s[0]] = s if old is None or None not in s else tuple([o if n is None else n for n, o in zip(s, old)])
    for s in new[len(starts):]:
        old = get(s[0])
        if old is None:
            out[s[0]] = s
            continue
        t = list(old)
        for i in _END_SETS:
            if s[i] is not None:
                t[i] = s[i]
        out[s[0]] = tuple(t)
    return out


#: the columns of a row's contribution (_contribution), in this order
_NAMES = ("day", "uid", "username", "host", "job_id", "executable_id", "modset_id", "processes",
          "cpu_seconds", "failed", "first_start", "last_start", "last_failure")
#: a row's contribution: its value of each column of _NAMES
Contribution = tuple[Any, ...]


def _contribution(s: Source) -> Contribution:
    """Every key, sum and extreme column of any aggregate for one row (aggregates.KEYS, SUMS,
    EXTREMES evaluated in Python as SQLite evaluates them over the stored values)."""
    _, start, uid, user, host, job, exe, modset, utime, stime, status = s
    failed = 0 if status is None or status == 0 else 1
    return ("" if start is None else start[:10], -1 if uid is None else uid, "" if user is None else user,
            "" if host is None else host, "" if job is None else job, 0 if exe is None else exe,
            0 if modset is None else modset, 1, (utime or 0) + (stime or 0), failed,
            start, start, start if failed else None)


def _getter(columns: Sequence[str]) -> Callable[[Contribution], tuple[Any, ...]]:
    """The values of `columns` of a contribution, as a tuple (also for one column)."""
    idx = [_NAMES.index(c) for c in columns]
    if len(idx) == 1:
        i = idx[0]
        return lambda v: (v[i],)
    return itemgetter(*idx)


def _better(column: str, a: Any, b: Any) -> Any:
    """The extreme of a and b (NULLs ignored)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b) if column in MINIMA else max(a, b)


def _worse(column: str, a: Any, b: Any) -> bool:
    return a > b if column in MINIMA else a < b


class _Table:
    """One aggregate table: its statements, and how a contribution splits into its cell's key,
    sums and extremes."""

    def __init__(self, a: Aggregate) -> None:
        self.a = a
        self.key, self.sums, self.extremes = _getter(a.keys), _getter(a.sums), _getter(a.extremes)
        self.nones = (None,) * len(a.extremes)
        self.cell = _getter(a.columns)  # a contribution -> the parameters of its new cell
        cell = " AND ".join(f"{k} = ?" for k in a.keys)
        self.upsert = (f"INSERT INTO {a.table} ({', '.join(a.columns)}) "
                       f"VALUES ({', '.join('?' * len(a.columns))}) {_upsert_tail('sqlite', a)}")
        # an extreme the removed rows held: from the cell's rows (params: key..., removed value)
        self.recompute = {m: f"UPDATE {a.table} SET {m} = (SELECT {func(m)}({expr('sqlite', m, 'x')}) "
                             f"FROM processes x WHERE {_match_cell('sqlite', a, 'x')}) "
                             f"WHERE {cell} AND processes > 0 AND {_at_or_beyond(m, m, '?')}"
                          for m in a.extremes}
        self.delete = f"DELETE FROM {a.table} WHERE {cell} AND processes <= 0"
        # a row changed in place, its extremes the same (params: sums' differences but processes, key...)
        self.shift = (f"UPDATE {a.table} SET {', '.join(f'{c} = {c} + ?' for c in a.sums[1:])} WHERE {cell}"
                      if len(a.sums) > 1 else "")

    def _put(self, deltas: dict[tuple[Any, ...], Any], k: tuple[Any, ...], v: Contribution, sign: int) -> None:
        """Add (sign 1) or remove (-1) the contribution of one row to or from the delta of cell k."""
        a, nones = self.a, self.nones
        d = deltas.get(k)
        if d is None:
            d = deltas[k] = [(0,) * len(a.sums), nones, nones]
        elif type(d) is tuple:
            d = deltas[k] = ([self.sums(d), self.extremes(d), nones] if len(d) == len(_NAMES)
                             else [(0,) + d, nones, nones])
        d[0] = tuple(x + sign * y for x, y in zip(d[0], self.sums(v)))
        i = 1 if sign > 0 else 2
        d[i] = tuple(_better(m, x, y) for m, x, y in zip(a.extremes, d[i], self.extremes(v)))

    def apply(self, conn: sqlite3.Connection, olds: list[Contribution | None], news: list[Contribution]) -> None:
        """Move the rows' contributions (olds[i]: None for a new row) in the cells of this table.
        Few objects stay alive at once (each would count towards a garbage collection that
        traverses the whole heap): a new row's cell is its contribution, and the statements'
        parameters are made one at a time as SQLite binds them."""
        a, key, sums, extremes = self.a, self.key, self.sums, self.extremes
        # cell key -> a contribution (rows only added: one), the differences of the sums but
        # processes (one row changed in place, extremes the same), or [sums (delta), best
        # extremes added, best extremes removed]
        deltas: dict[tuple[Any, ...], Any] = {}
        for old, new in zip(olds, news):
            kn = key(new)
            if old is None:
                if kn not in deltas:  # a new row: the common case
                    deltas[kn] = new
                    continue
            else:
                ko = key(old)
                if ko == kn and kn not in deltas:
                    so, sn, eo, en = sums(old), sums(new), extremes(old), extremes(new)
                    if so == sn and eo == en:
                        continue  # nothing of this table's columns changed
                    if eo == en:  # in place (an end record), extremes the same
                        deltas[kn] = tuple(x - y for x, y in zip(sn[1:], so[1:]))
                    else:
                        deltas[kn] = [tuple(x - y for x, y in zip(sn, so)), en, eo]
                    continue
                self._put(deltas, ko, old, -1)
            self._put(deltas, kn, new, 1)
        if not deltas:
            return
        order = sorted(deltas)  # in key order: fewer B-tree pages touched
        recompute, empty = [], []
        cell, n = self.cell, len(_NAMES)

        def upserts() -> Iterator[tuple[Any, ...]]:
            for k in order:
                d = deltas[k]
                if type(d) is tuple:
                    if len(d) == n:
                        yield cell(d)
                    continue
                ds, added, removed = d
                gains = False
                for m, v, r in zip(a.extremes, added, removed):
                    if v is not None and (r is None or _worse(m, r, v)):
                        gains = True
                    if r is not None and (v is None or _worse(m, v, r)):
                        # a removed row may have held the extreme and no added row reaches it
                        recompute.append((m, k + (r,)))
                if gains or any(ds):
                    yield k + ds + added
                if ds[0] < 0:
                    empty.append(k)

        conn.executemany(self.upsert, upserts())
        if self.shift:
            conn.executemany(self.shift, (d + k for k in order
                                          if type(d := deltas[k]) is tuple and len(d) < n))
        for m in a.extremes:
            params = [p for c, p in recompute if c == m]
            if params:
                conn.executemany(self.recompute[m], params)
        if empty:
            conn.executemany(self.delete, empty)


_TABLES = [_Table(a) for a in AGGREGATES]


def apply(conn: sqlite3.Connection, before: dict[str, Source], after: dict[str, Source]) -> None:
    """Move the rows' contributions from their `before` cells (absent: a new row) to their
    `after` cells (the rows are already written)."""
    get = before.get
    olds: list[Contribution | None] = []
    news: list[Contribution] = []
    for u, new in after.items():
        old = get(u)
        if old != new:
            olds.append(None if old is None else _contribution(old))
            news.append(_contribution(new))
    if news:
        for t in _TABLES:
            t.apply(conn, olds, news)
