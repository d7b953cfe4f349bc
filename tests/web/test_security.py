"""Who may see the dashboard, what it never shows, and what it does with bad input: real
`ogrt web` processes over the real daemon's database, spoken to over loopback HTTP."""
from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ogrt.report.db import db_target, open_target
from ogrt.web.passwords import hash_password, is_hash, verify_password
from tests.web.conftest import JOBS, OGRT, SECRET, WebData, WebServer

PAGES = ["/", "/executables", "/libraries", "/libraries?q=libc", "/modules", "/users", "/jobs",
         "/signatures", "/executable?path=/bin/echo", "/executable?path=/usr/bin/echo",
         *(f"/jobs/{j}" for j in JOBS)]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_hash_password_cli_and_verify() -> None:
    proc = subprocess.run([str(OGRT), "web", "hash-password"], input="correct horse\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.strip()
    assert is_hash(digest) and "correct horse" not in digest and digest.startswith("scrypt$")
    assert verify_password("correct horse", digest) and not verify_password("correct horsE", digest)
    assert hash_password("x") != hash_password("x")  # salted
    empty = subprocess.run([str(OGRT), "web", "hash-password"], input="", capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode == 1 and "password" in empty.stderr


def test_config_refuses_plain_passwords_and_open_binds(tmp_path: Path, web_data: WebData) -> None:
    conf = tmp_path / "ogrt.conf"
    good = hash_password("s3cret-pw")
    for users in ('alice = "hunter2-pw"', f'alice = "{good}"\nbob = "hunter2-pw"', 'alice = 12345678'):
        conf.write_text(f'[web]\nauth = "basic"\n[web.users]\n{users}\n')
        proc = subprocess.run([str(OGRT), "check-config", str(conf)], capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "web.users" in out, out
        # neither the rejected value nor another user's hash is echoed
        assert "hunter2-pw" not in out and good not in out and "12345678" not in out, out
    conf.write_text(f'[web]\nauth = "basic"\nusers = "{good}"\n')  # not a table
    proc = subprocess.run([str(OGRT), "check-config", str(conf)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "web.users" in proc.stderr and good not in proc.stderr, proc.stderr
    conf.write_text('[web]\naddress = "0.0.0.0:1"\n')  # no auth on every interface
    proc = subprocess.run([str(OGRT), "web", "--config", str(conf), "--db", web_data.sqlite],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "web.auth" in proc.stderr


def test_security_headers(web_data: WebData, start_web: Any) -> None:
    srv = start_web(web_data.sqlite)
    for path in ("/", "/static/ogrt.js", "/?top=x", "/nope"):
        status, headers, _ = srv.get(path)
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff", path
    status, _, body = srv.get("/")
    assert status == 200 and not re.search(r"<script(?![^>]*(src=|application/json))", body)  # no inline code


def test_basic_auth(web_data: WebData, start_web: Any) -> None:
    digest = hash_password("s3cret pass")
    srv = start_web(web_data.sqlite, f'auth = "basic"\n[web.users]\nalice = "{digest}"\n')
    for path in ("/", "/jobs?format=json", "/static/ogrt.js"):
        status, headers, body = srv.get(path)
        assert status == 401 and headers["www-authenticate"].startswith("Basic"), path
        assert "web-job" not in body
    assert srv.get("/", _basic("alice", "wrong"))[0] == 401
    assert srv.get("/", _basic("bob", "s3cret pass"))[0] == 401
    assert srv.get("/", {"Authorization": "Basic !!!notbase64"})[0] == 401
    status, _, body = srv.get("/jobs?format=json", _basic("alice", "s3cret pass"))
    assert status == 200 and {j["job"] for j in json.loads(body)} == set(JOBS)


def test_proxy_auth_trusts_only_listed_proxies(web_data: WebData, start_web: Any) -> None:
    srv = start_web(web_data.sqlite, 'auth = "proxy"\nproxies = ["127.0.0.2"]\nproxy_header = "X-Forwarded-User"\n')
    who = {"X-Forwarded-User": "alice"}
    # the header from an address that is not a listed proxy is ignored: refused
    assert srv.get("/", who, source="127.0.0.1")[0] == 401
    assert srv.get("/", who, source="127.0.0.3")[0] == 401
    # from the proxy: without the header refused, with it shown (and named)
    assert srv.get("/", source="127.0.0.2")[0] == 401
    status, _, body = srv.get("/", who, source="127.0.0.2")
    assert status == 200 and 'class="who">alice<' in body
    assert "ignored X-Forwarded-User header from 127.0.0.1" in srv.stderr()


def _everything(srv: WebServer) -> str:
    """Every page, its JSON and every CSV table it offers."""
    texts = []
    for path in PAGES:
        sep = "&" if "?" in path else "?"
        status, _, html = srv.get(path)
        assert status == 200, (path, html)
        texts.append(html)
        status, _, body = srv.get(path + sep + "format=json")
        assert status == 200, path
        texts.append(body)
        for table in re.findall(r"table=(\w+)", html):
            status, _, body = srv.get(path + sep + f"format=csv&table={table}")
            assert status == 200, (path, table)
            texts.append(body)
    return "\n".join(texts)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_args_only_with_show_args(kind: str, web_data: WebData, start_web: Any) -> None:
    hidden = start_web(web_data.db(kind))
    text = _everything(hidden)
    assert SECRET not in text and "--password" not in text
    shown = start_web(web_data.db(kind), "show_args = true\n")
    status, _, html = shown.get("/jobs/web-job-1")
    assert status == 200 and f"--password={SECRET}" in html
    status, _, body = shown.get("/jobs/web-job-1?format=json")
    assert SECRET in body


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_bad_input_400_or_empty_logged_once(kind: str, web_data: WebData, start_web: Any) -> None:
    srv = start_web(web_data.db(kind))
    bad = {
        "/?nosuch=1": "unknown parameter 'nosuch'",
        "/jobs?page=999999999999": "page: must be a whole number",
        "/jobs?page=100000": "page: 100000 is too far",
        "/jobs?top=0": "top: must be 1..500",
        "/?since=yesterday-ish": "since: 'yesterday-ish' is not a time",
        "/?since=99999999999999d": "since: '99999999999999d' is out of range",
        "/?user=123456789012345": "user: uid",
        "/libraries?q=libc&by=color": "by: must be one of",
        "/?host=a%00b": "host: control characters",
        "/?user=a&user=b": "user: given more than once",
        "/?format=xml": "format: must be one of",
        "/?format=csv&table=nosuch": "table: must be one of",
        "/executable": "path: required",
    }
    for path, message in bad.items():
        status, _, body = srv.get(path)
        assert status == 400 and message in body, (path, status, body)
    # SQL metacharacters are data: empty results, not errors, and the database is intact
    for path in ["/libraries?q=" + quote("'; DROP TABLE processes; --"), "/libraries?q=%25_%5C",
                 "/executables?path=" + quote("\" OR 1=1 --"), "/jobs?user=" + quote("' OR '1'='1"),
                 "/jobs?host=" + quote("x' UNION SELECT 1 --"), "/jobs/" + quote("1' OR '1'='1", safe=""),
                 "/signatures?signature=" + quote("') OR 1=1 --")]:
        status, _, body = srv.get(path + ("&" if "?" in path else "?") + "format=json")
        assert status == 200, (path, body)
        data = json.loads(body)
        assert data in ([], {"uses": [], "daily": []}) or data.get("processes") == 0, (path, data)
    status, _, body = srv.get("/jobs?format=json")
    assert {j["job"] for j in json.loads(body)} == set(JOBS)
    log = srv.stderr()
    for message in bad.values():
        assert sum(message in line for line in log.splitlines()) == 1, (message, log)
    assert "Traceback" not in log and " 500 " not in log


def test_read_only_database_access(web_data: WebData) -> None:
    with open_target(db_target(web_data.sqlite)) as db:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.conn.execute("DELETE FROM processes")
    import psycopg

    with open_target(db_target(web_data.pg)) as db:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            db.conn.execute("DELETE FROM processes")


def test_base_path(web_data: WebData, start_web: Any) -> None:
    srv = start_web(web_data.sqlite, base_path="/ogrt")
    status, _, html = srv.get("/jobs")
    assert status == 200 and 'href="/ogrt/jobs/web-job-1"' in html and 'src="/ogrt/static/ogrt.js"' in html
    assert srv.get("/static/uPlot.iife.min.js")[0] == 200
    conn_status = WebServer(srv.proc, srv.port, "", srv.stderr_path).get("/jobs")[0]
    assert conn_status == 404


@pytest.mark.parametrize("cache_seconds", [0, 3600])
def test_page_cache(cache_seconds: int, tmp_path: Path, start_web: Any) -> None:
    """A page's data is reused for cache_seconds (its downloads too); 0 reads every time."""
    from tests.report.conftest import write_records
    from tests.report.records import dataset, process, T4

    path = str(tmp_path / "ogrt.sqlite")
    write_records("sqlite", {"type": "sqlite", "path": path}, dataset())
    srv = start_web(path, f"cache_seconds = {cache_seconds}\n")
    before = json.loads(srv.get("/jobs?format=json")[2])
    write_records("sqlite", {"type": "sqlite", "path": path},
                  process(host="n9", job="job-new", user="carol", uid=1003, pid=1, ppid=0,
                          exe="/bin/true", start=T4, seconds=1))
    after = json.loads(srv.get("/jobs?format=json")[2])
    assert "job-new" not in {j["job"] for j in before}
    assert ("job-new" in {j["job"] for j in after}) == (cache_seconds == 0)
    # the CSV of the page just viewed comes from the same data
    assert ("job-new" in srv.get("/jobs?format=csv")[2]) == (cache_seconds == 0)
