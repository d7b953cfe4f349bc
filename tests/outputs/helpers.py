"""Test helpers: a real NDJSON TCP listener, and reading processes back from the SQL schema."""
from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


class LineListener:
    """A TCP server on 127.0.0.1 collecting newline-delimited JSON, that can go away and return."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._srv: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def start(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(16)
        srv.settimeout(0.1)
        self.port = srv.getsockname()[1]
        self._srv = srv
        self._stop.clear()
        t = threading.Thread(target=self._accept, args=(srv,), daemon=True)
        t.start()
        self._threads = [t]

    def _accept(self, srv: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.1)
            self._conns.append(conn)
            t = threading.Thread(target=self._read, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = conn.recv(1 << 16)
            except TimeoutError:
                if self._stop.is_set():
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            *full, buf = buf.split(b"\n")
            with self._lock:
                self.lines.extend(json.loads(x) for x in full)
        assert buf == b"", f"a partial line was left: {buf[:80]!r}"

    def stop(self) -> None:
        """Go away: stop accepting and close every connection (after reading what arrived)."""
        self._stop.set()
        for t in self._threads[1:]:
            t.join(5)
        for c in self._conns:
            c.close()
        self._conns = []
        if self._srv is not None:
            self._srv.close()
            self._srv = None
        self._threads[0].join(5)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines)


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- SQL readback ---------------------------------------------------------------------------
PROC_COLS = ["uuid", "host", "peer", "job_id", "pid", "ppid", "uid", "gid", "username", "args",
             "cwd", "env", "rank", "start_time", "end_time", "exit_status", "duration", "utime",
             "stime", "maxrss_kb", "minflt", "majflt", "inblock", "oublock", "nvcsw", "nivcsw",
             "verified"]


def _norm(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return v


def read_processes(conn: Any) -> dict[str, dict[str, Any]]:
    """Every process of a sqlite3 or psycopg connection, as comparable dicts keyed by uuid."""
    cols = ", ".join(f"p.{c}" for c in PROC_COLS)
    q = (f"SELECT {cols}, e.path, e.signature FROM processes p "
         "LEFT JOIN executables e ON e.id = p.executable_id")
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(q).fetchall():
        d = {c: _norm(v) for c, v in zip(PROC_COLS, row)}
        for k in ("args", "env"):
            if isinstance(d[k], str):
                d[k] = json.loads(d[k])
        d["exe"], d["signature"] = row[-2], row[-1]
        d["libs"], d["modules"] = {}, set()
        out[d["uuid"]] = d
    q = ("SELECT p.uuid, l.path, l.signature, pl.late FROM process_libraries pl "
         "JOIN processes p ON p.id = pl.process_id JOIN libraries l ON l.id = pl.library_id")
    for uuid, path, sig, late in conn.execute(q).fetchall():
        out[uuid]["libs"][(path, sig)] = bool(late)
    q = ("SELECT p.uuid, m.name FROM process_modules pm "
         "JOIN processes p ON p.id = pm.process_id JOIN modules m ON m.id = pm.module_id")
    for uuid, name in conn.execute(q).fetchall():
        out[uuid]["modules"].add(name)
    return out


def expected_processes(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What read_processes() must return after `records` were written (any order)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        d = out.setdefault(r["id"], {c: None for c in PROC_COLS} | {
            "uuid": r["id"], "exe": None, "signature": None, "libs": {}, "modules": set()})
        for k in ("host", "peer", "job_id", "pid", "uid", "verified"):
            if r.get(k) is not None:
                d[k] = r[k]
        if r.get("user") is not None:
            d["username"] = r["user"]
        if r["event"] == "start":
            for k in ("ppid", "gid", "args", "cwd", "env", "rank", "exe"):
                d[k] = r[k]
            d["start_time"] = r["time"]
            d["signature"] = r["signature"] or ""
            d["modules"] = set(r["modules"])
            for lib in r["libs"]:
                d["libs"][(lib["path"], lib["signature"] or "")] = False
        else:
            d["end_time"] = r["time"]
            d["start_time"] = r["start_time"]
            for k in ("exit_status", "duration", "utime", "stime", "maxrss_kb", "minflt", "majflt",
                      "inblock", "oublock", "nvcsw", "nivcsw"):
                d[k] = r[k]
            for lib in r["libs"]:
                d["libs"].setdefault((lib["path"], lib["signature"] or ""), True)
    return out
