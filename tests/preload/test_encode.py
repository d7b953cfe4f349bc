"""The hand-written C protobuf encoder (preload/encode.c) against the official decoder.

A driver program built from the library's own encode.c encodes randomized records; the
official `protobuf` package (code generated from protocol/ogrt.proto) must decode them to
the same fields, and the bytes must equal the official (deterministic) serialization.
"""
from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ogrt.proto import ogrt_pb2

from tests.fixtures.preload import PRELOAD_DIR

I32 = st.integers(-(2**31), 2**31 - 1)
U32 = st.integers(0, 2**32 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"\1"))
NONEMPTY = st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\0", b"\1"))
SIG = st.one_of(st.none(), st.binary(min_size=36, max_size=36).map(lambda b: b.replace(b"\0", b"a")))
LIB = st.tuples(TEXT, SIG)
MODULE = st.binary(min_size=1, max_size=15).map(lambda b: b.replace(b"\0", b"x").replace(b":", b"y"))
ENVNAME = st.from_regex(rb"\A[A-Z_][A-Z0-9_]{0,10}\Z")


@pytest.fixture(scope="module")
def driver(c_program: Callable[..., Path]) -> Path:
    return c_program("encode_driver", f"-I{PRELOAD_DIR}", sources=(str(PRELOAD_DIR / "encode.c"),))


def item(key: str, data: bytes) -> bytes:
    return key.encode() + struct.pack("<I", len(data)) + data


def num(key: str, v: int) -> bytes:
    return item(key, struct.pack("<q", v))


def run(driver: Path, data: bytes) -> bytes:
    proc = subprocess.run([str(driver)], input=data, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def libs_items(libs: list[tuple[bytes, bytes | None]]) -> bytes:
    out = b""
    for path, sig in libs:
        out += item("l", path) + (item("g", sig) if sig is not None else b"")
    return out


def libs_msgs(libs: list[tuple[bytes, bytes | None]]) -> list[Any]:
    return [ogrt_pb2.SharedObject(path=p, signature=s or b"") for p, s in libs]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uuid=st.binary(min_size=16, max_size=16), time_us=I64, exe=TEXT, pid=I32, ppid=I32, uid=U32,
       gid=U32, user=TEXT, host=TEXT, job=TEXT, args=st.lists(TEXT, max_size=6), cwd=TEXT,
       env=st.lists(st.tuples(ENVNAME, TEXT), max_size=4), modules=st.lists(MODULE, max_size=4),
       rank=st.one_of(st.none(), I32), libs=st.lists(LIB, max_size=5), sig=SIG,
       step=st.one_of(st.none(), TEXT))
def test_process_start_matches_official_decoder(driver: Path, uuid: bytes, time_us: int, exe: bytes,
                                                pid: int, ppid: int, uid: int, gid: int, user: bytes,
                                                host: bytes, job: bytes, args: list[bytes], cwd: bytes,
                                                env: list[tuple[bytes, bytes]], modules: list[bytes],
                                                rank: int | None, libs: list[tuple[bytes, bytes | None]],
                                                sig: bytes | None, step: bytes | None) -> None:
    data = b"\x01" + item("u", uuid) + num("t", time_us) + item("e", exe) + num("p", pid) + num("P", ppid)
    data += num("U", uid) + num("G", gid) + item("s", user) + item("h", host) + item("j", job)
    data += b"".join(item("a", a) for a in args) + item("c", cwd)
    data += b"".join(item("n", n) + item("v", v) for n, v in env)
    data += item("m", b":".join(modules))
    if rank is not None:
        data += num("r", rank)
    data += libs_items(libs) + (item("S", sig) if sig is not None else b"")
    if step is not None:
        data += item("i", step)
    out = run(driver, data)

    want = ogrt_pb2.ProcessStart(uuid=uuid, time_us=time_us, exe=exe, pid=pid, ppid=ppid, uid=uid, gid=gid,
                                 user=user, hostname=host, job_id=job, args=args, cwd=cwd,
                                 env=[n + b"=" + v for n, v in env], modules=modules,
                                 libs=libs_msgs(libs), signature=sig or b"", step_id=step or b"")
    if rank is not None:
        want.rank = rank
    got = ogrt_pb2.ProcessStart.FromString(out)
    assert got == want
    assert got.HasField("rank") == (rank is not None)
    assert out == want.SerializeToString(deterministic=True)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uuid=st.binary(min_size=16, max_size=16), time_us=I64, start_us=I64, pid=I32, uid=U32, host=TEXT,
       job=TEXT, status=st.one_of(st.none(), I32), usage=st.lists(I64, min_size=9, max_size=9),
       libs=st.lists(LIB, max_size=5))
def test_process_end_matches_official_decoder(driver: Path, uuid: bytes, time_us: int, start_us: int,
                                              pid: int, uid: int, host: bytes, job: bytes,
                                              status: int | None, usage: list[int],
                                              libs: list[tuple[bytes, bytes | None]]) -> None:
    data = b"\x02" + item("u", uuid) + num("t", time_us) + num("T", start_us) + num("p", pid)
    data += num("U", uid) + item("h", host) + item("j", job)
    if status is not None:
        data += num("X", status)
    data += b"".join(num(str(i), v) for i, v in enumerate(usage)) + libs_items(libs)
    out = run(driver, data)

    names = ["utime_us", "stime_us", "maxrss_kb", "minflt", "majflt", "inblock", "oublock", "nvcsw", "nivcsw"]
    want = ogrt_pb2.ProcessEnd(uuid=uuid, time_us=time_us, start_time_us=start_us, pid=pid, uid=uid,
                               hostname=host, job_id=job, libs=libs_msgs(libs), **dict(zip(names, usage)))
    if status is not None:
        want.exit_status = status
    got = ogrt_pb2.ProcessEnd.FromString(out)
    assert got == want
    assert got.HasField("exit_status") == (status is not None)
    assert out == want.SerializeToString(deterministic=True)
