#!/usr/bin/env python3
"""How fast the `ogrt web` pages get their data over 1,000,000 processes (SQLite, PostgreSQL).

Builds the database of benchmarks/report_scale.py (same generator, same seed), then for each
page times (1) its data request: the page function of ogrt/web/pages.py that the HTML view
and the JSON/CSV downloads call, and (2) the whole HTTP request (`?format=json`) to a real
`ogrt web` process on a loopback port, first (queries run) and second (its page cache,
`[web] cache_seconds`). Prints seconds per page; data timings are the median of --repeat
runs.

Targets (issue 14): each page ≤ 1 s, the overview ≤ 2 s.

    .venv/bin/python benchmarks/web.py [--processes N] [--backend sqlite|postgresql|both]
        [--db PATH] [--keep] [--dsn CONNINFO] [--repeat 3]
"""
from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report_scale import N_JOBS, PICKS, add_options, postgresql_database, sqlite_database  # noqa: E402
from ogrt.report.db import open_target  # noqa: E402
from ogrt.web import pages  # noqa: E402
from ogrt.web.params import parse  # noqa: E402
from tests.fixtures.server import free_port  # noqa: E402

TARGET = 1.0
TARGET_OVERVIEW = 2.0
TOP_EXE = "/apps/gcc/0/bin/prog0"  # the most run executable of the generator (Zipf rank 1)

#: (label, URL path below the base, page spec, query parameters, job id for the job page)
CASES: list[tuple[str, str, pages.Spec, list[tuple[str, str]], str]] = [
    ("overview", "/", pages.PAGES["/"], [], ""),
    ("overview since=7d", "/", pages.PAGES["/"], [("since", "7d")], ""),
    ("executables", "/executables", pages.PAGES["/executables"], [], ""),
    ("executable (top one) → its jobs", "/executable", pages.PAGES["/executable"], [("path", TOP_EXE)], ""),
    ("libraries", "/libraries", pages.PAGES["/libraries"], [], ""),
    ("libraries q=libmkl", "/libraries", pages.PAGES["/libraries"], [("q", "libmkl")], ""),
    ("modules", "/modules", pages.PAGES["/modules"], [], ""),
    ("users", "/users", pages.PAGES["/users"], [], ""),
    ("jobs", "/jobs", pages.PAGES["/jobs"], [], ""),
    ("jobs page=20", "/jobs", pages.PAGES["/jobs"], [("page", "20")], ""),
    (f"jobs user={PICKS['user']}", "/jobs", pages.PAGES["/jobs"], [("user", PICKS["user"])], ""),
    ("signatures", "/signatures", pages.PAGES["/signatures"], [], ""),
    (f"job {PICKS['job']}", f"/jobs/{PICKS['job']}", pages.JOB, [], PICKS["job"]),
]


def time_data(target: tuple[str, str], repeat: int) -> dict[str, float]:
    out = {}
    for label, _, spec, query, job in CASES:
        params = parse(query, spec.allowed, spec.default_top, spec.choices)
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            with open_target(target) as db:  # as the app: a read-only connection per request
                spec.func(db, params, False, **({"job_id": job} if job else {}))
            runs.append(time.perf_counter() - t0)
        out[label] = statistics.median(runs)
    return out


def time_http(db: str) -> dict[str, tuple[float, float]]:
    """Per page: the first HTTP request (runs the queries) and the second (the page cache)."""
    port = free_port(udp_too=False)
    tmp = tempfile.mkdtemp(prefix="ogrt-web-bench-")
    conf = Path(tmp) / "ogrt.conf"
    conf.write_text(f'[web]\naddress = "127.0.0.1:{port}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "ogrt", "web", "--config", str(conf), "--db", db],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        out = {}
        for label, path, _, query, _ in CASES:
            qs = "&".join(f"{k}={urllib.request.quote(v, safe='')}" for k, v in query + [("format", "json")])
            runs = []
            for _ in range(2):
                t0 = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?{qs}", timeout=300) as resp:
                    resp.read()
                runs.append(time.perf_counter() - t0)
            out[label] = (runs[0], runs[1])
        return out
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)


def report(label: str, data: dict[str, float], http: dict[str, tuple[float, float]], n: int) -> bool:
    """The verdict is on the data request (the queries); HTTP: first request, then cached."""
    ok = True
    print(f"{label}: {'page':36} {'data s':>7} {'HTTP 1st':>8} {'cached':>7}  target (data)")
    for name, seconds in data.items():
        target = TARGET_OVERVIEW if name.startswith("overview") else TARGET
        meets = seconds <= target
        ok &= meets
        first, cached = http[name]
        print(f"{label}: {name:36} {seconds:7.3f} {first:8.3f} {cached:7.3f}  ≤ {target:.0f} s "
              f"{'ok' if meets else 'MISSES'}")
    print(f"{label}: {n:,} processes, {N_JOBS:,} jobs: {'every page meets its target' if ok else 'some pages miss'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(ap, backend="both")
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    ok = True
    if opts.backend in ("sqlite", "both"):
        with sqlite_database(opts) as path:
            ok &= report("sqlite", time_data(("sqlite", path), opts.repeat), time_http(path),
                         opts.processes)
    if opts.backend in ("postgresql", "both"):
        with postgresql_database(opts) as dsn:
            if dsn is not None:
                ok &= report("postgresql", time_data(("postgresql", dsn), opts.repeat),
                             time_http(dsn), opts.processes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
