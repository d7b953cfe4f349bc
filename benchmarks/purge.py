#!/usr/bin/env python3
"""The daemon's ingest rate while `ogrt purge` deletes 1,000,000 processes, against its rate
without, measured in one run (issue 16: within 20 %, a ratio >= 0.8).

The database is built as benchmarks/report_scale.py builds it (its generator: 1,000,000
processes over the 30 days before 2026-11-25, 2,000 executables, library and module sets).
A real `ogrt server` (1 worker) writes into it; a sender process pushes start+end frames
(each pair a fresh uuid) as fast as the daemon writes them, all the time, keeping at most
3,000 records unwritten (so none go through the spool, whose replay is slower). Windows, in order:
`--window` seconds without purge, then the whole run of `ogrt purge --older-than 1d` (a
separate process: every generated row is older, every record the daemon writes is newer),
then `--window` seconds after it. Rate = records counted as persisted by the daemon's
/metrics per second in the window.

    .venv/bin/python benchmarks/purge.py [--processes N] [--backend sqlite|postgresql|both]
        [--window SECONDS] [--batch-rows N] [--pause F]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ogrt.metrics import parse  # noqa: E402
from ingest import Daemon, build_stream, output_toml, synthetic_pair, template  # noqa: E402
from report_scale import build_postgresql, build_sqlite, throwaway_postgres  # noqa: E402

TARGET = 0.8
CHUNK = 1000  # records per send (one batch of the output)
IN_FLIGHT = 3000  # records sent and not yet persisted, at most


def sender(port: int, mport: int, templates: list[tuple[bytes, bytes]], stop: mp.Event) -> None:  # type: ignore[type-arg]
    """Start+end pairs with fresh uuids, as fast as the daemon writes them, until `stop`:
    a chunk of CHUNK records whenever fewer than IN_FLIGHT sent records are not yet
    persisted (/metrics), so the output's queue (4 x 1,000) never overflows into the spool
    and the rate is the writer's, not the spool's."""
    c = socket.create_connection(("127.0.0.1", port))
    sent = 0
    while not stop.is_set():
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=30) as r:
            done = sum(v for k, v in parse(r.read().decode()).items()
                       if k.startswith("ogrt_output_persisted_total"))
        if sent - done >= IN_FLIGHT:
            time.sleep(0.005)
            continue
        c.sendall(build_stream(templates, CHUNK // 2, 0))
        sent += CHUNK
    c.close()


def rate_over(d: Daemon, seconds: float) -> float:
    n0, t0 = d.persisted(), time.perf_counter()
    time.sleep(seconds)
    return (d.persisted() - n0) / (time.perf_counter() - t0)


def run(kind: str, opts: argparse.Namespace) -> float:
    work = Path(tempfile.mkdtemp(prefix=f"ogrt-purge-bench-{kind}-"))
    server = None
    dsn = None
    try:
        t0 = time.perf_counter()
        if kind == "sqlite":
            build_sqlite(str(work / "ogrt.sqlite"), opts.processes)
        else:
            server, dsn = throwaway_postgres()
            if dsn is None:
                return 0.0
            build_postgresql(dsn, opts.processes)
        print(f"{kind}: built {opts.processes:,} processes in {time.perf_counter() - t0:.0f} s", flush=True)
        d = Daemon(work, output_toml(kind, work, dsn, 0), 1)
        s, e = synthetic_pair()
        templates = [template(12, s), template(13, e)]
        stop = mp.Event()
        proc = mp.Process(target=sender, args=(d.port, d.mport, templates, stop))
        proc.start()
        try:
            t_warm = time.perf_counter()  # warm up: the output connected, caches filled
            while d.persisted() < 20_000 and time.perf_counter() - t_warm < 600:
                time.sleep(0.5)
            rate_over(d, 5.0)
            print(f"{kind}: first 20,000 records persisted after {time.perf_counter() - t_warm:.0f} s", flush=True)
            before = rate_over(d, opts.window)
            print(f"{kind}: without purge: {before:,.0f} records/s over {opts.window:.0f} s", flush=True)
            cmd = [sys.executable, "-m", "ogrt", "purge", "--config", str(work / "ogrt.conf"),
                   "--older-than", "1d", "--batch-rows", str(opts.batch_rows), "--pause", str(opts.pause)]
            n0, t1 = d.persisted(), time.perf_counter()
            purge = subprocess.run(cmd, capture_output=True, text=True)
            took = time.perf_counter() - t1
            during = (d.persisted() - n0) / took
            print("\n".join(f"{kind}:   {line}" for line in (purge.stdout + purge.stderr).splitlines()))
            print(f"{kind}: during the purge: {during:,.0f} records/s over {took:.0f} s", flush=True)
            after = rate_over(d, opts.window)
            print(f"{kind}: after it: {after:,.0f} records/s over {opts.window:.0f} s", flush=True)
        finally:
            stop.set()
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
            d.stop()
            d.err.seek(0)
            problems = [x for x in d.err.read().splitlines() if "WARNING" in x or "ERROR" in x]
            if problems:
                print(f"{kind}: daemon log (warnings, errors; last 5):\n  " + "\n  ".join(problems[-5:]))
        ratio = during / before if before else 0.0
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(f"{kind}: ingest during / without purge = {ratio:.2f} (after / without: {after / before if before else 0.0:.2f}); "
              f"target >= {TARGET}: {verdict}", flush=True)
        return ratio
    finally:
        if server is not None:
            server.destroy()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--batch-rows", type=int, default=5000)
    ap.add_argument("--pause", type=float, default=1.0)
    opts = ap.parse_args()
    ratios = [run(k, opts) for k in (("sqlite", "postgresql") if opts.backend == "both" else (opts.backend,))]
    return 0 if all(r >= TARGET for r in ratios) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
