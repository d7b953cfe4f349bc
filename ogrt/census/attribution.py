"""Attribute each distinct recorded path (executables, libraries) to the packages it belongs
to, and each library set to the packages of its libraries — once per path, never per process.

Per source, a path belongs to the package that lists it as a file, else to the package with
the longest directory prefix of it (a Spack prefix, a module's bin/ or lib/); each source
may name one (Debian's python3.11-minimal and the module python/3.11 both hold
/usr/bin/python3.11 on a site that made such a module). A path no source lists stays
unattributed.

Incremental: `census_state` keeps the highest id attributed; a changed index or a purge (ids
may be reused) attributes everything again. The last OVERLAP ids are attributed again on each
run: a PostgreSQL writer may commit an id below one already seen.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ogrt.report.db import WriteDB

BATCH = 2000  # paths read and attributed per step
LOOKUP = 500  # paths per IN (...) lookup
OVERLAP = 1000


@dataclass
class AttributionCount:
    executables: int = 0  # paths looked at
    executables_attributed: int = 0
    libraries: int = 0
    libraries_attributed: int = 0
    full: bool = False


def ancestors(path: str) -> Iterator[str]:
    """/a/b/c -> /a/b, /a (not /)."""
    head = os.path.dirname(path)
    while head and head != "/" and head != path:
        yield head
        path, head = head, os.path.dirname(head)


def best(path: str, found: dict[str, list[tuple[int, str, int]]]) -> set[int]:
    """The packages `path` belongs to: per source, the exact file, else the longest prefix."""
    chosen: dict[str, tuple[int, set[int]]] = {}  # source -> (match length, package ids)
    for pid, source, exact in found.get(path, ()):
        if exact:
            _offer(chosen, source, 1 << 30, pid)
    for anc in ancestors(path):
        for pid, source, exact in found.get(anc, ()):
            if not exact:
                _offer(chosen, source, len(anc), pid)
    return {pid for _, ids in chosen.values() for pid in ids}


def _offer(chosen: dict[str, tuple[int, set[int]]], source: str, length: int, pid: int) -> None:
    old = chosen.get(source)
    if old is None or length > old[0]:
        chosen[source] = (length, {pid})
    elif length == old[0]:
        old[1].add(pid)


def _lookup(db: WriteDB, keys: list[str]) -> dict[str, list[tuple[int, str, int]]]:
    found: dict[str, list[tuple[int, str, int]]] = {}
    for i in range(0, len(keys), LOOKUP):
        chunk = keys[i:i + LOOKUP]
        cur = db.execute("SELECT c.path, c.package_id, k.source, c.exact FROM census_paths c "
                         "JOIN census_packages k ON k.id = c.package_id "
                         f"WHERE c.path IN ({','.join('?' * len(chunk))})", chunk)
        for path, pid, source, exact in cur.fetchall():
            found.setdefault(path, []).append((pid, source, exact))
    return found


def _state(db: WriteDB) -> dict[str, int]:
    return {n: v for n, v in db.execute("SELECT name, value FROM census_state").fetchall()}


def _set_state(db: WriteDB, name: str, value: int) -> None:
    db.execute("INSERT INTO census_state (name, value) VALUES (?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value))


def _paths(db: WriteDB, table: str, link: str, column: str, low: int, high: int) -> tuple[int, int]:
    """Attribute the rows of `table` with low < id <= high; (paths, attributed)."""
    seen = attributed = 0
    while low < high:
        with db.transaction():
            rows = db.execute(f"SELECT id, path FROM {table} WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                              (low, high, BATCH)).fetchall()
            if not rows:
                break
            keys = sorted({k for _, p in rows for k in (p, *ancestors(p))})
            found = _lookup(db, keys)
            links = [(rid, pid) for rid, p in rows for pid in sorted(best(p, found))]
            db.executemany(f"INSERT INTO {link} ({column}, package_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           links)
            seen += len(rows)
            attributed += len({rid for rid, _ in links})
            low = rows[-1][0]
    return seen, attributed


def _max_id(db: WriteDB, table: str) -> int:
    return db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]


def attribute(db: WriteDB, index_changed: bool) -> AttributionCount:
    """Attribute what is new since the last run (everything after a change of the index or a purge)."""
    state = _state(db)
    epoch = db.execute("SELECT COALESCE(MAX(epoch), 0) FROM purge_epoch").fetchone()[0]
    full = index_changed or state.get("purge_epoch", 0) != epoch or "executables" not in state
    count = AttributionCount(full=full)
    if full:
        with db.transaction():
            for table in ("census_executables", "census_libraries", "census_libsets"):
                db.execute(f"DELETE FROM {table}")
            state = {}
    high = {t: _max_id(db, t) for t in ("executables", "libraries", "libsets")}
    low = {t: max(0, state.get(t, 0) - OVERLAP) for t in high}
    count.executables, count.executables_attributed = _paths(
        db, "executables", "census_executables", "executable_id", low["executables"], high["executables"])
    count.libraries, count.libraries_attributed = _paths(
        db, "libraries", "census_libraries", "library_id", low["libraries"], high["libraries"])
    with db.transaction():
        # a set's packages: its libraries' (new sets only: a set never gains a library, and a
        # newly attributed library belongs to sets made after it)
        db.execute("INSERT INTO census_libsets (libset_id, package_id) "
                   "SELECT DISTINCT m.libset_id, c.package_id FROM libset_members m "
                   "JOIN census_libraries c ON c.library_id = m.library_id "
                   "WHERE m.libset_id > ? AND m.libset_id <= ? ON CONFLICT DO NOTHING",
                   (low["libsets"], high["libsets"]))
        for name, value in (*high.items(), ("purge_epoch", epoch)):
            _set_state(db, name, value)
    return count
