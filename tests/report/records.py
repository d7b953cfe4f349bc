"""A small, deterministic set of OGRT records (README "Record format") for report tests.

Three jobs on two nodes plus a login-node process:
  job-1 (alice, node01): a batch shell running a pipeline, python importing a C extension
      (libssl dlopen'ed: a late lib in the end record), `env` exec'ing into a stamped program,
      a failing command, and a grandchild /bin/sh of python.
  job-2 (bob, node02): three runs of an MKL-linked application, a pid reused by two
      processes that both exited (not an exec chain), a path that is not UTF-8.
  job-3 (bob, node01): a stamped shared library loaded by the same MKL application.
  no job (alice, login1): vim.
And one process whose start record never arrived (end only).
Job records (the scheduler's): job-2 FAILED with exit code 1 (start and end record), job-9
with a record but no recorded process; job-1 and job-3 have none.
"""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timedelta, timezone
from typing import Any

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LIBM = "/lib/x86_64-linux-gnu/libm.so.6"
LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
SSL_EXT = "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"
MKL = "/opt/intel/mkl/lib/intel64/libmkl_core.so.2"
MKL_THREAD = "/opt/intel/mkl/lib/intel64/libmkl_intel_thread.so.2"
STAMP_EXE = "5b8d3f1e-0c2a-4b7e-9f10-aa11bb22cc33"
STAMP_LIB = "0f0e0d0c-0b0a-4908-8706-050403020100"
NON_UTF8_EXE = "/scratch/bob/caf\\xe9/run"  # escaped text of b"/scratch/bob/caf\xe9/run"

T1 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)
T2 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=timezone.utc)
T3 = datetime(2026, 11, 24, 18, 0, 0, tzinfo=timezone.utc)
T4 = datetime(2026, 11, 25, 8, 0, 0, tzinfo=timezone.utc)

_counter = [0]


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"


def _uuid() -> str:
    _counter[0] += 1
    return str(uuidlib.UUID(int=_counter[0] * 0x1000100010001 + (7 << 76)))


def process(*, host: str, job: str | None, user: str, uid: int, pid: int, ppid: int, exe: str,
            start: datetime, seconds: float, exit_status: int | None = 0, args: list[str] | None = None,
            libs: tuple[str, ...] = (LIBC,), late: tuple[str, ...] = (), signature: str | None = None,
            lib_signatures: dict[str, str] | None = None, modules: tuple[str, ...] = (),
            utime: float = 0.0, stime: float = 0.0, ended: bool = True, started: bool = True,
            rank: int | None = None) -> list[dict[str, Any]]:
    """The start and end record of one process (end only / start only on request)."""
    pid_uuid = _uuid()
    sigs = lib_signatures or {}
    end_t = start + timedelta(seconds=seconds)
    start_rec = {
        "event": "start", "id": pid_uuid, "time": rfc3339(start), "host": host, "peer": "127.0.0.1",
        "job_id": job, "pid": pid, "ppid": ppid, "uid": uid, "gid": uid, "user": user, "exe": exe,
        "args": args if args is not None else [exe.rsplit("/", 1)[-1]], "cwd": f"/home/{user}",
        "env": {}, "modules": list(modules), "rank": rank,
        "libs": [{"path": p, "signature": sigs.get(p)} for p in libs], "signature": signature,
    }
    end_rec = {
        "event": "end", "id": pid_uuid, "time": rfc3339(end_t), "host": host, "peer": "127.0.0.1",
        "job_id": job, "pid": pid, "uid": uid, "user": user,
        "libs": [{"path": p, "signature": sigs.get(p)} for p in late],
        "start_time": rfc3339(start), "exit_status": exit_status, "duration": seconds,
        "utime": utime, "stime": stime, "maxrss_kb": 2048, "minflt": 10, "majflt": 0,
        "inblock": 0, "oublock": 0, "nvcsw": 1, "nivcsw": 1,
    }
    out = []
    if started:
        out.append(start_rec)
    if ended:
        out.append(end_rec)
    return out


def dataset() -> list[dict[str, Any]]:
    _counter[0] = 0
    s = timedelta(seconds=1)
    mods = ("gcc/12.2.0", "ogrt/0.1.0")
    recs: list[dict[str, Any]] = []
    a = dict(host="node01", job="job-1", user="alice", uid=1001)
    # the batch shell: its parent (slurmstepd, pid 50) is not tracked -> a root
    recs += process(**a, pid=100, ppid=50, exe="/usr/bin/bash", start=T1, seconds=20,
                    args=["bash", "job.sh"], modules=mods, utime=0.01)
    # pipeline: cat | sort
    recs += process(**a, pid=101, ppid=100, exe="/usr/bin/cat", start=T1 + s, seconds=0.5, modules=mods)
    recs += process(**a, pid=102, ppid=100, exe="/usr/bin/sort", start=T1 + s * 1.001, seconds=0.6,
                    modules=mods, utime=0.2, stime=0.05)
    # python importing a C extension: the extension and libssl come late (dlopen)
    recs += process(**a, pid=103, ppid=100, exe="/usr/bin/python3.11", start=T1 + 2 * s, seconds=3,
                    libs=(LIBC, LIBM), late=(SSL_EXT, LIBSSL), modules=mods, utime=1.5, stime=0.25)
    recs += process(**a, pid=104, ppid=103, exe="/usr/bin/dash", start=T1 + 3 * s, seconds=0.1,
                    modules=mods)
    # env exec's the stamped program: same pid and ppid, env has no exit status
    recs += process(**a, pid=105, ppid=100, exe="/usr/bin/env", start=T1 + 6 * s, seconds=0.001,
                    exit_status=None, ended=False, modules=mods)
    recs += process(**a, pid=105, ppid=100, exe="/home/alice/bin/hello", start=T1 + 6.002 * s, seconds=2,
                    signature=STAMP_EXE, modules=mods, utime=1.0)
    # a failing command
    recs += process(**a, pid=106, ppid=100, exe="/usr/bin/false", start=T1 + 9 * s, seconds=0.01,
                    exit_status=1, modules=mods)

    b = dict(host="node02", job="job-2", user="bob", uid=1002)
    for i in range(3):
        recs += process(**b, pid=300 + i, ppid=299, exe="/opt/app/bin/solver", start=T2 + i * 60 * s,
                        seconds=30, libs=(LIBC, LIBM, MKL, MKL_THREAD), utime=10.0, stime=2.0,
                        modules=("intel/2024", "mkl/2024"), rank=i)
    # pid 400 used twice: both exited, so two processes, not an exec chain
    recs += process(**b, pid=400, ppid=299, exe="/usr/bin/hostname", start=T2 + 300 * s, seconds=0.01)
    recs += process(**b, pid=400, ppid=299, exe="/usr/bin/date", start=T2 + 310 * s, seconds=0.01)
    recs += process(**b, pid=401, ppid=299, exe=NON_UTF8_EXE, start=T2 + 320 * s, seconds=1, exit_status=2)

    c = dict(host="node01", job="job-3", user="bob", uid=1002)
    recs += process(**c, pid=500, ppid=1, exe="/opt/app/bin/solver", start=T3, seconds=60,
                    libs=(LIBC, MKL, "/opt/app/lib/libsolverplug.so"),
                    lib_signatures={"/opt/app/lib/libsolverplug.so": STAMP_LIB},
                    utime=50.0, stime=5.0, modules=("intel/2024", "mkl/2024"))

    recs += process(host="login1", job=None, user="alice", uid=1001, pid=900, ppid=899,
                    exe="/usr/bin/vim", start=T4, seconds=120, utime=0.5)
    # the start of this one was lost: only its end arrived
    recs += process(host="node02", job="job-2", user="bob", uid=1002, pid=402, ppid=299,
                    exe="/usr/bin/true", start=T2 + 330 * s, seconds=0.01, started=False)
    recs += job(T2, "job_start", "job-2", state=None)
    recs += job(T2, "job_end", "job-2", state="FAILED", exit_code=1, end=T2 + timedelta(seconds=400))
    recs += job(T1 - timedelta(days=1), "job_end", "job-9", state="COMPLETED", exit_code=0,
                end=T1 - timedelta(days=1) + timedelta(seconds=30), user="carol", uid=1003)
    return recs


def job(start: datetime, event: str, job_id: str, *, state: str | None, exit_code: int | None = None,
        end: datetime | None = None, user: str = "bob", uid: int = 1002) -> list[dict[str, Any]]:
    """A job record as `ogrt job-event` sends it (README "Record format")."""
    def sec(t: datetime | None) -> str | None:
        return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"event": event, "time": rfc3339(end or start), "peer": "10.0.0.1", "job_id": job_id,
             "array_job_id": None, "array_task_id": None, "user": user, "uid": uid, "account": "proj1",
             "partition": "batch", "name": "run.sh", "nodelist": "node02", "num_nodes": 1, "num_tasks": None,
             "num_cpus": 4, "submit_time": None, "start_time": sec(start), "end_time": sec(end),
             "work_dir": "/home/bob", "state": state, "exit_code": exit_code,
             "exit_signal": None if exit_code is None else 0, "cluster": "c1"}]
