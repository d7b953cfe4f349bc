"""Programs built with musl and as 32-bit (i386) programs, and the library's C-library needs.

- a musl program loads the 64-bit library (it imports nothing musl lacks; on_exit is weak)
  and is recorded: the start record with its arguments (found below environ: musl calls
  constructors without them), the end record from the destructor (no exit status);
- a 32-bit program loads the i386 build and is recorded with its exit status;
- a process tree mixing them under one LD_PRELOAD=PREFIX/$LIB/libogrt.so from `make
  install`: each process recorded, outputs identical to a run without the library;
- both builds need at most GLIBC_2.17 symbol versions (CentOS 7 userlands), read from
  their version-requirement sections with readelf -V; both stay invisible (no dynamic
  symbol defined, only libc, the loader and the vDSO as dependencies);
- the build without an i386 toolchain: the 64-bit library, and one line saying so.
Records are decoded with the official protobuf classes (frame_receiver).
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.preload import (PROCESS_END, PROCESS_START, TEST_MAKE_VARS, VARIANT_CC, FrameReceiver,
                                    install_preload, lib32_of, make_preload, preload_env, variant_missing)

GLIBC_MAX = (2, 17)


def need(variant: str) -> tuple[str, ...]:
    missing = variant_missing(variant)
    if missing:
        pytest.skip(missing)
    return tuple(VARIANT_CC[variant])


def run_both(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Runs argv with env and without its LD_PRELOAD; asserts identical status and output."""
    plain_env = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    plain = subprocess.run(argv, env=plain_env, capture_output=True, timeout=60)
    traced = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    assert (traced.returncode, traced.stdout, traced.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    return traced


def records(receiver: FrameReceiver, n: int) -> tuple[dict[bytes, object], dict[bytes, object]]:
    """n records: (start records by uuid, end records by uuid)."""
    msgs = receiver.messages(n, timeout=10)
    assert len(msgs) == n and receiver.errors == [], msgs
    starts = {m.uuid: m for t, m in msgs if t == PROCESS_START}
    ends = {m.uuid: m for t, m in msgs if t == PROCESS_END}
    return starts, ends


def test_musl_program_recorded(preload_lib: Path, frame_receiver: FrameReceiver, c_program: Callable[..., Path],
                               tmp_path: Path) -> None:
    prog = c_program("exit_status", cc=need("musl"))
    env = preload_env(preload_lib, frame_receiver.port, OGRT_TEST_JOBID="musl.1")
    proc = run_both([str(prog), "3", "two words", ""], env)
    assert proc.returncode == 3 and proc.stdout == b"exit_status 4 args\n" and proc.stderr == b""
    starts, ends = records(frame_receiver, 2)
    (start,) = starts.values()
    assert start.exe == os.fsencode(prog)
    assert list(start.args) == [os.fsencode(prog), b"3", b"two words", b""]
    assert start.cwd == os.fsencode(os.getcwd()) and start.ppid == os.getpid() and start.job_id == b"musl.1"
    paths = [lib.path for lib in start.libs]
    assert os.fsencode(preload_lib) in paths and any(b"ld-musl" in p for p in paths), paths
    end = ends[start.uuid]
    assert end.pid == start.pid and end.start_time_us == start.time_us <= end.time_us
    assert not end.HasField("exit_status")  # musl has no on_exit: sent by the destructor
    assert end.maxrss_kb > 0


def test_i386_program_recorded(preload_lib: Path, frame_receiver: FrameReceiver,
                               c_program: Callable[..., Path]) -> None:
    prog = c_program("exit_status", cc=need("m32"))
    lib32 = lib32_of(preload_lib)
    env = preload_env(lib32, frame_receiver.port, OGRT_TEST_JOBID="i386.1", OGRT_TEST_ENV_A="a")
    proc = run_both([str(prog), "5", "x"], env)
    assert proc.returncode == 5 and proc.stdout == b"exit_status 3 args\n" and proc.stderr == b""
    starts, ends = records(frame_receiver, 2)
    (start,) = starts.values()
    assert start.exe == os.fsencode(prog) and list(start.args) == [os.fsencode(prog), b"5", b"x"]
    assert start.uid == os.getuid() and start.gid == os.getgid() and start.ppid == os.getpid()
    assert start.job_id == b"i386.1" and list(start.env) == [b"OGRT_TEST_ENV_A=a"]
    assert start.hostname == os.uname().nodename.encode()
    assert os.fsencode(lib32) in [lib.path for lib in start.libs]
    end = ends[start.uuid]
    assert end.HasField("exit_status") and end.exit_status == 5 and end.pid == start.pid
    assert end.maxrss_kb > 0 and end.minflt > 0


def test_process_tree_glibc_shell_musl_and_i386(build_preload: Callable[..., Path], frame_receiver: FrameReceiver,
                                                c_program: Callable[..., Path], tmp_path: Path) -> None:
    """/bin/sh (64-bit glibc) runs a musl program that runs a 32-bit one, all under the one
    LD_PRELOAD value the README gives: each process recorded, outputs unchanged."""
    runner = c_program("run_child", cc=need("musl"))
    leaf = c_program("exit_status", cc=need("m32"))
    ld_preload = install_preload(tmp_path / "prefix", build_preload, **TEST_MAKE_VARS)
    assert "$LIB" in str(ld_preload)
    env = preload_env(ld_preload, frame_receiver.port)
    script = f"'{runner}' '{leaf}' 6 leaf-arg; echo shell saw $?; exit 2"
    proc = run_both(["/bin/sh", "-c", script], env)
    assert proc.returncode == 2 and proc.stderr == b""
    assert proc.stdout == (f"run_child starts {leaf}\nexit_status 3 args\nrun_child: {leaf} exited 6\n"
                           "shell saw 7\n").encode()
    starts, ends = records(frame_receiver, 5)  # dash leaves through _exit(): no end record
    by_exe = {s.exe: s for s in starts.values()}
    sh, musl, i386 = (by_exe[os.fsencode(os.path.realpath(p))] for p in ("/bin/sh", runner, leaf))
    assert musl.ppid == sh.pid and i386.ppid == musl.pid
    assert list(i386.args) == [os.fsencode(leaf), b"6", b"leaf-arg"]
    assert list(musl.args) == [os.fsencode(runner), os.fsencode(leaf), b"6", b"leaf-arg"]
    assert sh.uuid not in ends and ends[i386.uuid].exit_status == 6
    assert not ends[musl.uuid].HasField("exit_status")
    libs = {name: [lib.path for lib in s.libs] for name, s in (("sh", sh), ("musl", musl), ("i386", i386))}
    assert os.fsencode(ld_preload.parent.parent / "lib" / "i386-linux-gnu" / "libogrt.so") in [
        os.fsencode(os.path.realpath(p)) for p in libs["i386"]], libs


def glibc_versions_needed(lib: Path) -> list[tuple[int, ...]]:
    out = subprocess.run(["readelf", "-V", "--wide", str(lib)], capture_output=True, text=True, check=True).stdout
    needs = out.split("Version needs section", 1)
    assert len(needs) == 2, out  # the library does need versioned libc symbols
    return [tuple(int(x) for x in v.split(".")) for v in re.findall(r"Name: GLIBC_([0-9.]+)", needs[1])]


def both_builds(build_preload: Callable[..., Path], **make_vars: str) -> list[Path]:
    lib = build_preload(**make_vars)
    return [lib] + ([lib32_of(lib)] if not variant_missing("m32") else [])


# Settings that pull in every libc function the library can call: the resolver (a host
# name), OGRT_SERVER parsing, the filter regexes.
ALL_PATHS = {**TEST_MAKE_VARS, "SERVER_HOST": "collector.example", "FILTER_REGEXPS": "^/nonexistent/"}


def test_symbol_versions_at_most_glibc_2_17(build_preload: Callable[..., Path]) -> None:
    for lib in both_builds(build_preload, **TEST_MAKE_VARS) + both_builds(build_preload, **ALL_PATHS):
        versions = glibc_versions_needed(lib)
        assert versions and max(versions) <= GLIBC_MAX, (lib, versions)


def test_every_import_exists_in_musl(build_preload: Callable[..., Path], c_program: Callable[..., Path]) -> None:
    """The 64-bit library's strong imports are all in musl's libc (weak ones may be absent);
    musl's libc is its loader, the program interpreter of a musl program."""
    headers = subprocess.run(["readelf", "-l", str(c_program("exit_status", cc=need("musl")))],
                             capture_output=True, text=True, check=True).stdout
    musl_libc = re.search(r"program interpreter: (\S+)\]", headers).group(1)  # type: ignore[union-attr]
    exported = set(subprocess.run(["nm", "-D", "--defined-only", musl_libc], capture_output=True, text=True,
                                  check=True).stdout.split())
    lib = build_preload(**ALL_PATHS)
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True,
                               check=True).stdout.splitlines()
    strong = [line.split()[1].split("@")[0] for line in undefined if line.split()[0] == "U"]
    assert "regcomp" in strong and "getaddrinfo" in strong  # the settings above do pull them in
    assert [s for s in strong if s not in exported] == []
    weak = [line.split()[1].split("@")[0] for line in undefined if line.split()[0] == "w"]
    assert "on_exit" in weak


def test_i386_build_invisible(preload_lib: Path) -> None:
    need("m32")
    lib32 = lib32_of(preload_lib)
    out = subprocess.run(["file", "-L", str(lib32)], capture_output=True, text=True, check=True).stdout
    assert "ELF 32-bit" in out and "80386" in out
    assert subprocess.run(["nm", "-D", "--defined-only", str(lib32)], capture_output=True, text=True,
                          check=True).stdout.strip() == ""
    ldd = subprocess.run(["ldd", str(lib32)], capture_output=True, text=True, check=True).stdout
    names = sorted(line.split()[0] for line in ldd.splitlines() if line.strip())
    assert len(names) == 3 and any(n.startswith("libc.so") for n in names), ldd
    assert any(n.startswith("linux-gate") or n.startswith("linux-vdso") for n in names), ldd


def test_no_i386_toolchain_builds_64_bit_and_says_so(tmp_path: Path) -> None:
    """A compiler that cannot link -m32: the build succeeds, with one line saying why the
    32-bit build was skipped; install lays out the 64-bit library alone."""
    cc = tmp_path / "cc-without-m32"
    cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -m32 ] && exit 1; done\nexec gcc "$@"\n')
    cc.chmod(0o755)
    build = tmp_path / "build"
    build.mkdir()
    proc = make_preload(build, f"CC={cc}")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "skipped" in line]
    assert said == [f"libogrt: 32-bit (i386) build skipped: {cc} -m32 cannot link a program "
                    "(Debian: apt-get install gcc-multilib)"]
    assert (build / "libogrt.so").is_file() and not lib32_of(build / "libogrt.so").exists()
    prefix = tmp_path / "prefix"
    proc = make_preload(build, "install", f"PREFIX={prefix}", f"CC={cc}")
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "lib" / "libogrt.so").resolve() == (prefix / "lib" / "x86_64-linux-gnu" / "libogrt.so")
    assert not (prefix / "lib" / "i386-linux-gnu").exists() and not (prefix / "lib32").exists()


def test_missing_prefix_gives_the_loaders_message_only(c_program: Callable[..., Path], tmp_path: Path) -> None:
    """A container without the install prefix: glibc's loader prints its own one line and
    runs the program untracked; musl's loader skips the missing preload silently (README,
    "Containers")."""
    missing = tmp_path / "not-bound" / "$LIB" / "libogrt.so"
    env = preload_env(missing, 9)
    plain_env = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    progs = [c_program("exit_status")] + [c_program("exit_status", cc=tuple(VARIANT_CC[v])) for v in ("musl", "m32")
                                          if not variant_missing(v)]
    for prog in progs:
        plain = subprocess.run([prog, "4"], env=plain_env, capture_output=True, timeout=60)
        traced = subprocess.run([prog, "4"], env=env, capture_output=True, timeout=60)
        assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (4, b"exit_status 2 args\n")
        musl = b"ld-musl" in subprocess.run(["readelf", "-l", prog], capture_output=True, check=True).stdout
        assert traced.stderr == (b"" if musl else
                                 f"ERROR: ld.so: object '{missing}' from LD_PRELOAD cannot be preloaded "
                                 "(cannot open shared object file): ignored.\n".encode()), prog
