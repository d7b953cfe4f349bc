"""Record dicts → rows of the normalized SQL schema (ogrt/sql/*.sql), for sqlite and postgresql.

A process is one `processes` row filled by its start record and its end record, which may
arrive in any order, in the same batch or not, and more than once (a replayed spool batch).
`merge()` folds a batch into one `ProcessRow` per uuid; the backends then upsert each row
with "new value unless NULL, else the stored one" per column, so any arrival order and any
repetition give the same row.

Mapping (record key → column): id → uuid, user → username, exe + signature → executable_id
(executables.path/.signature, signature '' when null), time → start_time (start record) or
end_time (end record), start_time (end record) → start_time, args/env → JSON text,
libs → libset_id (start record) and late_libset_id (end record: the libraries not also in
the start record when both are in the batch) (+ libraries, libsets, libset_members), modules →
modset_id (+ modules, modsets, modset_members). Every other key maps to the same-named column.

Library and module sets are content-addressed: `set_digest()` of the sorted member ids is the
set's key, so the processes of one program share one set row and its members are written once.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from typing import Any

import orjson

#: `processes` columns written from records, in the order of ProcessRow.values
#: ("exe_path" and "exe_signature" become executable_id in the backend)
COLUMNS: tuple[str, ...] = (
    "uuid", "host", "peer", "job_id", "pid", "ppid", "uid", "gid", "username",
    "exe_path", "exe_signature", "args", "cwd", "env", "rank", "start_time", "end_time",
    "exit_status", "duration", "utime", "stime", "maxrss_kb", "minflt", "majflt",
    "inblock", "oublock", "nvcsw", "nivcsw",
)
IDX = {c: i for i, c in enumerate(COLUMNS)}
#: the processes columns themselves (exe_* replaced by executable_id)
TABLE_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS if c not in ("exe_path", "exe_signature")) + ("executable_id",)

_START = [  # (record key, column)
    ("host", "host"), ("peer", "peer"), ("job_id", "job_id"), ("pid", "pid"),
    ("ppid", "ppid"), ("uid", "uid"), ("gid", "gid"), ("user", "username"),
    ("exe", "exe_path"), ("cwd", "cwd"), ("rank", "rank"), ("time", "start_time"),
]
_END = [
    ("host", "host"), ("peer", "peer"), ("job_id", "job_id"), ("pid", "pid"),
    ("uid", "uid"), ("user", "username"), ("time", "end_time"), ("start_time", "start_time"),
    ("exit_status", "exit_status"), ("duration", "duration"), ("utime", "utime"),
    ("stime", "stime"), ("maxrss_kb", "maxrss_kb"), ("minflt", "minflt"),
    ("majflt", "majflt"), ("inblock", "inblock"), ("oublock", "oublock"),
    ("nvcsw", "nvcsw"), ("nivcsw", "nivcsw"),
]
_START_IDX = [(k, IDX[c]) for k, c in _START]
_END_IDX = [(k, IDX[c]) for k, c in _END]
_I_EXE_SIG, _I_ARGS, _I_ENV = IDX["exe_signature"], IDX["args"], IDX["env"]


class ProcessRow:
    """One process of a batch: column values, its libraries and its modules."""

    __slots__ = ("values", "libs", "modules")

    def __init__(self, uuid: str) -> None:
        self.values: list[Any] = [None] * len(COLUMNS)
        self.values[0] = uuid
        self.libs: dict[tuple[str, str], bool] = {}  # (path, signature) -> late
        self.modules: list[str] = []

    @property
    def uuid(self) -> str:
        return self.values[0]

    @property
    def exe_key(self) -> tuple[str, str] | None:
        path = self.values[IDX["exe_path"]]
        return None if path is None else (path, self.values[_I_EXE_SIG] or "")


def _set(values: list[Any], pairs: Iterable[tuple[str, int]], rec: dict[str, Any]) -> None:
    for key, i in pairs:
        v = rec.get(key)
        if v is not None:
            values[i] = v


def merge(records: Sequence[dict[str, Any]]) -> list[ProcessRow]:
    """Fold a batch into one row per uuid, sorted by uuid (a fixed lock order for upserts)."""
    rows: dict[str, ProcessRow] = {}
    no_sig = ""
    for rec in records:
        uuid = rec["id"]
        row = rows.get(uuid)
        if row is None:
            row = rows[uuid] = ProcessRow(uuid)
        values = row.values
        libs = row.libs
        if rec.get("event") == "end":
            _set(values, _END_IDX, rec)
            for lib in rec.get("libs") or ():
                key = (lib["path"], lib.get("signature") or no_sig)
                if key not in libs:
                    libs[key] = True
        else:
            _set(values, _START_IDX, rec)
            values[_I_EXE_SIG] = rec.get("signature") or ""
            values[_I_ARGS] = orjson.dumps(rec.get("args") or []).decode()
            values[_I_ENV] = orjson.dumps(rec.get("env") or {}).decode()
            start_libs = rec.get("libs")
            if start_libs:
                if libs:  # the end record came first: its libs stay late unless listed here
                    libs.update(dict.fromkeys(
                        [(lib["path"], lib.get("signature") or no_sig) for lib in start_libs], False))
                else:
                    row.libs = libs = dict.fromkeys(
                        [(lib["path"], lib.get("signature") or no_sig) for lib in start_libs], False)
            mods = rec.get("modules")
            if mods:
                row.modules = list(dict.fromkeys(mods))
    return [rows[k] for k in sorted(rows)]


def set_digest(ids: Sequence[int]) -> bytes:
    """The key of a set of ids: blake2b-16 of the sorted ids, packed as little-endian int64."""
    return blake2b(struct.pack(f"<{len(ids)}q", *sorted(ids)), digest_size=16).digest()


#: digest -> sorted member ids, of the sets a batch refers to
SetMembers = dict[bytes, list[int]]


def row_sets(rows: Sequence[ProcessRow], lib_ids: dict[tuple[str, str], int],
             mod_ids: dict[str, int]) -> tuple[list[tuple[bytes | None, bytes | None, bytes | None]],
                                               SetMembers, SetMembers]:
    """Per row the digests of its (start libraries, late libraries, modules) sets (None: no
    such set), and the members of every library set and module set named."""
    libsets: SetMembers = {}
    modsets: SetMembers = {}
    out: list[tuple[bytes | None, bytes | None, bytes | None]] = []
    for r in rows:
        start = late = mods = None
        if r.libs:
            early_ids = [lib_ids[k] for k, is_late in r.libs.items() if not is_late]
            late_ids = [lib_ids[k] for k, is_late in r.libs.items() if is_late]
            if early_ids:
                start = set_digest(early_ids)
                if start not in libsets:
                    libsets[start] = sorted(early_ids)
            if late_ids:
                late = set_digest(late_ids)
                if late not in libsets:
                    libsets[late] = sorted(late_ids)
        if r.modules:
            ids = [mod_ids[m] for m in r.modules]
            mods = set_digest(ids)
            if mods not in modsets:
                modsets[mods] = sorted(ids)
        out.append((start, late, mods))
    return out, libsets, modsets


class IdCache:
    """Bounded map key → database id for executables, libraries, modules and their sets.

    `ids` is a plain dict (read it directly in hot loops). Ids added during a transaction
    are remembered and removed again by `rollback()`, so a rolled-back transaction leaves
    no id that does not exist; `commit()` forgets them and enforces the bound.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.ids: dict[Any, int] = {}
        self._staged: list[Any] = []

    def get(self, key: Any) -> int | None:
        return self.ids.get(key)

    def missing(self, keys: Iterable[Any]) -> list[Any]:
        """The keys without a cached id, sorted (a fixed lock order for inserts)."""
        ids = self.ids
        return sorted({k for k in keys if k not in ids})

    def stage(self, key: Any, ident: int) -> None:
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
