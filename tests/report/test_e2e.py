"""End to end: real programs under the real preload library → real `ogrt server` (SQLite and
PostgreSQL outputs at once) → `ogrt report` as a subprocess."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.preload import PRELOAD_DIR, preload_env

REPO = Path(__file__).resolve().parents[2]
OGRT = Path(sys.executable).parent / "ogrt"
JOB = "e2e-job-42"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def ogrt_report(db: str, *argv: str) -> Any:
    proc = subprocess.run([str(OGRT), "report", *argv, "--db", db, "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_preload_to_daemon_to_report(preload_lib: Path, ogrt_server: Any, postgres: Any,
                                     tmp_path: Path) -> None:
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")
    assert python and shutil.which("gcc")
    # a stamped program, linked with the stamping wrapper shipped with the library
    tools = tmp_path / "tools"
    subprocess.run(["make", "-s", "-C", str(PRELOAD_DIR / "tools"), f"BUILDDIR={tools}"],
                   check=True, capture_output=True, timeout=120)
    hello = tmp_path / "hello"
    subprocess.run([str(tools / "ogrt-cc"), "gcc", "-o", str(hello), str(REPO / "demo/hello.c")],
                   check=True, capture_output=True, timeout=120)

    sqlite_path = str(tmp_path / "ogrt.sqlite")
    dsn = postgres.new_database()
    srv = ogrt_server(jsonl=False, extra_outputs=(
        f'[outputs.db]\ntype = "sqlite"\npath = "{sqlite_path}"\n'
        f'[outputs.pg]\ntype = "postgresql"\ndsn = "{dsn}"\n'))

    script = (
        "printf 'b\\na\\n' | sort >/dev/null\n"
        f"{python} -c 'import _ssl'\n"
        f"{hello} >/dev/null\n"
        "ls /nonexistent/ogrt-e2e 2>/dev/null\n"
        "exec /usr/bin/env /bin/true\n"  # bash → env → true: one process, three images
    )
    env = preload_env(preload_lib, srv.port, OGRT_TEST_JOBID=JOB)
    run = subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert srv.stop() == 0  # SIGTERM: drains and flushes every accepted record

    for db in (sqlite_path, dsn):
        tree = ogrt_report(db, "job", JOB)
        [root] = tree["tree"]
        assert root["command"] == "bash → env → true"
        assert [i["exe"].rsplit("/", 1)[-1] for i in root["images"]] == ["bash", "env", "true"]
        assert root["exit_status"] == 0
        kids = {c["command"]: c for c in root["children"]}
        assert set(kids) == {"sort", os.path.basename(os.path.realpath(python)), "hello", "ls"}, kids
        assert kids["ls"]["exit_status"] == 2 and kids["hello"]["exit_status"] == 0
        assert all(c["ppid"] == root["pid"] for c in root["children"])

        exes = {r["executable"]: r for r in ogrt_report(db, "executables", "--job", JOB)}
        assert exes[str(hello)]["runs"] == 1 and exes[os.path.realpath(python)]["runs"] == 1

        ssl = ogrt_report(db, "libraries", "--path", "_ssl", "--job", JOB)
        assert [(r["executable"], r["dlopened"]) for r in ssl] == [(os.path.realpath(python), 1)]
        assert "lib-dynload" in ssl[0]["library"] or "_ssl" in ssl[0]["library"]

        [sig] = ogrt_report(db, "signatures", "--job", JOB)
        assert sig["kind"] == "executable" and sig["path"] == str(hello) and UUID.match(sig["signature"])
        assert sig["signature"].encode() in hello.read_bytes()  # the stamp linked into the program

    # both databases tell the same story
    assert ogrt_report(sqlite_path, "job", JOB) == ogrt_report(dsn, "job", JOB)
    assert ogrt_report(sqlite_path, "users") == ogrt_report(dsn, "users")


def run_under_preload(preload_lib: Path, port: int, job: str) -> None:
    """One real program under the real library, sending its records to the daemon on `port`."""
    env = preload_env(preload_lib, port, OGRT_TEST_JOBID=job)
    run = subprocess.run(["/bin/true"], env=env, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr


def report_config(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OGRT), "report", "--config", str(config), *argv, "--format", "json"],
                          capture_output=True, text=True, timeout=60)


def test_report_config_finds_the_sqlite_output_without_a_path(preload_lib: Path, ogrt_server: Any) -> None:
    """Bug 1 of issue 9: `[outputs.db] type = "sqlite"` without `path` writes
    <state_dir>/db.sqlite; `ogrt report --config` looked for <state_dir>/ogrt.sqlite."""
    srv = ogrt_server(jsonl=False, extra_outputs='[outputs.db]\ntype = "sqlite"\n')
    run_under_preload(preload_lib, srv.port, "cfg-job-1")
    assert srv.stop() == 0
    assert (srv.state_dir / "db.sqlite").exists()
    proc = report_config(srv.config_path, "jobs")
    assert proc.returncode == 0, proc.stderr
    [job] = json.loads(proc.stdout)
    assert job["job"] == "cfg-job-1" and job["processes"] == 1


def test_report_output_picks_one_of_two_sql_outputs(preload_lib: Path, ogrt_server: Any) -> None:
    """--output NAME reads that output; the default is the first SQL output (not the jsonl one)."""
    srv = ogrt_server(extra_outputs='[outputs.db]\ntype = "sqlite"\n'
                                    '[outputs.archive]\ntype = "sqlite"\n')
    run_under_preload(preload_lib, srv.port, "cfg-job-2")
    assert srv.stop() == 0
    # both outputs hold the record; remove the first, so only the second can answer
    first = srv.state_dir / "db.sqlite"
    assert first.exists() and (srv.state_dir / "archive.sqlite").exists()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{first}{suffix}").unlink(missing_ok=True)
    proc = report_config(srv.config_path, "jobs")
    assert proc.returncode == 2 and f"no OGRT database at {first}" in proc.stderr
    proc = report_config(srv.config_path, "--output", "archive", "jobs")
    assert proc.returncode == 0, proc.stderr
    assert [j["job"] for j in json.loads(proc.stdout)] == ["cfg-job-2"]
    # not an SQL output, no such output: exit 2 naming the outputs there are
    proc = report_config(srv.config_path, "--output", "jsonl", "jobs")
    assert proc.returncode == 2 and "output jsonl is a jsonl output" in proc.stderr
    assert "db (sqlite), archive (sqlite)" in proc.stderr
    proc = report_config(srv.config_path, "--output", "nosuch", "jobs")
    assert proc.returncode == 2 and "no output named nosuch" in proc.stderr
    assert "jsonl (jsonl), db (sqlite), archive (sqlite)" in proc.stderr
