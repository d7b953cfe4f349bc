"""Web dashboard fixtures: a database filled by the real daemon from real programs run under
the real preload library, real `ogrt web` processes on free loopback ports, real Chromium.

`web_data` (module scope) runs three jobs of real programs under libogrt.so against a real
`ogrt server` writing SQLite and PostgreSQL at once; `start_web(db, web_toml)` starts
`ogrt web` over one of them; `browser` is Debian's Chromium driven by Playwright.
"""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.preload import preload_env
from tests.fixtures.server import _start, free_port

OGRT = Path(sys.executable).parent / "ogrt"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SECRET = "SeCrEt-web-42"  # an argument that must never show unless show_args
JOBS = ("web-job-1", "web-job-2", "web-job-3")


@dataclass
class WebData:
    sqlite: str
    pg: str
    python: str  # the real path of the python the jobs ran

    def db(self, kind: str) -> str:
        return self.sqlite if kind == "sqlite" else self.pg


def _workloads(python: str) -> dict[str, str]:
    return {
        # a pipeline, python loading libssl (dlopen), two MPI-like ranks, a failing ls, a secret arg
        "web-job-1": ("printf 'b\\na\\n' | sort >/dev/null\n"
                      f"{python} -c 'import _ssl'\n"
                      "PMI_RANK=0 /bin/sleep 0.3 & PMI_RANK=1 /bin/sleep 0.4 & wait\n"
                      "ls /nonexistent/ogrt-web 2>/dev/null\n"
                      f"/bin/echo --password={SECRET} >/dev/null\n"
                      "exit 0\n"),
        "web-job-2": f"{python} -c 'import _ssl'\nprintf 'c\\n' | sort >/dev/null\n/bin/true\n",
        "web-job-3": "/bin/true\n/bin/true\nls /nonexistent/ogrt-web 2>/dev/null\nexit 0\n",
    }


@pytest.fixture(scope="module")
def web_data(preload_lib: Path, postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebData]:
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")
    assert python
    base = tmp_path_factory.mktemp("web-data")
    sqlite_path = str(base / "ogrt.sqlite")
    dsn = postgres.new_database()
    srv = _start(base / "server", None, 1,
                 f'[outputs.db]\ntype = "sqlite"\npath = "{sqlite_path}"\n'
                 f'[outputs.pg]\ntype = "postgresql"\ndsn = "{dsn}"\n', False, 30.0)
    try:
        for job, script in _workloads(python).items():
            env = preload_env(preload_lib, srv.port, OGRT_TEST_JOBID=job)
            run = subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, timeout=60)
            assert run.returncode == 0, run.stderr
        assert srv.stop() == 0  # drains and flushes every accepted record
    finally:
        srv.kill()
    yield WebData(sqlite_path, dsn, os.path.realpath(python))


@dataclass
class WebServer:
    proc: subprocess.Popen[bytes]
    port: int
    base: str
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def get(self, path: str, headers: dict[str, str] | None = None,
            source: str | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request("GET", self.base + path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def start_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., WebServer]]:
    """`start_web(db, web_toml="")` → a running `ogrt web --config CONF --db DB`."""
    servers: list[WebServer] = []

    def start(db: str, web_toml: str = "", base_path: str = "") -> WebServer:
        d = tmp_path_factory.mktemp("web")
        for _ in range(5):
            port = free_port(udp_too=False)
            conf = d / "ogrt.conf"
            conf.write_text(f'[web]\naddress = "127.0.0.1:{port}"\n'
                            + (f'base_path = "{base_path}"\n' if base_path else "") + web_toml)
            err = d / f"web-{port}.stderr"
            with open(err, "wb") as f:
                proc = subprocess.Popen([str(OGRT), "web", "--config", str(conf), "--db", db],
                                        stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
            server = WebServer(proc, port, base_path, err)
            servers.append(server)
            if _wait_listening(port, proc):
                return server
            server.stop()
            if "address already in use" not in server.stderr().lower():
                raise RuntimeError(f"ogrt web did not start:\n{server.stderr()[-3000:]}")
        raise RuntimeError("no free port for ogrt web")

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium; `make test` installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with tempfile.TemporaryDirectory(prefix="ogrt-chromium-") as profile, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900})
        try:
            yield context
        finally:
            context.close()
