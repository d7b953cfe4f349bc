"""Keep the census tables in step with a source's entries: new and changed packages
(re)written with their paths, vanished ones removed; unchanged ones (same digest) untouched.
Changes are written in batches of short transactions (the daemon keeps writing)."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from ogrt.census.model import Entry, Package
from ogrt.report.db import WriteDB
from ogrt.textenc import escape

#: packages per transaction, and paths per INSERT batch
BATCH_PACKAGES = 500
BATCH_PATHS = 5000


@dataclass
class SyncCount:
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    unreadable: int = 0
    paths: int = 0

    @property
    def touched(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def _stored(db: WriteDB, source: str) -> dict[str, tuple[int, str, str]]:
    """ident -> (id, digest, origin) of a source's stored packages."""
    cur = db.execute("SELECT ident, id, digest, origin FROM census_packages WHERE source = ?", (source,))
    return {ident: (pid, digest, origin) for ident, pid, digest, origin in cur.fetchall()}


def _write(db: WriteDB, batch: list[tuple[Package, str, int | None]], origin: str, count: SyncCount) -> None:
    """Write a batch of (package, digest, stored id or None) in one transaction."""
    with db.transaction():
        rows: list[tuple[str, int, int]] = []
        for pkg, digest, pid in batch:
            values = (stored_text(pkg.name), stored_text(pkg.version), pkg.hash,
                      json.dumps(pkg.details, sort_keys=True, default=str, ensure_ascii=True),
                      None if pkg.prefix is None else stored_text(pkg.prefix), origin, digest)
            if pid is None:
                pid = db.execute(
                    "INSERT INTO census_packages (name, version, hash, details, prefix, origin, digest, "
                    "source, ident) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    values + (pkg.source, stored_text(pkg.ident))).fetchone()[0]
                count.added += 1
            else:
                db.execute("UPDATE census_packages SET name = ?, version = ?, hash = ?, details = ?, "
                           "prefix = ?, origin = ?, digest = ? WHERE id = ?", values + (pid,))
                db.execute("DELETE FROM census_paths WHERE package_id = ?", (pid,))
                count.changed += 1
            rows.extend((stored_text(path), pid, 1 if exact else 0) for path, exact in pkg.paths)
            count.paths += len(pkg.paths)
            if len(rows) >= BATCH_PATHS:
                _insert_paths(db, rows)
                rows = []
        _insert_paths(db, rows)


def stored_text(text: str) -> str:
    """A name or path as the records store it (ogrt.textenc): bytes that are not UTF-8 (file
    names, read with surrogateescape) as \\xHH, so a census path equals a recorded one."""
    return escape(os.fsencode(text))


def _insert_paths(db: WriteDB, rows: list[tuple[str, int, int]]) -> None:
    db.executemany("INSERT INTO census_paths (path, package_id, exact) VALUES (?, ?, ?) "
                   "ON CONFLICT DO NOTHING", rows)


def remove(db: WriteDB, ids: list[int]) -> None:
    """Delete packages with their paths and attributions, in batches."""
    for i in range(0, len(ids), BATCH_PACKAGES):
        chunk = ids[i:i + BATCH_PACKAGES]
        marks = ",".join("?" * len(chunk))
        with db.transaction():
            for table in ("census_paths", "census_executables", "census_libraries", "census_libsets",
                          "census_packages"):
                col = "id" if table == "census_packages" else "package_id"
                db.execute(f"DELETE FROM {table} WHERE {col} IN ({marks})", chunk)


def sync(db: WriteDB, source: str, origin: str, entries: Iterable[Entry]) -> SyncCount:
    """Bring the stored packages of `source` found under `origin` up to date with `entries`
    (streamed: only a batch of packages and their paths is held at a time)."""
    origin = stored_text(origin)
    stored = _stored(db, source)
    seen: set[str] = set()
    count = SyncCount()
    batch: list[tuple[Package, str, int | None]] = []
    for entry in entries:
        ident, digest = stored_text(entry.ident), stored_text(entry.digest)
        if ident in seen:
            continue  # found twice (overlapping roots)
        seen.add(ident)
        old = stored.get(ident)
        if old is not None and old[1] == digest:
            count.unchanged += 1
            continue
        pkg = entry.load()
        if pkg is None:
            count.unreadable += 1
            continue
        batch.append((pkg, digest, old[0] if old else None))
        if len(batch) >= BATCH_PACKAGES:
            _write(db, batch, origin, count)
            batch = []
    if batch:
        _write(db, batch, origin, count)
    gone = [pid for ident, (pid, _, o) in stored.items() if o == origin and ident not in seen]
    remove(db, gone)
    count.removed = len(gone)
    return count
