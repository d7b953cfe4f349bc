"""Every field of the start and end records, exact, from real programs under the real library.

Frame-level checks decode with the official protobuf classes (frame_receiver); the
end-to-end check runs the real `ogrt server` with its jsonl output.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ogrt.textenc import unescape
from tests.fixtures.preload import PROCESS_END, PROCESS_START, FrameReceiver, preload_env

ARG_FF_FE = b"\xff\xfe"


def run(argv: list[bytes | str | Path], env: dict[str, str], cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([os.fsencode(a) for a in argv], env=env, cwd=cwd, capture_output=True, timeout=60)


def start_end(receiver: FrameReceiver, n: int = 2) -> tuple[object, object]:
    msgs = receiver.messages(n, timeout=10)
    assert len(msgs) == n, msgs
    assert receiver.errors == []
    starts = [m for t, m in msgs if t == PROCESS_START]
    ends = [m for t, m in msgs if t == PROCESS_END]
    assert len(starts) == 1 and len(ends) == 1, msgs
    return starts[0], ends[0]


@pytest.fixture
def odd_program(c_program: Callable[..., Path], tmp_path: Path) -> bytes:
    """exit_status copied to a path that is not UTF-8."""
    src = c_program("exit_status")
    dst = os.path.join(os.fsencode(tmp_path), b"prog-\xe9\xff")
    shutil.copy(src, dst)
    return dst


def test_start_and_end_fields_exact(preload_lib: Path, frame_receiver: FrameReceiver, odd_program: bytes,
                                    tmp_path: Path) -> None:
    cwd = os.path.join(os.fsencode(tmp_path), b"cwd-\xfe")
    os.mkdir(cwd)
    env = preload_env(preload_lib, frame_receiver.port, OGRT_TEST_JOBID="job.42", OGRT_TEST_ENV_A="alpha=1",
                      OGRT_TEST_ENV_B=None, OGRT_NOT_LISTED="secret", SLURM_JOB_ID="wrong-var",
                      LOADEDMODULES="gcc/12.2:openmpi/4.1", PMI_RANK=None, PMIX_RANK="5",
                      OMPI_COMM_WORLD_RANK=None, SLURM_PROCID="9", USER="tester")
    before = time.time()
    proc = subprocess.run([odd_program, b"3", ARG_FF_FE, b""], env=env, cwd=cwd, capture_output=True, timeout=60)
    after = time.time()
    assert proc.returncode == 3 and proc.stdout == b"exit_status 4 args\n" and proc.stderr == b""
    start, end = start_end(frame_receiver)

    assert len(start.uuid) == 16 and uuidlib.UUID(bytes=start.uuid).version == 4
    assert before * 1e6 - 1e6 <= start.time_us <= after * 1e6 + 1e6
    assert start.exe == odd_program
    assert list(start.args) == [odd_program, b"3", ARG_FF_FE, b""]
    assert start.cwd == cwd
    assert start.ppid == os.getpid()
    assert start.uid == os.getuid() and start.gid == os.getgid()
    assert start.user == b"tester"
    assert start.hostname == os.uname().nodename.encode()
    assert start.job_id == b"job.42"
    assert list(start.env) == [b"OGRT_TEST_ENV_A=alpha=1"]
    assert list(start.modules) == [b"gcc/12.2", b"openmpi/4.1"]
    assert start.HasField("rank") and start.rank == 5
    paths = [lib.path for lib in start.libs]
    assert os.fsencode(preload_lib) in paths
    assert any(p.endswith(b"/libc.so.6") for p in paths)
    assert odd_program not in paths  # the executable is not a shared object
    assert start.signature == b""

    assert end.uuid == start.uuid
    assert end.pid == start.pid and end.uid == start.uid
    assert end.start_time_us == start.time_us <= end.time_us <= after * 1e6 + 1e6
    assert end.hostname == start.hostname and end.job_id == b"job.42"
    assert end.HasField("exit_status") and end.exit_status == 3
    assert end.maxrss_kb > 0 and end.minflt > 0
    assert end.utime_us >= 0 and end.stime_us >= 0
    assert list(end.libs) == []


def test_pid_and_no_rank_no_job(preload_lib: Path, frame_receiver: FrameReceiver,
                                c_program: Callable[..., Path]) -> None:
    env = preload_env(preload_lib, frame_receiver.port, OGRT_TEST_JOBID=None, PMI_RANK=None, PMIX_RANK=None,
                      OMPI_COMM_WORLD_RANK=None, SLURM_PROCID=None, LOADEDMODULES=None)
    p = subprocess.Popen([c_program("exit_status"), "0"], env=env, stdout=subprocess.DEVNULL)
    assert p.wait(60) == 0
    start, end = start_end(frame_receiver)
    assert start.pid == p.pid == end.pid
    assert not start.HasField("rank") and start.job_id == b"" and list(start.modules) == []
    assert end.exit_status == 0 and end.HasField("exit_status")


def test_dlopened_libraries_in_end_record(preload_lib: Path, frame_receiver: FrameReceiver,
                                          c_program: Callable[..., Path],
                                          tiny_libs: Callable[[int], list[Path]]) -> None:
    libs = tiny_libs(2)
    env = preload_env(preload_lib, frame_receiver.port)
    proc = run([c_program("dlopen_libs", "-ldl"), *libs], env)
    assert proc.returncode == 0 and proc.stdout == b"loaded 2\n"
    start, end = start_end(frame_receiver)
    assert not {os.fsencode(p) for p in libs} & {lib.path for lib in start.libs}
    assert [lib.path for lib in end.libs] == [os.fsencode(p) for p in libs]
    assert all(lib.signature == b"" for lib in end.libs)


def test_forked_child_without_exec_sends_nothing(preload_lib: Path, frame_receiver: FrameReceiver,
                                                 c_program: Callable[..., Path]) -> None:
    env = preload_env(preload_lib, frame_receiver.port)
    proc = run([c_program("fork_noexec", "-pthread"), "4"], env)
    assert proc.returncode == 5 and proc.stdout == b"children 4 bad 0\n"
    start, end = start_end(frame_receiver)
    assert end.exit_status == 5
    time.sleep(0.3)
    assert len(frame_receiver.messages(3, timeout=0.1)) == 2  # no record from the 4 children


@pytest.mark.parametrize("value", [None, "0", "no", "false", ""])
def test_inactive_sends_nothing(preload_lib: Path, frame_receiver: FrameReceiver,
                                c_program: Callable[..., Path], value: str | None) -> None:
    env = preload_env(preload_lib, frame_receiver.port, OGRT_ACTIVE=value, OGRT_DEBUG="1")
    proc = run([c_program("exit_status"), "1"], env)
    assert proc.returncode == 1 and proc.stderr == b""
    assert frame_receiver.messages(1, timeout=0.5) == []


@pytest.mark.parametrize("value", ["1", "yes", "true", "TRUE"])
def test_active_values(preload_lib: Path, frame_receiver: FrameReceiver,
                       c_program: Callable[..., Path], value: str) -> None:
    proc = run([c_program("exit_status"), "0"], preload_env(preload_lib, frame_receiver.port, OGRT_ACTIVE=value))
    assert proc.returncode == 0
    assert len(frame_receiver.messages(2, timeout=10)) == 2


def test_silent_by_default_debug_on_request(preload_lib: Path, frame_receiver: FrameReceiver,
                                            c_program: Callable[..., Path]) -> None:
    prog = c_program("exit_status")
    quiet = run([prog], preload_env(preload_lib, frame_receiver.port))
    assert quiet.stderr == b""
    loud = run([prog], preload_env(preload_lib, frame_receiver.port, OGRT_DEBUG="1"))
    assert b"OGRT[" in loud.stderr and b"sent type 12" in loud.stderr
    for silencer in ("OGRT_SILENT", "OGRT_SCHLEICHFAHRT"):
        hushed = run([prog], preload_env(preload_lib, frame_receiver.port, OGRT_DEBUG="1",
                                         OGRT_DEBUG_INFO="1", **{silencer: "1"}))
        assert hushed.stderr == b"" and hushed.stdout == quiet.stdout
    assert len(frame_receiver.messages(8, timeout=10)) == 8  # silence does not stop sending


def test_end_to_end_through_the_daemon(preload_lib: Path, ogrt_server: Callable[..., object],
                                       c_program: Callable[..., Path], tiny_libs: Callable[[int], list[Path]],
                                       odd_program: bytes) -> None:
    srv = ogrt_server()
    lib = tiny_libs(1)[0]
    env = preload_env(preload_lib, srv.port, OGRT_TEST_JOBID="e2e.1", OGRT_TEST_ENV_B="beta",
                      LOADEDMODULES="mod/1", SLURM_PROCID="2", PMI_RANK=None, PMIX_RANK=None,
                      OMPI_COMM_WORLD_RANK=None)
    assert run([odd_program, "3", ARG_FF_FE], env).returncode == 3
    assert run([c_program("dlopen_libs", "-ldl"), lib], env).returncode == 0
    recs = srv.records(4, timeout=15)
    assert len(recs) == 4, ({k: v for k, v in srv.metrics().items() if v}, srv.stderr_text())
    starts = [r for r in recs if r["event"] == "start"]
    ends = {r["id"]: r for r in recs if r["event"] == "end"}
    odd = next(r for r in starts if r["args"][1] == "3")
    assert odd["exe"].endswith("prog-\\xe9\\xff") and unescape(odd["exe"]) == odd_program
    assert odd["cwd"] == os.getcwd() and odd["args"][0] == odd["exe"]
    assert odd["args"][2] == "\\xff\\xfe"
    assert odd["job_id"] == "e2e.1" and odd["env"] == {"OGRT_TEST_ENV_B": "beta"}
    assert odd["modules"] == ["mod/1"] and odd["rank"] == 2 and odd["uid"] == os.getuid()
    assert ends[odd["id"]]["exit_status"] == 3
    assert str(uuidlib.UUID(odd["id"])) == odd["id"] and odd["signature"] is None
    assert odd["host"] == os.uname().nodename and odd["peer"] == "127.0.0.1"
    assert odd["ppid"] == os.getpid() and odd["gid"] == os.getgid()
    assert str(preload_lib) in [x["path"] for x in odd["libs"]]
    end = ends[odd["id"]]
    assert end["pid"] == odd["pid"] and end["start_time"] == odd["time"] and end["libs"] == []
    assert end["duration"] >= 0 and end["maxrss_kb"] > 0 and end["time"] >= odd["time"]
    dl = next(r for r in starts if r is not odd)
    assert [x["path"] for x in ends[dl["id"]]["libs"]] == [str(lib)]
    assert ends[dl["id"]]["exit_status"] == 0
