"""Record dicts → rows of the SQL schema (ogrt/sql/schema.py), for sqlite and postgresql.

A process is one `processes` row filled by its start record and its end record, which may
arrive in any order, in the same batch or not, and more than once (a replayed spool batch).
`merge()` folds a batch into one `ProcessRow` per uuid; the backends then upsert each row
with "new value unless NULL, else the stored one" per column, so any arrival order and any
repetition give the same row.

Mapping (record key → column): id → uuid, user → username, exe + signature → executable_id
(executables.path/.signature, signature '' when null), time → start_time (start record) or
end_time (end record), start_time (end record) → start_time, args/env → JSON text,
libs → libset_id (start record) and late_libset_id (end record; see SetResolver.resolve) (+ libraries, libsets, libset_members), modules →
modset_id (+ modules, modsets, modset_members). Every other key maps to the same-named column.

Library and module sets are content-addressed: `set_digest()` of the sorted member ids is the
set's key, so the processes of one program share one set row and its members are written once.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from operator import itemgetter
from typing import Any

import orjson

from ogrt.record import libs_key
from ogrt.sql.schema import END_COLUMNS, JOB_COLUMNS, PROCESS_COLUMNS, RECORD_COLUMNS, START_COLUMNS

IDX = {c: i for i, c in enumerate(RECORD_COLUMNS)}
#: the record key of a column where it is not the column's name (exe_signature, args and
#: env: merge() fills them from the start record)
_START_KEY: dict[str, str | None] = {"uuid": "id", "username": "user", "exe_path": "exe",
                                     "start_time": "time", "exe_signature": None, "args": None,
                                     "env": None}
_END_KEY: dict[str, str | None] = {"uuid": "id", "username": "user", "end_time": "time"}
_NONE = "\0no such key"  # a key no record has: rec.get() gives None


def _record_keys(columns: tuple[str, ...], renamed: dict[str, str | None]) -> list[str]:
    """Per column of RECORD_COLUMNS, the record key that fills it: one map(rec.get, ...)
    per record."""
    return [(renamed.get(c, c) or _NONE) if c in columns else _NONE for c in RECORD_COLUMNS]


_START_KEYS = _record_keys(("uuid",) + START_COLUMNS, _START_KEY)
_END_KEYS = _record_keys(("uuid",) + END_COLUMNS, _END_KEY)
_I_EXE_PATH, _I_EXE_SIG = IDX["exe_path"], IDX["exe_signature"]
_I_ARGS, _I_ENV = IDX["args"], IDX["env"]
#: the columns only an end record fills: one contiguous block of RECORD_COLUMNS
_END_ONLY = [i for i, c in enumerate(RECORD_COLUMNS) if c not in START_COLUMNS and c != "uuid"]
_END_BLOCK = slice(_END_ONLY[0], _END_ONLY[-1] + 1)
assert _END_ONLY == list(range(_END_BLOCK.start, _END_BLOCK.stop))
#: the columns both records fill (uuid aside)
_SHARED = [i for i, c in enumerate(RECORD_COLUMNS) if c in END_COLUMNS and c in START_COLUMNS]
#: ProcessRow.values -> the tuple of its PROCESS_COLUMNS values (at C speed); the outputs
#: append the ID_COLUMNS
row_values = itemgetter(*(IDX[c] for c in PROCESS_COLUMNS if c in IDX))

#: the key of a list of library dicts: (paths, signatures), see ogrt.record.libs_key
LibsKey = tuple[tuple[str, ...], tuple[Any, ...]]


def lib_pairs(key: LibsKey) -> list[tuple[str, str]]:
    """The (path, signature) of each library of a libs key (signature '' when null)."""
    return [(p, s or "") for p, s in zip(*key)]


class ProcessRow:
    """One process of a batch: its column values, the keys of its libraries (start record,
    end record) and its modules."""

    __slots__ = ("values", "start_libs", "late_libs", "modules", "has_start", "has_end")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.has_start = False  # a start record of the process is in the batch
        self.has_end = False  # an end record of the process is in the batch
        self.start_libs: LibsKey | None = None
        self.late_libs: LibsKey | None = None
        self.modules: tuple[str, ...] | None = None

    @property
    def uuid(self) -> str:
        return self.values[0]

    @property
    def exe_key(self) -> tuple[str, str] | None:
        path = self.values[_I_EXE_PATH]
        return None if path is None else (path, self.values[_I_EXE_SIG] or "")


def merge(records: Sequence[dict[str, Any]]) -> list[ProcessRow]:
    """Fold a batch into one row per uuid, sorted by uuid (a fixed lock order for upserts).

    A column takes the value of the record that has it (not null); when two records of a
    process are in the batch, the later one's non-null values win.
    """
    rows: dict[str, ProcessRow] = {}
    for rec in records:
        is_end = rec.get("event") == "end"
        values = list(map(rec.get, _END_KEYS if is_end else _START_KEYS))
        if not is_end:
            values[_I_EXE_SIG] = rec.get("signature") or ""
            values[_I_ARGS] = orjson.dumps(rec.get("args") or []).decode()
            values[_I_ENV] = orjson.dumps(rec.get("env") or {}).decode()
        uuid = values[0]
        row = rows.get(uuid)
        if row is None:
            row = rows[uuid] = ProcessRow(values)
        elif is_end and not row.has_end:  # the usual pair: the end after its start
            old = row.values
            old[_END_BLOCK] = values[_END_BLOCK]  # all null in a row without an end record
            for i in _SHARED:
                v = values[i]
                if v is not None:
                    old[i] = v
        else:  # a start after its end, or a repeat, in this batch
            row.values = [o if n is None else n for n, o in zip(values, row.values)]
        libs = rec.get("libs")
        if is_end:
            row.has_end = True
            if libs:
                row.late_libs = libs_key(libs)
        else:
            row.has_start = True
            if libs:
                row.start_libs = libs_key(libs)
            mods = rec.get("modules")
            if mods:
                row.modules = tuple(mods)
    return [rows[k] for k in sorted(rows)]


#: the events of job records (ogrt.record.job_record); every other record is a process's
JOB_EVENTS = frozenset(("job_start", "job_end"))
#: per JOB_COLUMNS column, the job record key that fills it (the two event times aside)
_JOB_KEYS = [{"username": "user"}.get(c, c) for c in JOB_COLUMNS[:-2]]


def split_jobs(records: Sequence[dict[str, Any]]) -> tuple[Sequence[dict[str, Any]], list[dict[str, Any]]]:
    """(the process records, the job records) of a batch; the batch itself when it holds no
    job record (the usual case: no copy)."""
    jobs = [r for r in records if r.get("event") in JOB_EVENTS]
    if not jobs:
        return records, []
    return [r for r in records if r.get("event") not in JOB_EVENTS], jobs


def job_rows(records: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Job records → one JOB_COLUMNS tuple per job id, sorted by job id: a later record's
    non-null values win over an earlier one's of the same job (upserted likewise)."""
    rows: dict[str, list[Any]] = {}
    for rec in records:
        values = [rec.get(k) for k in _JOB_KEYS]
        values += [rec.get("time"), None] if rec.get("event") == "job_start" else [None, rec.get("time")]
        old = rows.get(values[0])
        rows[values[0]] = values if old is None else [o if n is None else n for n, o in zip(values, old)]
    return [tuple(rows[k]) for k in sorted(rows)]


def set_digest(ids: Sequence[int]) -> bytes:
    """The key of a set of ids: blake2b-16 of the sorted ids, packed as little-endian int64."""
    return blake2b(struct.pack(f"<{len(ids)}q", *sorted(ids)), digest_size=16).digest()


#: digest -> sorted member ids, of the sets a batch refers to
SetMembers = dict[bytes, list[int]]
#: a set: its digest and its sorted member ids
SetRef = tuple[bytes, list[int]]
#: per row, the digests of its (start libraries, late libraries, modules) sets
RowSets = tuple["bytes | None", "bytes | None", "bytes | None"]


class IdCache:
    """Bounded map key → database id (or other value derived from ids) for executables,
    libraries, modules, their sets and the set memo.

    `ids` is a plain dict (read it directly in hot loops). Entries added during a transaction
    are remembered and removed again by `rollback()`, so a rolled-back transaction leaves
    no id that does not exist; `commit()` forgets them and enforces the bound.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.ids: dict[Any, Any] = {}
        self._staged: list[Any] = []

    def get(self, key: Any) -> Any:
        return self.ids.get(key)

    def missing(self, keys: Iterable[Any]) -> list[Any]:
        """The keys without a cached id, sorted (a fixed lock order for inserts)."""
        ids = self.ids
        return sorted({k for k in keys if k not in ids})

    def stage(self, key: Any, ident: Any) -> None:
        if key not in self.ids:
            self._staged.append(key)
        self.ids[key] = ident

    def commit(self) -> None:
        self._staged.clear()
        if len(self.ids) > self.limit:
            self.ids.clear()

    def rollback(self) -> None:
        for k in self._staged:
            self.ids.pop(k, None)
        self._staged.clear()

    def clear(self) -> None:
        self.ids.clear()
        self._staged.clear()


class SetResolver:
    """Library lists and module lists → content-addressed sets (digest, sorted member ids).

    A memo maps the key of a list (LibsKey; a tuple of module names) to its set, so another
    process of the same program costs one dict lookup and no per-library work. Memo entries
    depend on library/module ids: they are staged like IdCache entries (`caches`) and
    dropped again when the transaction that made those ids rolls back. Bounded by `limit`
    lists (an entry of 60 libraries: ~3 KB; cleared when full, like IdCache).
    """

    def __init__(self, libs: IdCache, mods: IdCache, limit: int = 5_000) -> None:
        self.libs, self.mods = libs, mods
        self.lib_memo, self.mod_memo = IdCache(limit), IdCache(limit)
        self._late_memo: dict[tuple[bytes, bytes], tuple[bytes | None, list[int]]] = {}

    @property
    def caches(self) -> tuple[IdCache, IdCache]:
        return self.lib_memo, self.mod_memo

    def missing_libs(self, rows: Sequence[ProcessRow]) -> set[tuple[str, str]]:
        """The libraries of memo misses (their ids are needed to make the sets)."""
        memo = self.lib_memo.ids
        out: set[tuple[str, str]] = set()
        for r in rows:
            for key in (r.start_libs, r.late_libs):
                if key is not None and key not in memo:
                    out.update(lib_pairs(key))
        return out

    def missing_modules(self, rows: Sequence[ProcessRow]) -> set[str]:
        memo = self.mod_memo.ids
        out: set[str] = set()
        for r in rows:
            if r.modules is not None and r.modules not in memo:
                out.update(r.modules)
        return out

    def _lib_set(self, key: LibsKey) -> SetRef:
        ref = self.lib_memo.ids.get(key)
        if ref is None:
            lib_ids = self.libs.ids
            ids = sorted({lib_ids[k] for k in lib_pairs(key)})
            ref = (set_digest(ids), ids)
            self.lib_memo.stage(key, ref)
        return ref

    def _mod_set(self, key: tuple[str, ...]) -> SetRef:
        ref = self.mod_memo.ids.get(key)
        if ref is None:
            mod_ids = self.mods.ids
            ids = sorted({mod_ids[m] for m in key})
            ref = (set_digest(ids), ids)
            self.mod_memo.stage(key, ref)
        return ref

    def _late_only(self, start: bytes, late: bytes, start_ids: list[int],
                   late_ids: list[int]) -> tuple[bytes | None, list[int]]:
        """The late set without the members of the start set. Sets are named by the digest
        of their members, so the answer depends on the two digests only: memoized."""
        memo = self._late_memo
        found = memo.get((start, late))
        if found is None:
            early = set(start_ids)
            kept = [i for i in late_ids if i not in early]
            found = (late, late_ids) if len(kept) == len(late_ids) else (
                set_digest(kept) if kept else None, kept)
            if len(memo) >= self.lib_memo.limit:
                memo.clear()
            memo[(start, late)] = found
        return found

    def resolve(self, rows: Sequence[ProcessRow]) -> tuple[list[RowSets], SetMembers, SetMembers]:
        """Per row the digests of its sets (None: no such set), and the members of every
        library set and module set named. Call once the ids of `missing_libs()` and
        `missing_modules()` are cached.

        The late set is the end record's libraries; when the start record is in the same
        batch, only those not also in its start set (across batches, the view
        `process_libraries` hides a late library that is also in the start set)."""
        libsets: SetMembers = {}
        modsets: SetMembers = {}
        out: list[RowSets] = []
        for r in rows:
            start = late = mods = None
            if r.start_libs is not None:
                start, ids = self._lib_set(r.start_libs)
                libsets[start] = ids
            if r.late_libs is not None:
                late, ids = self._lib_set(r.late_libs)
                if start is not None:
                    late, ids = self._late_only(start, late, libsets[start], ids)
                if late is not None:
                    libsets[late] = ids
            if r.modules is not None:
                mods, ids = self._mod_set(r.modules)
                modsets[mods] = ids
            out.append((start, late, mods))
        return out, libsets, modsets
