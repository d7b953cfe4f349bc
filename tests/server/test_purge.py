"""Retention: `ogrt purge` on real SQLite and PostgreSQL databases written by the real outputs,
and the daemon's `[retention] max_age`. Exactly the old processes go, then exactly the sets,
executables, libraries and modules only they used; nothing kept points to a deleted row,
even from a writer that cached the ids of deleted rows."""
from __future__ import annotations

import io
import sqlite3
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ogrt.age import parse_age
from ogrt.cli import main
from ogrt.errors import ConfigError
from ogrt.config import parse_config
from ogrt.outputs.base import Output
from tests.outputs.helpers import wait_for
from tests.report.helpers import report_json
from tests.report.records import job, process

NOW = datetime.now(timezone.utc)
OLD = NOW - timedelta(days=500)
RECENT = NOW - timedelta(days=3)
A = dict(host="node01", job="job-1", user="alice", uid=1001)
TABLES = ("processes", "executables", "libraries", "modules", "libsets", "libset_members",
          "modsets", "modset_members")


def _records() -> tuple[list[dict[str, Any]], set[str]]:
    """Old and recent processes; the uuids a purge of 400 days keeps."""
    recs: list[dict[str, Any]] = []
    keep: set[str] = set()

    def add(keep_it: bool, **kw: Any) -> None:
        rs = process(**A, **kw)
        recs.extend(rs)
        if keep_it:
            keep.add(rs[0]["id"])

    # shared by old and recent processes: stays
    add(False, pid=1, ppid=0, exe="/usr/bin/bash", start=OLD, seconds=5, libs=("/lib/libc.so.6",),
        modules=("gcc/12",))
    add(True, pid=2, ppid=0, exe="/usr/bin/bash", start=RECENT, seconds=5, libs=("/lib/libc.so.6",),
        modules=("gcc/12",))
    # only old processes use these: they go
    add(False, pid=3, ppid=0, exe="/old/bin/solver", start=OLD, seconds=60,
        libs=("/lib/libc.so.6", "/old/lib/libold.so"), late=("/old/lib/libplugin.so",),
        modules=("oldmod/1", "gcc/12"))
    add(False, pid=4, ppid=0, exe="/old/bin/never-ended", start=OLD, seconds=1, ended=False,
        libs=("/old/lib/libnoend.so",))
    # started before the cut-off, ended after it: stays, with what it uses
    add(True, pid=5, ppid=0, exe="/opt/long/run", start=NOW - timedelta(days=401), seconds=2 * 86400,
        libs=("/opt/long/liblong.so",), modules=("long/1",))
    # ended before the cut-off by one day
    add(False, pid=6, ppid=0, exe="/usr/bin/bash", start=NOW - timedelta(days=402), seconds=86400)
    return recs, keep


def _output(kind: str, tmp_path: Path, postgres: Any) -> tuple[type[Output], dict[str, Any], str]:
    from ogrt.outputs import OUTPUT_TYPES

    if kind == "sqlite":
        path = tmp_path / "ogrt.sqlite"
        opts = {"type": "sqlite", "path": str(path)}
        conf = f'[outputs.db]\ntype = "sqlite"\npath = "{path}"\n'
    else:
        dsn = postgres.new_database("purge")
        opts = {"type": "postgresql", "dsn": dsn}
        conf = f'[outputs.db]\ntype = "postgresql"\ndsn = "{dsn}"\n'
    cls = OUTPUT_TYPES[kind]
    (tmp_path / "ogrt.conf").write_text(conf)
    return cls, cls.validate("db", opts), str(tmp_path / "ogrt.conf")


def _connect(options: dict[str, Any]) -> Any:
    if options["type"] == "sqlite":
        return sqlite3.connect(options["path"])
    import psycopg
    return psycopg.connect(options["dsn"], autocommit=True)


def _snapshot(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def _dangling_and_orphans(conn: Any) -> dict[str, int]:
    """Rows pointing to a missing row, and shared rows nothing points to: all must be 0."""
    checks = {
        "process→executable": "SELECT count(*) FROM processes p WHERE p.executable_id IS NOT NULL AND "
                              "NOT EXISTS (SELECT 1 FROM executables e WHERE e.id = p.executable_id)",
        "process→libset": "SELECT count(*) FROM processes p WHERE p.libset_id IS NOT NULL AND "
                          "NOT EXISTS (SELECT 1 FROM libsets s WHERE s.id = p.libset_id)",
        "process→late libset": "SELECT count(*) FROM processes p WHERE p.late_libset_id IS NOT NULL AND "
                               "NOT EXISTS (SELECT 1 FROM libsets s WHERE s.id = p.late_libset_id)",
        "process→modset": "SELECT count(*) FROM processes p WHERE p.modset_id IS NOT NULL AND "
                          "NOT EXISTS (SELECT 1 FROM modsets s WHERE s.id = p.modset_id)",
        "member→libset": "SELECT count(*) FROM libset_members m WHERE "
                         "NOT EXISTS (SELECT 1 FROM libsets s WHERE s.id = m.libset_id)",
        "member→library": "SELECT count(*) FROM libset_members m WHERE "
                          "NOT EXISTS (SELECT 1 FROM libraries l WHERE l.id = m.library_id)",
        "member→modset": "SELECT count(*) FROM modset_members m WHERE "
                         "NOT EXISTS (SELECT 1 FROM modsets s WHERE s.id = m.modset_id)",
        "member→module": "SELECT count(*) FROM modset_members m WHERE "
                         "NOT EXISTS (SELECT 1 FROM modules x WHERE x.id = m.module_id)",
        "orphan executable": "SELECT count(*) FROM executables e WHERE "
                             "NOT EXISTS (SELECT 1 FROM processes p WHERE p.executable_id = e.id)",
        "orphan libset": "SELECT count(*) FROM libsets s WHERE NOT EXISTS (SELECT 1 FROM processes p "
                         "WHERE p.libset_id = s.id OR p.late_libset_id = s.id)",
        "orphan library": "SELECT count(*) FROM libraries l WHERE "
                          "NOT EXISTS (SELECT 1 FROM libset_members m WHERE m.library_id = l.id)",
        "orphan module": "SELECT count(*) FROM modules x WHERE "
                         "NOT EXISTS (SELECT 1 FROM modset_members m WHERE m.module_id = x.id)",
    }
    return {k: conn.execute(q).fetchone()[0] for k, q in checks.items()}


def _purge(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["purge", *argv])
    return code, out.getvalue()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_purge_removes_exactly_the_old_and_what_only_they_used(kind, tmp_path, request) -> None:
    postgres = request.getfixturevalue("postgres") if kind == "postgresql" else None
    cls, options, conf = _output(kind, tmp_path, postgres)
    recs, keep = _records()
    writer = cls("db", options)
    writer.open()
    writer.write(recs)  # its caches now hold the ids of rows the purge deletes
    conn = _connect(options)
    before = _snapshot(conn)

    code, text = _purge("--config", conf, "--older-than", "400d", "--dry-run")
    assert code == 0, text
    assert _snapshot(conn) == before  # a dry run changes nothing
    assert "processes     would remove          4   kept          2" in text, text
    assert "executables   would remove          2   kept          2" in text, text

    code, text = _purge("--config", conf, "--older-than", "400d", "--batch-rows", "2")
    assert code == 0, text
    assert "processes     removed          4   kept          2" in text, text
    uuids = {u for (u,) in conn.execute("SELECT uuid FROM processes").fetchall()}
    assert uuids == keep
    names = lambda q: {x for (x,) in conn.execute(q).fetchall()}  # noqa: E731
    assert names("SELECT path FROM executables") == {"/usr/bin/bash", "/opt/long/run"}
    assert names("SELECT path FROM libraries") == {"/lib/libc.so.6", "/opt/long/liblong.so"}
    assert names("SELECT name FROM modules") == {"gcc/12", "long/1"}
    assert not any(_dangling_and_orphans(conn).values()), _dangling_and_orphans(conn)
    # what the dry run announced is what went
    assert all(len(_snapshot(conn)[t]) <= len(before[t]) for t in TABLES)

    # the writer still caches the ids of the deleted executable, libraries and sets:
    # it must not link a new process to them
    again = process(**A, pid=7, ppid=0, exe="/old/bin/solver", start=NOW, seconds=1,
                    libs=("/lib/libc.so.6", "/old/lib/libold.so"), late=("/old/lib/libplugin.so",),
                    modules=("oldmod/1", "gcc/12"))
    writer.write(again)
    writer.close()
    assert _dangling_and_orphans(conn)["process→executable"] == 0
    assert not any(_dangling_and_orphans(conn).values()), _dangling_and_orphans(conn)
    # reports after the purge are consistent
    db = options.get("path") or options["dsn"]
    exes = {r["executable"] for r in report_json("--db", db, "executables")}
    assert exes == {"/usr/bin/bash", "/opt/long/run", "/old/bin/solver"}
    libs = {r["library"] for r in report_json("--db", db, "libraries")}
    assert "/old/lib/libnoend.so" not in libs and "/old/lib/libplugin.so" in libs
    conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_purge_ages_job_records_like_processes(kind, tmp_path, request) -> None:
    """A job record goes when the job ended before the cut-off, or, never ended, started
    before it; a job that ended after the cut-off stays."""
    postgres = request.getfixturevalue("postgres") if kind == "postgresql" else None
    cls, options, conf = _output(kind, tmp_path, postgres)
    recs = (job(OLD, "job_end", "old-ended", state="COMPLETED", exit_code=0, end=OLD + timedelta(hours=1))
            + job(OLD, "job_start", "old-never-ended", state=None)
            + job(NOW - timedelta(days=401), "job_end", "spans-the-cutoff", state="COMPLETED",
                  exit_code=0, end=NOW - timedelta(days=399))
            + job(RECENT, "job_end", "recent", state="FAILED", exit_code=3, end=RECENT + timedelta(hours=1)))
    writer = cls("db", options)
    writer.write(recs)
    writer.close()
    code, text = _purge("--config", conf, "--older-than", "400d", "--dry-run")
    assert code == 0 and "jobs          would remove          2   kept          2" in text, text
    code, text = _purge("--config", conf, "--older-than", "400d")
    assert code == 0, text
    conn = _connect(options)
    assert {j for (j,) in conn.execute("SELECT job_id FROM jobs").fetchall()} == {"spans-the-cutoff", "recent"}
    conn.close()


def test_ages() -> None:
    now = datetime(2026, 3, 31, 12, tzinfo=timezone.utc)
    assert parse_age("400d").cutoff(now) == now - timedelta(days=400)
    assert parse_age("2w").cutoff(now) == now - timedelta(days=14)
    assert parse_age("1m").cutoff(now) == datetime(2026, 2, 28, 12, tzinfo=timezone.utc)
    assert parse_age("18m").cutoff(now) == datetime(2024, 9, 30, 12, tzinfo=timezone.utc)
    assert parse_age("1y").cutoff(now) == datetime(2025, 3, 31, 12, tzinfo=timezone.utc)
    for bad in ("400", "18 min", "5h", "0d", "-3d", "1.5m", "d", ""):
        with pytest.raises(ValueError):
            parse_age(bad)
    with pytest.raises(ConfigError, match="retention.max_age"):
        parse_config({"retention": {"max_age": "400"}})
    assert parse_config({"retention": {"max_age": "18m"}}).retention.max_age == parse_age("18m")


def test_purge_cli_errors(tmp_path, capsys) -> None:
    conf = tmp_path / "ogrt.conf"
    records = tmp_path / "records.jsonl"
    conf.write_text(f'[outputs.j]\ntype = "jsonl"\npath = "{records}"\n')
    assert main(["purge", "--config", str(conf), "--older-than", "18"]) == 2
    assert "m (months)" in capsys.readouterr().err
    assert main(["purge", "--config", str(conf), "--older-than", "18m"]) == 2
    assert "no sqlite or postgresql output" in capsys.readouterr().err


def test_the_daemon_purges_by_itself_in_one_worker(ogrt_server, tmp_path) -> None:
    from ogrt.outputs import OUTPUT_TYPES

    db = tmp_path / "state" / "ogrt.sqlite"
    db.parent.mkdir()
    opts = OUTPUT_TYPES["sqlite"].validate("default", {"type": "sqlite", "path": str(db)})
    out = OUTPUT_TYPES["sqlite"]("default", opts)
    out.open()
    recs, keep = _records()
    out.write(recs)
    out.close()
    conf = (f'[server]\nstate_dir = "{db.parent}"\n[retention]\nmax_age = "400d"\n'
            '[outputs.default]\ntype = "sqlite"\n')
    srv = ogrt_server(config_toml=conf, workers=2)
    conn = sqlite3.connect(db)
    wait_for(lambda: {u for (u,) in conn.execute("SELECT uuid FROM processes")} == keep, timeout=30,
             what="the daemon's purge")
    wait_for(lambda: "retention: output default" in srv.stderr_text(), what="the purge's log line")
    assert not any(_dangling_and_orphans(conn).values())
    assert srv.stop() == 0
    assert srv.stderr_text().count("retention: output default") == 1  # one worker purges
    conn.close()
