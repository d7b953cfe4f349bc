"""Every output writes the README record exactly: text with newline, quote, backslash and
escaped non-UTF-8 bytes round-trips; SQL rows come back equal in any arrival order."""
from __future__ import annotations

import json
import sqlite3

import psycopg
import pytest

from ogrt.errors import ConfigError
from ogrt.outputs import OUTPUT_TYPES
from ogrt.outputs.base import OutputError
from ogrt.sql.schema import SCHEMA_VERSION
from ogrt.textenc import unescape
from tests.outputs import records as R
from tests.outputs.helpers import LineListener, expected_processes, read_processes, wait_for


def make(type_name: str, **options):
    cls = OUTPUT_TYPES[type_name]
    return cls("t", cls.validate("t", {"type": type_name, **options}))


def test_nasty_text_is_really_nasty():
    assert unescape(R.NASTY) == R.NASTY_BYTES
    assert "\n" in R.NASTY and '"' in R.NASTY and "\\\\" in R.NASTY and "\\xff" in R.NASTY


def test_jsonl_roundtrip(tmp_path):
    out = make("jsonl", path=str(tmp_path / "r.jsonl"))
    out.open()
    recs = R.pairs(20)
    out.write(recs[:7])
    out.write(recs[7:])
    out.close()
    lines = (tmp_path / "r.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(recs) + 1
    assert [json.loads(x) for x in lines[:-1]] == recs
    assert unescape(json.loads(lines[0])["exe"]).startswith(R.NASTY_BYTES)


def test_json_tcp_roundtrip():
    listener = LineListener()
    listener.start()
    try:
        out = make("json_tcp", host="127.0.0.1", port=listener.port)
        out.open()
        recs = R.pairs(20)
        out.write(recs[:5])
        out.write(recs[5:])
        wait_for(lambda: len(listener.received()) >= len(recs), what="lines")
        out.close()
        assert listener.received() == recs
    finally:
        listener.stop()


def test_null_counts():
    out = make("null")
    out.open()
    out.write(R.pairs(3))
    assert out.discarded == 6


def _sql_roundtrip(out, connect):
    out.open()
    recs = R.pairs(30)
    # ends before starts, in separate batches; then everything again (a replayed batch)
    out.write([r for r in recs if r["event"] == "end"][::-1])
    out.write([r for r in recs if r["event"] == "start"])
    out.write(recs)
    # start and end of new processes inside one batch, end first
    more = R.pairs(5)
    more = [dict(r, id=r["id"].replace("00000000-", "11111111-")) for r in more]
    out.write(more[::-1])
    out.close()
    with connect() as conn:
        got = read_processes(conn)
    want = expected_processes(recs + more)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == want[k], k
    assert unescape(got[recs[0]["id"]]["cwd"]) == R.NASTY_BYTES


def test_sqlite_roundtrip(tmp_path):
    db = tmp_path / "o.db"
    _sql_roundtrip(make("sqlite", path=str(db)), lambda: sqlite3.connect(db))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_postgresql_roundtrip(postgres):
    dsn = postgres.new_database()
    _sql_roundtrip(make("postgresql", dsn=dsn), lambda: psycopg.connect(dsn))
    # a second instance (a second worker) migrates idempotently and adds nothing twice
    again = make("postgresql", dsn=dsn)
    again.open()
    again.write(R.pairs(30))
    again.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] == 35
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_postgresql_down_raises_output_error(postgres):
    out = make("postgresql", dsn=postgres.dsn_for("no_such_db"), connect_timeout=2)
    with pytest.raises(OutputError):
        out.open()


def test_json_tcp_down_raises_output_error():
    listener = LineListener()
    listener.start()
    port = listener.port
    listener.stop()
    out = make("json_tcp", host="127.0.0.1", port=port)
    with pytest.raises(OutputError):
        out.write(R.pairs(1))


@pytest.mark.parametrize("type_name,options,key", [
    ("jsonl", {}, "path"),
    ("jsonl", {"path": "/x", "bogus": 1}, "bogus"),
    ("jsonl", {"path": "/x", "fsync": "always"}, "fsync"),
    ("jsonl", {"path": "/x", "rotate_bytes": -1}, "rotate_bytes"),
    ("jsonl", {"path": "/x", "batch_records": 0}, "batch_records"),
    ("jsonl", {"path": "/x", "flush_interval": "1"}, "flush_interval"),
    ("sqlite", {"path": 3}, "path"),
    ("sqlite", {"path": "/x", "busy_timeout": True}, "busy_timeout"),
    ("postgresql", {}, "dsn"),
    ("postgresql", {"dsn": "host=x port"}, "dsn"),
    ("json_tcp", {"host": "127.0.0.1"}, "port"),
    ("json_tcp", {"host": "127.0.0.1", "port": 70000}, "port"),
    ("null", {"path": "/x"}, "path"),
])
def test_validate_names_the_bad_key(type_name, options, key):
    with pytest.raises(ConfigError) as e:
        OUTPUT_TYPES[type_name].validate("o", {"type": type_name, **options})
    assert e.value.key == f"outputs.o.{key}"


def test_validate_fills_defaults():
    v = OUTPUT_TYPES["jsonl"].validate("o", {"type": "jsonl", "path": "/x", "flush_interval": 1})
    assert v == {"type": "jsonl", "path": "/x", "rotate_bytes": 0, "fsync": "batch",
                 "batch_records": 1000, "flush_interval": 1.0, "queue_records": 0,
                 "reconnect_max_seconds": 30.0}


def test_postgresql_refuses_an_older_schema(postgres):
    """A database of schema version 2 (before jobs) is refused with a clear error, before
    any statement touches it; the output stays usable once pointed at a new database."""
    dsn = postgres.new_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (2)")
        conn.execute("CREATE TABLE process_libraries (process_id BIGINT, library_id BIGINT)")
    out = make("postgresql", dsn=dsn)
    with pytest.raises(OutputError, match=f"schema version 2, this OGRT writes version {SCHEMA_VERSION}"):
        out.open()
    assert out.conn is None
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'processes'"
                            ).fetchone()[0] == 0


def test_sqlite_refuses_an_older_schema(tmp_path):
    db = tmp_path / "v1.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (2)")
    conn.close()
    out = make("sqlite", path=str(db))
    with pytest.raises(OutputError, match=f"schema version 2, this OGRT writes version {SCHEMA_VERSION}"):
        out.write(R.pairs(2))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'processes'").fetchall() == []
    conn.close()


def test_sqlite_write_lock_held_too_long_is_unavailable_not_refused(tmp_path):
    """Another writer holding the write lock past busy_timeout: OutputError (the runner
    spools the batch and retries it), not an error that would reject the records."""
    db = tmp_path / "locked.db"
    out = make("sqlite", path=str(db), busy_timeout=0.2)
    out.open()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a real second writer takes the write lock
    try:
        with pytest.raises(OutputError, match="locked|busy"):
            out.write(R.pairs(3))
    finally:
        other.execute("ROLLBACK")
        other.close()
    out.write(R.pairs(3))  # the lock is free again: the same batch goes through
    out.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), count(end_time) FROM processes").fetchone() == (3, 3)
    conn.close()


def test_postgresql_processes_fillfactor(postgres):
    """processes keeps room on its pages, so the end record's update stays HOT."""
    dsn = postgres.new_database()
    out = make("postgresql", dsn=dsn)
    out.open()
    out.write(R.pairs(3))
    out.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'processes'::regclass"
                            ).fetchone()[0] == ["fillfactor=70"]
        assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] == 3


def test_postgresql_migrates_a_schema_3_database(postgres):
    """A database the previous release made (schema 3: no census tables) is migrated when the
    output opens it: the census tables appear (with version 5's per-day roll-up), the version
    becomes the newest, the rows stay."""
    from ogrt.sql.schema import schema_statements

    dsn = postgres.new_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for stmt in schema_statements("postgresql"):
            if "census_" not in stmt:
                conn.execute(stmt)
        conn.execute("INSERT INTO schema_version VALUES (3)")
        conn.execute("INSERT INTO modules (name) VALUES ('kept/1.0')")
    out = make("postgresql", dsn=dsn)
    out.open()
    out.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("SELECT name FROM modules").fetchall() == [("kept/1.0",)]
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'census_%'").fetchone()[0] == 10
