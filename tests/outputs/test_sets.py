"""Library sets and module sets (schema version 2): processes of one program share one set,
and the views process_libraries / process_modules give exactly the former link rows."""
from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from ogrt.outputs import OUTPUT_TYPES
from tests.outputs import records as R


def make(type_name: str, **options: Any) -> Any:
    cls = OUTPUT_TYPES[type_name]
    return cls("t", cls.validate("t", {"type": type_name, **options}))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """(an output factory, a connect function) for a fresh database of each backend."""
    if request.param == "sqlite":
        path = str(tmp_path / "sets.db")
        return (lambda: make("sqlite", path=path)), (lambda: sqlite3.connect(path))
    dsn = request.getfixturevalue("postgres").new_database()
    return (lambda: make("postgresql", dsn=dsn)), (lambda: psycopg.connect(dsn))


def write(factory: Any, batches: list[list[dict[str, Any]]]) -> None:
    out = factory()
    out.open()
    try:
        for b in batches:
            out.write(b)
    finally:
        out.close()


def count(connect: Any, sql: str) -> Any:
    conn = connect()
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def view_rows(connect: Any) -> list[tuple[str, str, bool]]:
    """Every row of process_libraries as (uuid, library path, late), sorted, duplicates kept."""
    conn = connect()
    try:
        rows = conn.execute(
            "SELECT p.uuid, l.path, pl.late FROM process_libraries pl "
            "JOIN processes p ON p.id = pl.process_id JOIN libraries l ON l.id = pl.library_id"
        ).fetchall()
    finally:
        conn.close()
    return sorted((u, p, bool(late)) for u, p, late in rows)


def test_one_program_one_set(db):
    """1,000 processes loading the same libraries and modules: one start set, one late set,
    one module set, each member stored once."""
    factory, connect = db
    recs = R.pairs(1000, nlibs=12, nasty=False)
    write(factory, [recs[i:i + 250] for i in range(0, len(recs), 250)])
    assert count(connect, "SELECT count(*) FROM processes") == 1000
    assert count(connect, "SELECT count(*) FROM libsets") == 2  # 12 at start, 1 late
    assert count(connect, "SELECT count(*) FROM libset_members") == 13
    assert count(connect, "SELECT count(*) FROM modsets") == 1
    assert count(connect, "SELECT count(*) FROM modset_members") == 1
    assert count(connect, "SELECT count(DISTINCT libset_id) FROM processes") == 1
    assert count(connect, "SELECT count(*) FROM process_libraries") == 13 * 1000
    assert count(connect, "SELECT count(*) FROM process_modules") == 1000
    # a second output instance (a restarted daemon: empty caches) reuses the stored sets
    more = [R.start(i, nlibs=12, nasty=False) for i in range(1000, 1100)]
    write(factory, [more])
    assert count(connect, "SELECT count(*) FROM libsets") == 2
    assert count(connect, "SELECT count(*) FROM libset_members") == 13


def lib(name: str, sig: str | None = None) -> dict[str, Any]:
    return {"path": f"/usr/lib/{name}.so", "signature": sig}


def scenario() -> tuple[list[list[dict[str, Any]]], list[tuple[str, str, bool]]]:
    """Batches covering every arrival order, and the process_libraries rows they must give."""
    def start(i: int, libs: list[dict[str, Any]]) -> dict[str, Any]:
        r = R.start(i, nasty=False)
        r["libs"] = libs
        return r

    def end(i: int, libs: list[dict[str, Any]]) -> dict[str, Any]:
        r = R.end(i, nasty=False)
        r["libs"] = libs
        return r

    a, b, c, x, y = lib("a"), lib("b"), lib("c", "0d6f2a4c-1111-4222-8333-444455556666"), lib("x"), lib("y")
    u = [str(R.start(i)["id"]) for i in range(6)]
    batches = [
        # 0: start and end in one batch; the end lists a (also at start) and x
        [start(0, [a, b]), end(0, [a, x])],
        # 1: end first, alone; its start later: a and b at start, x late
        [end(1, [a, x])],
        # 2: start alone, end later with y (and b again, already at start)
        [start(2, [b, c])],
        # 3: end only (start never comes)
        [end(3, [x, y])],
        # 4: start only, no libraries at end
        [start(4, [a]), end(4, [])],
        # 5: end before start in one batch
        [end(5, [y]), start(5, [a, c])],
    ]
    batches += [[start(1, [a, b])], [end(2, [b, y])]]
    want = sorted([
        (u[0], "/usr/lib/a.so", False), (u[0], "/usr/lib/b.so", False), (u[0], "/usr/lib/x.so", True),
        (u[1], "/usr/lib/a.so", False), (u[1], "/usr/lib/b.so", False), (u[1], "/usr/lib/x.so", True),
        (u[2], "/usr/lib/b.so", False), (u[2], "/usr/lib/c.so", False), (u[2], "/usr/lib/y.so", True),
        (u[3], "/usr/lib/x.so", True), (u[3], "/usr/lib/y.so", True),
        (u[4], "/usr/lib/a.so", False),
        (u[5], "/usr/lib/a.so", False), (u[5], "/usr/lib/c.so", False), (u[5], "/usr/lib/y.so", True),
    ])
    return batches, want


def test_view_gives_exactly_the_libraries_with_late(db):
    factory, connect = db
    batches, want = scenario()
    write(factory, batches)
    assert view_rows(connect) == want
    # replayed (spool) in reverse batch order by another instance: nothing changes
    write(factory, batches[::-1])
    assert view_rows(connect) == want
    # every record alone, reversed: still the same rows
    write(factory, [[r] for b in batches[::-1] for r in b[::-1]])
    assert view_rows(connect) == want


def test_rolled_back_batch_leaves_no_stale_set(postgres):
    """A batch the server refuses rolls back its new libraries; the set memo forgets the
    sets made from their ids, so the next batch stores the right libraries."""
    dsn = postgres.new_database()
    out = make("postgresql", dsn=dsn)
    out.open()
    good = R.start(0, nasty=False)
    good["libs"] = [lib("fresh1"), lib("fresh2")]
    bad = R.start(1, nasty=False)
    bad["pid"] = 2 ** 40  # out of range for INTEGER: the transaction fails
    with pytest.raises(psycopg.DataError):
        out.write([good, bad])
    with psycopg.connect(dsn, autocommit=True) as conn:  # burn ids: a stale memo would show
        conn.execute("SELECT nextval(pg_get_serial_sequence('libraries', 'id')) "
                     "FROM generate_series(1, 10)")
    out.write([good])
    out.close()
    with psycopg.connect(dsn) as conn:
        got = conn.execute("SELECT l.path FROM process_libraries pl JOIN libraries l "
                           "ON l.id = pl.library_id ORDER BY 1").fetchall()
    assert got == [("/usr/lib/fresh1.so",), ("/usr/lib/fresh2.so",)]
