"""`ogrt report` options, database selection, time parsing and errors."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ogrt.report.db import sql_output
from ogrt.sql.schema import SCHEMA_VERSION
from ogrt.report.render import render
from ogrt.report.queries import Report
from ogrt.report.timespec import TimeSpecError, parse_time, to_rfc3339
from tests.report.helpers import report, report_json
from tests.report.records import dataset

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("7d", "2026-11-18T12:00:00.000000Z"),
    ("12h", "2026-11-25T00:00:00.000000Z"),
    ("30m", "2026-11-25T11:30:00.000000Z"),
    ("90s", "2026-11-25T11:58:30.000000Z"),
    ("2w", "2026-11-11T12:00:00.000000Z"),
    ("1.5h", "2026-11-25T10:30:00.000000Z"),
    ("2026-11-24", "2026-11-24T00:00:00.000000Z"),
    ("2026-11-24T13:14", "2026-11-24T13:14:00.000000Z"),
    ("2026-11-24 13:14:15.5", "2026-11-24T13:14:15.500000Z"),
    ("2026-11-24T13:14:15Z", "2026-11-24T13:14:15.000000Z"),
    ("2026-11-24T13:14:15+02:00", "2026-11-24T11:14:15.000000Z"),
])
def test_parse_time(text: str, expected: str) -> None:
    assert to_rfc3339(parse_time(text, now=NOW)) == expected


@pytest.mark.parametrize("text", ["yesterday", "7x", "", "2026-13-01", "-3d"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(TimeSpecError):
        parse_time(text, now=NOW)


def test_options_before_or_after_the_report_name(sqlite_db: str) -> None:
    after = report_json("executables", "--db", sqlite_db, "--user", "bob", "--top", "2")
    code, text = report("--db", sqlite_db, "--format", "json", "--top", "2", "executables", "--user", "bob")
    assert code == 0 and json.loads(text) == after and len(after) == 2


def test_bad_values_exit_2_with_a_message(sqlite_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report("executables", "--db", sqlite_db, "--since", "last tuesday")[0] == 2
    assert "not a time" in capsys.readouterr().err
    assert report("executables", "--db", sqlite_db, "--top", "-1")[0] == 2
    missing = tmp_path / "none.sqlite"
    assert report("users", "--db", str(missing))[0] == 2
    assert "no OGRT database" in capsys.readouterr().err
    assert not missing.exists()  # a report never creates a database
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    assert report("users", "--db", str(junk))[0] == 2
    assert "not an OGRT database" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report("libraries", "--db", sqlite_db, "--path", "x", "--by", "planet")


def test_config_selects_the_first_sql_output(sqlite_db: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "ogrt.conf"
    conf.write_text(
        '[server]\nstate_dir = "/nonexistent"\n'
        '[outputs.lines]\ntype = "jsonl"\npath = "/tmp/x.jsonl"\n'
        f'[outputs.db]\ntype = "sqlite"\npath = "{sqlite_db}"\n'
        '[outputs.pg]\ntype = "postgresql"\ndsn = "postgresql://nobody@127.0.0.1:1/x"\n')
    assert sql_output(str(conf)).options["path"] == sqlite_db
    assert sql_output(str(conf), "pg").options["dsn"] == "postgresql://nobody@127.0.0.1:1/x"
    rows = report_json("users", "--config", str(conf))
    assert {r["user"] for r in rows} == {"alice", "bob"}
    # --db wins over --config
    assert report_json("users", "--config", str(conf), "--db", sqlite_db) == rows
    # the file the daemon writes: no outputs, the embedded default in state_dir; an sqlite
    # output without path, <state_dir>/<NAME>.sqlite
    bare = tmp_path / "bare.conf"
    bare.write_text('[server]\nstate_dir = "/srv/ogrt state"\n')
    assert sql_output(str(bare)).options["path"] == "/srv/ogrt state/ogrt.sqlite"
    named = tmp_path / "named.conf"
    named.write_text('[server]\nstate_dir = "/srv/ogrt"\n[outputs.db]\ntype = "sqlite"\n')
    assert sql_output(str(named)).options["path"] == "/srv/ogrt/db.sqlite"
    none = tmp_path / "none.conf"
    none.write_text('[outputs.l]\ntype = "jsonl"\npath = "/tmp/x"\n')
    assert report("users", "--config", str(none))[0] == 2
    assert "no sqlite or postgresql output to report from (outputs: l (jsonl))" in capsys.readouterr().err
    bad = tmp_path / "bad.conf"
    bad.write_text("[server\n")
    assert report("users", "--config", str(bad))[0] == 2
    assert "not valid TOML" in capsys.readouterr().err
    # a key the daemon refuses is refused here too (the old parser took conninfo/url/uri)
    pgkey = tmp_path / "pgkey.conf"
    pgkey.write_text('[outputs.pg]\ntype = "postgresql"\nurl = "postgresql://x@127.0.0.1:1/x"\n')
    assert report("users", "--config", str(pgkey))[0] == 2
    assert "outputs.pg" in capsys.readouterr().err


def test_config_with_postgresql_output(pg_db: str, tmp_path: Path) -> None:
    conf = tmp_path / "ogrt.conf"
    conf.write_text(f'[outputs.pg]\ntype = "postgresql"\ndsn = "{pg_db}"\n')
    assert {r["user"] for r in report_json("users", "--config", str(conf))} == {"alice", "bob"}


def test_unreachable_postgresql_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _ = report("users", "--db", f"postgresql://ogrt:secret@127.0.0.1:{port}/ogrt")
    err = capsys.readouterr().err
    assert code == 2 and "ogrt report:" in err and "secret" not in err


def test_rich_table_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    rep = Report("Executables", [("executable", "Executable"), ("runs", "Runs")],
                 [{"executable": "/usr/bin/x", "runs": 3}, {"executable": "/tmp/[red]y[/red]", "runs": 1}])
    render(rep, "table", out)
    text = out.getvalue()
    assert "Executables" in text and "/usr/bin/x" in text
    assert "/tmp/[red]y[/red]" in text  # data, not rich markup
    assert "┃" in text or "│" in text  # box drawing: a rich table, not the plain layout


def test_console_script_and_module_entry(sqlite_db: str) -> None:
    ogrt = Path(sys.executable).parent / "ogrt"
    for cmd in ([str(ogrt), "report"], [sys.executable, "-m", "ogrt.report"]):
        proc = subprocess.run([*cmd, "signatures", "--db", sqlite_db, "--format", "csv"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "200"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0].startswith("signature,kind,path,runs")
    proc = subprocess.run([str(ogrt), "report", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "executables" in proc.stdout and "signatures" in proc.stdout


def test_report_connections_are_read_only(sqlite_db: str, pg_db: str) -> None:
    import sqlite3

    import psycopg

    from ogrt.report.db import open_db

    for target, error in ((sqlite_db, sqlite3.OperationalError), (pg_db, psycopg.Error)):
        with open_db(target) as db:
            with pytest.raises(error):
                db.conn.execute("DELETE FROM processes")
        with open_db(target) as db:
            n = db.query("SELECT COUNT(*) AS n FROM processes")[0]["n"]
            assert n == len({r["id"] for r in dataset() if "id" in r})  # nothing was deleted
    # not only a setting the connection could undo: SQLite opens the file mode=ro
    with open_db(sqlite_db) as db:
        db.conn.execute("PRAGMA query_only = OFF")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.conn.execute("DELETE FROM processes")
    before = Path(sqlite_db).read_bytes()
    assert report("--db", sqlite_db, "executables")[0] == 0
    assert Path(sqlite_db).read_bytes() == before
    # PostgreSQL: every transaction of the session is read-only from its start-up
    with open_db(pg_db) as db:
        assert db.conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            db.conn.execute("INSERT INTO modules (name) VALUES ('x')")


def test_a_database_of_another_schema_version_is_named(sqlite_db: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    import sqlite3

    old = tmp_path / "v1.sqlite"
    shutil.copy(sqlite_db, old)
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE schema_version SET version = 2")
    assert report("executables", "--db", str(old))[0] == 2
    err = capsys.readouterr().err
    assert "schema version 2" in err and f"reads version {SCHEMA_VERSION}" in err
