"""Records from the real preload library through a real `ogrt server` into jsonl and SQLite."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from tests.fixtures.preload import TEST_MAKE_VARS, preload_env

NASTY_DIR = b"we\xffird dir \\ with 'quote'"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_real_programs_become_records(ogrt_server, build_preload, tmp_path, transport) -> None:  # type: ignore[no-untyped-def]
    lib = build_preload(**{**TEST_MAKE_VARS, "TRANSPORT": transport})
    db = tmp_path / "e2e.sqlite"
    srv = ogrt_server(extra_outputs=f'[outputs.db]\ntype = "sqlite"\npath = "{db}"\n')
    cwd = tmp_path / NASTY_DIR.decode("utf-8", "surrogateescape")
    cwd.mkdir()
    env = preload_env(lib, srv.port, OGRT_TEST_JOBID="job-77", OGRT_TEST_ENV_A="a=1")
    r = subprocess.run([sys.executable, "-c", "import sys; sys.exit(3)"], env=env, cwd=cwd, timeout=60)
    assert r.returncode == 3
    r = subprocess.run([sys.executable, "-c", "import ssl, sqlite3, ctypes"], env=env, timeout=60)
    assert r.returncode == 0
    recs = srv.records(4, timeout=20)
    assert srv.stop() == 0
    recs = srv.records(4, timeout=1)
    starts = {r["id"]: r for r in recs if r["event"] == "start"}
    ends = {r["id"]: r for r in recs if r["event"] == "end"}
    first = [r for r in starts.values() if r["args"][-1] == "import sys; sys.exit(3)"]
    assert first, [r["args"] for r in starts.values()]
    s = first[0]
    from ogrt.textenc import unescape
    assert unescape(s["cwd"]).endswith(NASTY_DIR)
    assert s["job_id"] == "job-77" and s["env"] == {"OGRT_TEST_ENV_A": "a=1"}
    assert s["peer"] == "127.0.0.1" and s["user"] is not None and s["libs"]
    assert ends[s["id"]]["exit_status"] == 3
    py = [r for r in starts.values() if "python" in r["exe"] and r["args"][-1] == "import ssl, sqlite3, ctypes"]
    assert py, "the interpreter's start record"
    late = {lib["path"] for lib in ends[py[0]["id"]]["libs"]}
    assert any("_ssl" in p for p in late), late  # dlopen()ed after the start record
    with sqlite3.connect(db) as conn:
        n = conn.execute("select count(*) from processes where start_time is not null").fetchone()[0]
    assert n == len(starts)
