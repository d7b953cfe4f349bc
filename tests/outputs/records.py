"""Record dicts as the daemon builds them (README, "Record format"), for the output tests."""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

from ogrt.textenc import escape

#: a path holding newline, quote, backslash and bytes that are not UTF-8 (escaped \xff)
NASTY_BYTES = b"/opt/we\nird \"quoted\" back\\slash \xff\xfe caf\xc3\xa9 'single' \x00nul"
NASTY = escape(NASTY_BYTES)


def start(i: int, uid: str | None = None, nlibs: int = 3, nasty: bool = True) -> dict[str, Any]:
    u = uid or str(uuidlib.UUID(int=i + 1))
    exe = f"{NASTY}/bin/prog{i % 7}" if nasty else f"/usr/bin/prog{i % 7}"
    return {
        "event": "start",
        "id": u,
        "time": f"2026-11-25T12:00:{i % 60:02d}.{i % 1000000:06d}Z",
        "host": "node\\x01" if nasty else "node001",
        "peer": "127.0.0.1",
        "job_id": f"job{i % 5}" if i % 3 else None,
        "pid": 1000 + i,
        "ppid": 1,
        "uid": 1000,
        "gid": 100,
        "user": "alice",
        "exe": exe,
        "args": [exe, "--flag=\"x\"", NASTY, "tab\there"] if nasty else [exe, "-v"],
        "cwd": NASTY if nasty else "/home/alice",
        "env": {"PATH": "/usr/bin:" + NASTY, "OGRT_X": "é"} if nasty else {"PATH": "/usr/bin"},
        "modules": ["gcc/12.2", NASTY] if nasty else ["gcc/12.2"],
        "rank": i % 4 if i % 2 else None,
        "libs": [{"path": f"{NASTY}/lib{j}.so" if nasty else f"/usr/lib/lib{j}.so",
                  "signature": None if j % 2 else "0d6f2a4c-1111-4222-8333-444455556666"}
                 for j in range(nlibs)],
        "signature": None if i % 2 else "7e0b7a9e-aaaa-4bbb-8ccc-dddddddddddd",
        "verified": i % 3 == 0,
    }


def end(i: int, uid: str | None = None, late: int = 1, nasty: bool = True) -> dict[str, Any]:
    u = uid or str(uuidlib.UUID(int=i + 1))
    return {
        "event": "end",
        "id": u,
        "time": f"2026-11-25T12:01:{i % 60:02d}.{i % 1000000:06d}Z",
        "host": "node\\x01" if nasty else "node001",
        "peer": "127.0.0.1",
        "job_id": f"job{i % 5}" if i % 3 else None,
        "pid": 1000 + i,
        "uid": 1000,
        "user": "alice",
        "libs": [{"path": f"{NASTY}/late{j}.so" if nasty else f"/usr/lib/late{j}.so",
                  "signature": None} for j in range(late)],
        "start_time": f"2026-11-25T12:00:{i % 60:02d}.{i % 1000000:06d}Z",
        "exit_status": i % 3 if i % 5 else None,
        "duration": 60.5,
        "utime": 1.25,
        "stime": 0.5,
        "maxrss_kb": 12345,
        "minflt": 10,
        "majflt": 1,
        "inblock": 8,
        "oublock": 16,
        "nvcsw": 3,
        "nivcsw": 4,
        "verified": i % 3 == 0,
    }


def pairs(n: int, **kw: Any) -> list[dict[str, Any]]:
    """n processes: start and end of each, interleaved."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append(start(i, **kw))
        out.append(end(i, nasty=kw.get("nasty", True)))
    return out
