"""Harm matrix: real programs run with and without libogrt.so must behave identically.

Every case runs a small C program (tests/preload/programs/) twice - once plain, once with the
library active (LD_PRELOAD, OGRT_ACTIVE=1) - and compares exit status, stdout, stderr and any
file the program writes. The library (TCP, UDP and relay builds) is pointed at
  listening     a real receiver on loopback (and on the relay's Unix socket); the records
                that must arrive are checked
                (exact start records per executable, end records with exit statuses), so a
                library that silently does nothing fails here,
  closed        a port nobody listens on (connect refused),
  unresponsive  a listener with a full accept queue (SYNs unanswered: connect times out),
  resetting     a listener that resets every connection (SIGPIPE/EPIPE territory),
  ogrt server   the real daemon, for a few cases (its jsonl output is checked).
The relay build runs against the receiver's Unix socket ("relay"), and a relay build whose
socket does not exist ("relay-absent") against the receiver (records must arrive by TCP), the
closed port and the unresponsive listener: its fallback to the direct transport.
The only difference between the two environments is LD_PRELOAD itself. Programs are
compiled once per module into a world-readable directory (some cases run as `nobody`).

A selection of the cases (VARIANT_CASES: one per path through the library - fork/exec,
vfork, posix_spawn, fexecve, threads, exits of every kind, closed descriptors, clashing
symbols, signals, odd paths) runs again with its programs built with musl-gcc (the 64-bit
library in a musl process: no on_exit, constructors called without arguments) and with
gcc -m32 (the i386 library), against the listening receiver (tcp, udp, relay), a closed port and
the unresponsive listener - preloaded as the README says, from `make install`'s layout with
LD_PRELOAD=PREFIX/$LIB/libogrt.so, so a process of either class finds its build.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ogrt.proto.ogrt_pb2 import PROCESS_END, PROCESS_START
from tests.fixtures.preload import (TEST_MAKE_VARS, VARIANT_CC, FrameReceiver, RelayLib, closed_port,
                                    install_preload, preload_env, unresponsive_listener, variant_missing)

PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
NOBODY = 65534

# name -> (source, extra gcc arguments); outputs land in a world-readable build directory
BUILDS: dict[str, tuple[str, list[str]]] = {
    "forkexec": ("forkexec.c", []),
    "vfork": ("vfork.c", []),
    "spawn": ("spawn.c", []),
    "threadfork": ("threadfork.c", ["-pthread"]),
    "closeall": ("closeall.c", []),
    "clearenv": ("clearenv.c", []),
    "clash": ("clash.c", ["-fno-builtin", "-rdynamic", "-Wno-builtin-declaration-mismatch"]),
    "ids": ("ids.c", []),
    "static": ("static.c", ["-static"]),
    "stdclosed": ("stdclosed.c", []),
    "exits": ("exits.c", ["-pthread"]),
    "workers": ("workers.c", []),
    "hello": ("hello.c", []),
    "cwdhome": ("cwdhome.c", []),
    "startstate": ("startstate.c", ["-lm"]),
    "bufferorder": ("bufferorder.c", []),
    "dlopen_close": ("dlopen_close.c", ["-ldl"]),
    "itimer": ("itimer.c", []),
    "threadexit": ("threadexit.c", ["-pthread"]),
    "proctitle": ("proctitle.c", []),
    "fexec": ("fexec.c", []),
    "libprea.so": ("prelib.c", ["-shared", "-fPIC", "-DTAG=prea", "-ldl"]),
    "libpreb.so": ("prelib.c", ["-shared", "-fPIC", "-DTAG=preb", "-ldl"]),
    "libplugin.so": ("plugin.c", ["-shared", "-fPIC"]),
    "libalarm.so": ("libalarm.c", ["-shared", "-fPIC"]),
}


# Programs also built as musl (suffix .musl) and i386 (suffix .m32) programs, by variant.
VARIANT_BUILDS: dict[str, tuple[str, ...]] = {
    "musl": ("forkexec", "vfork", "spawn", "threadfork", "closeall", "clash", "stdclosed", "exits",
             "hello", "cwdhome", "itimer", "threadexit", "fexec"),
    "m32": ("forkexec", "vfork", "spawn", "threadfork", "closeall", "clash", "stdclosed", "exits",
            "hello", "cwdhome", "itimer", "threadexit", "fexec", "startstate"),
}
@dataclass
class Programs:
    dir: Path       # world-readable: cases run as `nobody` use it
    lib: Path       # a copy of libogrt.so (TRANSPORT=tcp) in it
    lib_udp: Path   # and of a TRANSPORT=udp build
    lib_nobackoff: Path  # and of a BACKOFF_SECONDS=0 build: every process waits the timeout
    lib_relay: Path      # and of a TRANSPORT=relay build (the receiver's Unix socket)
    lib_relay_absent: Path  # and of one whose RELAY_SOCKET does not exist: it sends by TCP
    suffix: str = ""     # of the program files: "" (glibc, 64-bit), ".musl" or ".m32"

    def __getitem__(self, name: str) -> Path:
        path = self.dir / (name + self.suffix)
        if self.suffix and not path.exists():  # never the glibc build in its place
            raise FileNotFoundError(f"{name} has no {self.suffix} build (VARIANT_BUILDS)")
        return path


@pytest.fixture(scope="module")
def programs(preload_lib: Path, build_preload: Callable[..., Path], relay_lib: RelayLib) -> Iterator[Programs]:
    """Compile every harm program once (two compilers at a time)."""
    root = Path(tempfile.mkdtemp(prefix="ogrt-harm-"))
    root.chmod(0o755)
    out = root / "bin"
    out.mkdir(mode=0o755)

    def build(item: tuple[str, tuple[str, list[str]]]) -> str:
        name, (src, flags) = item
        cmd = ["gcc", "-O1", "-Wall", "-o", str(out / name), str(PROGRAMS_DIR / src), *flags]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return "" if proc.returncode == 0 else f"{' '.join(cmd)}:\n{proc.stderr}"

    def build_variant(item: tuple[str, str]) -> str:
        variant, name = item
        src, flags = BUILDS[name]
        cmd = [*VARIANT_CC[variant], "-O1", "-Wall", "-o", str(out / f"{name}.{variant}"), str(PROGRAMS_DIR / src),
               *flags]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return "" if proc.returncode == 0 else f"{' '.join(cmd)}:\n{proc.stderr}"

    jobs = [(v, n) for v, names in VARIANT_BUILDS.items() if not variant_missing(v) for n in names]
    with ThreadPoolExecutor(2) as pool:
        errors = [e for e in pool.map(build, BUILDS.items()) if e]
        errors += [e for e in pool.map(build_variant, jobs) if e]
    assert not errors, "\n".join(errors)
    # The setuid copy: owned by `daemon` (uid 1), mode 4755, run as nobody -> secure mode.
    if os.geteuid() == 0:
        shutil.copy(out / "ids", out / "ids-setuid")
        os.chown(out / "ids-setuid", 1, 1)
        os.chmod(out / "ids-setuid", 0o4755)
    lib = out / "libogrt.so"
    shutil.copy(preload_lib, lib)
    lib_udp = out / "libogrt-udp.so"
    shutil.copy(build_preload(**TEST_MAKE_VARS, TRANSPORT="udp"), lib_udp)
    lib_nobackoff = out / "libogrt-nobackoff.so"
    shutil.copy(build_preload(**TEST_MAKE_VARS, BACKOFF_SECONDS="0"), lib_nobackoff)
    relay = {"TRANSPORT": "relay", "RELAY_SOCKET": str(relay_lib.socket)}
    absent = {"TRANSPORT": "relay", "RELAY_SOCKET": str(relay_lib.socket.parent / "absent.sock")}
    lib_relay = out / "libogrt-relay.so"
    shutil.copy(relay_lib.lib, lib_relay)
    lib_relay_absent = out / "libogrt-relay-absent.so"
    shutil.copy(build_preload(**TEST_MAKE_VARS, **absent), lib_relay_absent)
    # The same installed (64-bit and i386 builds), for the musl and i386 programs
    for flavour, extra in (("tcp", {}), ("udp", {"TRANSPORT": "udp"}), ("nobackoff", {"BACKOFF_SECONDS": "0"}),
                           ("relay", relay)):
        install_preload(out / f"prefix-{flavour}", build_preload, **TEST_MAKE_VARS, **extra)
    try:
        yield Programs(out, lib, lib_udp, lib_nobackoff, lib_relay, lib_relay_absent)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def receiver(relay_lib: RelayLib) -> Iterator[FrameReceiver]:
    relay_lib.socket.unlink(missing_ok=True)
    with FrameReceiver(unix_path=relay_lib.socket) as recv:
        yield recv


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """One unresponsive loopback port for the module (see `unresponsive_listener`)."""
    with unresponsive_listener() as port:
        yield port


# --- running a program twice ---------------------------------------------------------------

@dataclass
class Outcome:
    status: int
    stdout: bytes
    stderr: bytes
    files: dict[str, bytes]


@dataclass
class Case:
    name: str
    argv: Callable[[Programs, Path], list[str]]   # (programs, run dir) -> argv
    env: dict[str, str | None] = field(default_factory=dict)
    preload: Callable[[Programs, bool], str] | None = None  # LD_PRELOAD value (with lib?)
    user: int | None = None
    close_std: bool = False
    cwd: Callable[[Path], Path] | None = None     # run dir -> cwd (created by the case)
    delete_cwd: bool = False
    files: tuple[str, ...] = ()                   # files in the run dir to compare
    starts: Callable[[Programs], Counter[str]] | None = None  # expected start records by exe
    ends: Callable[[Programs], Counter[tuple[str, int | None]]] | None = None
    unresponsive: bool = True                     # also run against the silent listener
    odd_signals: bool = False                     # start with SIGCHLD ignored, signals blocked
    bare_env: bool = False                        # nothing but LD_PRELOAD and OGRT_* variables


def _run_once(case: Case, progs: Programs, env: dict[str, str], rundir: Path) -> Outcome:
    rundir.mkdir(mode=0o777)
    rundir.chmod(0o777)
    cwd = case.cwd(rundir) if case.cwd else rundir
    close_std, delete_cwd, odd_signals = case.close_std, case.delete_cwd, case.odd_signals

    def child_setup() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if odd_signals:  # inherited through exec: a library must cope and change nothing
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGUSR1,
                                                      signal.SIGTERM, signal.SIGIO})
        if delete_cwd:
            os.chdir(cwd)
            os.rmdir(cwd)
        if close_std:
            for fd in (0, 1, 2):
                os.close(fd)

    kwargs: dict[str, Any] = {}
    if case.user is not None:
        kwargs.update(user=case.user, group=case.user, extra_groups=[])
    proc = subprocess.run(
        case.argv(progs, rundir), env=env, cwd=None if delete_cwd else cwd,
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        preexec_fn=child_setup, **kwargs)
    files = {}
    for name in case.files:
        p = rundir / name
        files[name] = p.read_bytes() if p.exists() else b"<missing>"
    return Outcome(proc.returncode, proc.stdout, proc.stderr, files)


def lib_of(progs: Programs, transport: str) -> Path:
    return {"tcp": progs.lib, "udp": progs.lib_udp, "relay": progs.lib_relay,
            "relay-absent": progs.lib_relay_absent}[transport]


# the transports the records of a build arrive by: a relay build sends by TCP whatever the
# relay's queue has no room for (net.unix.max_dgram_qlen datagrams: 10 by default), as in a
# burst of 200 forked workers
ARRIVES_BY = {"tcp": {"tcp"}, "udp": {"udp"}, "relay": {"relay", "tcp"}, "relay-absent": {"tcp"}}


def compare(case: Case, progs: Programs, port: int, tmp: Path, transport: str = "tcp",
            lib: Path | None = None) -> None:
    lib = lib or lib_of(progs, transport)
    with_env = preload_env(lib, port, **case.env)
    if case.preload is not None:
        with_env["LD_PRELOAD"] = case.preload(progs, True).replace(str(progs.lib), str(lib))
    if case.bare_env:
        with_env = {k: v for k, v in with_env.items() if k == "LD_PRELOAD" or k.startswith("OGRT_")}
    without_env = dict(with_env)
    if case.preload is not None:
        without_env["LD_PRELOAD"] = case.preload(progs, False)
    else:
        del without_env["LD_PRELOAD"]
    tmp.chmod(0o777)
    plain = _run_once(case, progs, without_env, tmp / "r")
    shutil.rmtree(tmp / "r", ignore_errors=True)
    traced = _run_once(case, progs, with_env, tmp / "r")

    def text(b: bytes) -> list[str]:
        return b.decode(errors="backslashreplace").splitlines()

    assert traced.status == plain.status, (traced, plain)
    assert text(traced.stdout) == text(plain.stdout)
    assert traced.stdout == plain.stdout
    assert text(traced.stderr) == text(plain.stderr)
    assert traced.stderr == plain.stderr
    assert traced.files == plain.files


# --- the cases --------------------------------------------------------------------------

def _exe(progs: Programs, name: str) -> str:
    return os.path.realpath(progs[name])


def exe_key(exe: str) -> str:
    """Executable path as recorded -> real path, so /usr/bin/python3 and python3.11 agree.
    A path under /proc (e.g. a program re-executing itself through /proc/self/exe) is kept
    as it is: resolving it here would name the test process, and the record is useless."""
    return exe if exe.startswith("/proc/") else os.path.realpath(exe)


ODD_DIR = "dir with space \udcff"  # the byte 0xff (surrogateescape), not UTF-8


def _odd_copy(progs: Programs, name: str) -> str:
    """A copy of a program under a path with a blank and a byte that is not UTF-8."""
    target = progs.dir / ODD_DIR / f"{progs[name].name}-\udcfe"
    if not target.exists():
        target.parent.mkdir(mode=0o755, exist_ok=True)
        shutil.copy(progs[name], target)
    return str(target)


def _exe_odd(progs: Programs, name: str) -> str:
    return os.path.realpath(progs.dir / ODD_DIR / f"{progs[name].name}-\udcfe")


def _threadfork_execs() -> int:
    return sum(1 for tid in range(6) for i in range(5) if (tid + i) % 3 == 2)


def _mkdir(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


CASES: list[Case] = [
    Case("fork_exec_chain", lambda p, d: [str(p["forkexec"]), "3"],
         starts=lambda p: Counter({_exe(p, "forkexec"): 4})),
    Case("fexecve", lambda p, d: [str(p["fexec"])],
         starts=lambda p: Counter({_exe(p, "fexec"): 2}),
         ends=lambda p: Counter({(_exe(p, "fexec"), 8): 1, (_exe(p, "fexec"), 0): 1})),
    Case("vfork", lambda p, d: [str(p["vfork"])],
         starts=lambda p: Counter({_exe(p, "vfork"): 2})),
    Case("posix_spawn", lambda p, d: [str(p["spawn"])],
         starts=lambda p: Counter({_exe(p, "spawn"): 3})),
    Case("threads_that_fork", lambda p, d: [str(p["threadfork"])],
         starts=lambda p: Counter({_exe(p, "threadfork"): 1 + _threadfork_execs()})),
    Case("close_all_fds_then_exec", lambda p, d: [str(p["closeall"]), str(d / "out.txt")],
         files=("out.txt",), starts=lambda p: Counter({_exe(p, "closeall"): 2})),
    Case("clearenv_then_exec", lambda p, d: [str(p["clearenv"])],
         starts=lambda p: Counter({_exe(p, "clearenv"): 1})),
    Case("clashing_symbol_names", lambda p, d: [str(p["clash"])],
         starts=lambda p: Counter({_exe(p, "clash"): 1}),
         ends=lambda p: Counter({(_exe(p, "clash"), 0): 1})),
    Case("setuid_binary", lambda p, d: [str(p["ids-setuid"])], user=NOBODY,
         starts=lambda p: Counter()),
    Case("static_binary", lambda p, d: [str(p["static"]), "x"],
         starts=lambda p: Counter()),
    Case("std_fds_closed", lambda p, d: [str(p["stdclosed"]), str(d / "out.txt")],
         close_std=True, files=("out.txt",),
         starts=lambda p: Counter({_exe(p, "stdclosed"): 1})),
    *[Case(f"exit_via_{mode}", (lambda m: lambda p, d: [str(p["exits"]), m])(mode),
           starts=lambda p: Counter({_exe(p, "exits"): 1}))
      for mode in ("_exit", "abort", "sigkill", "segv", "pthread_exit", "quick_exit")],
    Case("exit_with_every_fd_in_use", lambda p, d: [str(p["exits"]), "fds_exhausted"],
         starts=lambda p: Counter({_exe(p, "exits"): 1})),
    Case("exit_with_environ_null", lambda p, d: [str(p["exits"]), "environ_null"],
         ends=lambda p: Counter({(_exe(p, "exits"), 2): 1})),
    Case("exit_via_exit", lambda p, d: [str(p["exits"]), "exit"],
         starts=lambda p: Counter({_exe(p, "exits"): 1}),
         ends=lambda p: Counter({(_exe(p, "exits"), 3): 1})),
    Case("exit_via_return", lambda p, d: [str(p["exits"]), "return"],
         ends=lambda p: Counter({(_exe(p, "exits"), 4): 1})),
    Case("exec_without_return", lambda p, d: [str(p["exits"]), "exec"],
         starts=lambda p: Counter({_exe(p, "exits"): 1, os.path.realpath("/bin/sh"): 1})),
    Case("parent_forking_200_workers", lambda p, d: [str(p["workers"]), "200"],
         starts=lambda p: Counter({_exe(p, "workers"): 201}),
         ends=lambda p: Counter([(_exe(p, "workers"), i % 7) for i in range(200)])
         + Counter({(_exe(p, "workers"), 0): 1}),
         unresponsive=False),
    Case("other_preloads_around_ours", lambda p, d: [str(p["hello"]), "a b", ""],
         preload=lambda p, ours: f"{p['libprea.so']}:{p.lib}:{p['libpreb.so']}" if ours
         else f"{p['libprea.so']}:{p['libpreb.so']}",
         starts=lambda p: Counter({_exe(p, "hello"): 1})),
    Case("other_preloads_space_separated", lambda p, d: [str(p["hello"])],
         preload=lambda p, ours: f"{p['libpreb.so']} {p.lib} {p['libprea.so']}" if ours
         else f"{p['libpreb.so']} {p['libprea.so']}",
         starts=lambda p: Counter({_exe(p, "hello"): 1})),
    Case("bare_environment", lambda p, d: [str(p["startstate"])], bare_env=True,
         ends=lambda p: Counter({(_exe(p, "startstate"), 0): 1})),
    Case("odd_bytes_in_path_and_args", lambda p, d: [_odd_copy(p, "hello"), "\udcff\udcfe", "a\tb"],
         starts=lambda p: Counter({_exe_odd(p, "hello"): 1})),
    Case("eintr_storm_from_a_preload_before_ours", lambda p, d: [str(p["hello"]), "x"],
         preload=lambda p, ours: f"{p['libalarm.so']}:{p.lib}" if ours else str(p["libalarm.so"]),
         starts=lambda p: Counter({_exe(p, "hello"): 1}),
         ends=lambda p: Counter({(_exe(p, "hello"), 2): 1})),
    Case("eintr_storm_from_a_preload_after_ours", lambda p, d: [str(p["hello"]), "x"],
         preload=lambda p, ours: f"{p.lib}:{p['libalarm.so']}" if ours else str(p["libalarm.so"]),
         starts=lambda p: Counter({_exe(p, "hello"): 1}),
         ends=lambda p: Counter({(_exe(p, "hello"), 2): 1})),
    Case("missing_home", lambda p, d: [str(p["cwdhome"])], env={"HOME": None},
         starts=lambda p: Counter({_exe(p, "cwdhome"): 1})),
    Case("unreadable_cwd", lambda p, d: [str(p["cwdhome"])], user=NOBODY, env={"HOME": None},
         cwd=lambda d: _mkdir(d / "noread", 0o111),
         starts=lambda p: Counter({_exe(p, "cwdhome"): 1})),
    Case("deleted_cwd", lambda p, d: [str(p["cwdhome"])],
         cwd=lambda d: _mkdir(d / "gone", 0o755), delete_cwd=True,
         starts=lambda p: Counter({_exe(p, "cwdhome"): 1})),
    Case("process_state_at_main", lambda p, d: [str(p["startstate"])],
         ends=lambda p: Counter({(_exe(p, "startstate"), 0): 1})),
    Case("process_state_with_inherited_signal_state", lambda p, d: [str(p["startstate"])],
         odd_signals=True, ends=lambda p: Counter({(_exe(p, "startstate"), 0): 1})),
    Case("fork_exec_with_sigchld_ignored", lambda p, d: [str(p["forkexec"]), "2"],
         odd_signals=True, starts=lambda p: Counter({_exe(p, "forkexec"): 3})),
    Case("process_state_as_nobody", lambda p, d: [str(p["startstate"])], user=NOBODY,
         starts=lambda p: Counter({_exe(p, "startstate"): 1})),
    Case("buffered_stdout_pipe_and_fork", lambda p, d: [str(p["bufferorder"])],
         starts=lambda p: Counter({_exe(p, "bufferorder"): 1})),
    Case("dlopen_dlclose", lambda p, d: [str(p["dlopen_close"]), str(p["libplugin.so"])],
         ends=lambda p: Counter({(_exe(p, "dlopen_close"), 0): 1})),
    Case("signals_interrupting_everything", lambda p, d: [str(p["itimer"])],
         ends=lambda p: Counter({(_exe(p, "itimer"), 3): 1})),
    Case("process_title_rewritten", lambda p, d: [str(p["proctitle"]), "some", "arguments"],
         ends=lambda p: Counter({(_exe(p, "proctitle"), 0): 1})),
    Case("python_interpreter",
         lambda p, d: ["/usr/bin/python3", "-I", "-c",
                       "import json, ssl, sys, os; print(json.dumps(sorted(sys.modules)[:5]),"
                       " os.getcwd() != '', sys.flags.isolated)"],
         starts=lambda p: Counter({os.path.realpath("/usr/bin/python3"): 1}),
         ends=lambda p: Counter({(os.path.realpath("/usr/bin/python3"), 0): 1})),
    Case("shell_pipeline", lambda p, d: ["/bin/sh", "-c", "echo a b c | cat | wc -w; exit 3"],
         starts=lambda p: Counter({os.path.realpath("/bin/sh"): 1,
                                   os.path.realpath("/usr/bin/cat"): 1,
                                   os.path.realpath("/usr/bin/wc"): 1}),
         # dash leaves through _exit(): no end record is expected for it
         ends=lambda p: Counter({(os.path.realpath("/usr/bin/wc"), 0): 1})),
    *[Case(f"threads_running_at_{mode}", (lambda m: lambda p, d: [str(p["threadexit"]), m])(mode),
           starts=lambda p: Counter({_exe(p, "threadexit"): 1}))
      for mode in ("exit", "main", "pthread_exit")],
    Case("exit_from_thread_with_minimal_stack", lambda p, d: [str(p["threadexit"]), "small_stack"],
         ends=lambda p: Counter({(_exe(p, "threadexit"), 6): 1})),
]
ROOT_ONLY = {"setuid_binary", "unreadable_cwd", "process_state_as_nobody"}


def _needs_root(case: Case) -> None:
    if case.name in ROOT_ONLY and os.geteuid() != 0:
        pytest.skip("needs root to install a setuid binary and switch to the nobody user")
    if case.name == "setuid_binary" and os.statvfs(tempfile.gettempdir()).f_flag & os.ST_NOSUID:
        pytest.skip(f"{tempfile.gettempdir()} is mounted nosuid: no setuid program can run there")


# A record reduced to what the checks need: (event, id, exe key or None, exit status or None)
Rec = tuple[str, Any, str | None, int | None]


def check_records(case: Case, progs: Programs, fetch: Callable[[], list[Rec]],
                  timeout: float = 15.0) -> None:
    """Wait until the expected records are there (or the timeout passed), give stragglers a
    moment, then check: exactly the expected start records among our programs (and the
    listed other executables), and the expected (exe, exit status) end records."""
    want_starts = case.starts(progs) if case.starts else Counter()
    want_ends = case.ends(progs) if case.ends else Counter()
    progs_dir = str(progs.dir)

    def evaluate() -> tuple[Counter[str], Counter[tuple[str, int | None]]]:
        recs = fetch()
        exe_of = {rid: exe for kind, rid, exe, _ in recs if kind == "start"}
        starts = Counter(e for e in exe_of.values()
                         if e is not None and (e in want_starts or e.startswith(progs_dir)))
        ends = Counter((exe_of.get(rid, "?"), status) for kind, rid, _, status in recs
                       if kind == "end")
        return starts, ends

    def done(starts: Counter[str], ends: Counter[tuple[str, int | None]]) -> bool:
        return (case.starts is None or starts == want_starts) and \
            all(ends[k] >= n for k, n in want_ends.items())

    # Every record is sent before its process ends, so all of them are on their way once
    # the program returned: wait for the receiver to catch up, but not long if nothing at
    # all comes (a broken library would otherwise cost the timeout in every case).
    t0 = time.monotonic()
    while not done(*evaluate()):
        waited = time.monotonic() - t0
        if waited > timeout or (waited > 3.0 and not fetch()):
            break
        time.sleep(0.05)
    time.sleep(0.1)  # more records than expected is a finding too
    starts, ends = evaluate()
    if case.starts is not None:
        assert starts == want_starts
    for key, n in want_ends.items():
        assert ends[key] == n, (key, ends)


@pytest.mark.parametrize("transport", ["tcp", "udp", "relay", "relay-absent"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_listening_daemon(case: Case, transport: str, programs: Programs,
                          receiver: FrameReceiver, tmp_path: Path) -> None:
    _needs_root(case)
    compare_and_check(case, transport, programs, receiver, tmp_path)


def compare_and_check(case: Case, transport: str, programs: Programs, receiver: FrameReceiver,
                      tmp_path: Path) -> None:
    """compare() against the receiver, then check_records() on what it received."""
    receiver.clear()
    compare(case, programs, receiver.port, tmp_path, transport)

    def fetch() -> list[Rec]:
        out: list[Rec] = []
        for r in receiver.received(0, timeout=0):
            assert r.transport in ARRIVES_BY[transport]
            if r.type == PROCESS_START:
                out.append(("start", bytes(r.msg.uuid), exe_key(os.fsdecode(r.msg.exe)), None))
            elif r.type == PROCESS_END:
                status = r.msg.exit_status if r.msg.HasField("exit_status") else None
                out.append(("end", bytes(r.msg.uuid), None, status))
        return out

    check_records(case, programs, fetch)
    assert receiver.errors == []
    if transport == "relay" and ((case.starts and case.starts(programs)) or (case.ends and case.ends(programs))):
        assert any(r.transport == "relay" for r in receiver.received(0, timeout=0))


@pytest.mark.parametrize("transport", ["tcp", "udp", "relay-absent"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_port_closed(case: Case, transport: str, programs: Programs, tmp_path: Path) -> None:
    _needs_root(case)
    compare(case, programs, closed_port(), tmp_path, transport)


@pytest.fixture(scope="module")
def resetting_port() -> Iterator[int]:
    """A listener that accepts every connection and resets it at once (RST): sends fail
    with EPIPE/ECONNRESET - without MSG_NOSIGNAL a SIGPIPE would kill the program."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    lst.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lst.accept()
            except (TimeoutError, OSError):
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield lst.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        lst.close()


RESET_CASES = [c for c in CASES if c.name in {
    "process_state_at_main", "exit_via_exit", "parent_forking_200_workers", "threads_that_fork",
    "signals_interrupting_everything", "fork_exec_chain", "clashing_symbol_names"}]


@pytest.mark.parametrize("case", RESET_CASES, ids=[c.name for c in RESET_CASES])
def test_resetting_listener(case: Case, programs: Programs, resetting_port: int,
                            tmp_path: Path) -> None:
    compare(case, programs, resetting_port, tmp_path)


UNRESPONSIVE = [c for c in CASES if c.unresponsive]


@pytest.mark.parametrize("transport", ["tcp", "relay-absent"])
@pytest.mark.parametrize("case", UNRESPONSIVE, ids=[c.name for c in UNRESPONSIVE])
def test_unresponsive_listener(case: Case, transport: str, programs: Programs, silent_port: int,
                               tmp_path: Path) -> None:
    _needs_root(case)
    compare(case, programs, silent_port, tmp_path, transport)


# --- end to end through the real daemon --------------------------------------------------

E2E = ["parent_forking_200_workers", "threads_that_fork", "signals_interrupting_everything"]


@pytest.mark.parametrize("name", E2E)
def test_through_ogrt_server(name: str, programs: Programs, ogrt_server: Callable[..., Any],
                             tmp_path: Path) -> None:
    """The same comparison with `ogrt server` receiving; its jsonl output holds exactly the
    expected start records and the end records with their exit statuses."""
    case = next(c for c in CASES if c.name == name)
    srv = ogrt_server()
    compare(case, programs, srv.port, tmp_path)

    def fetch() -> list[Rec]:
        return [("start", r["id"], exe_key(r["exe"]), None) if r["event"] == "start"
                else ("end", r["id"], None, r["exit_status"])
                for r in srv.records(0, timeout=0)]

    check_records(case, programs, fetch)
    assert srv.stop() == 0


TIMEOUT_EVERY_TIME = [c for c in CASES if c.name in {
    "signals_interrupting_everything", "process_state_at_main", "exit_via_exit",
    "eintr_storm_from_a_preload_before_ours", "eintr_storm_from_a_preload_after_ours",
    "clashing_symbol_names", "std_fds_closed", "exit_from_thread_with_minimal_stack"}]


@pytest.mark.parametrize("case", TIMEOUT_EVERY_TIME, ids=[c.name for c in TIMEOUT_EVERY_TIME])
def test_unresponsive_listener_without_backoff(case: Case, programs: Programs, silent_port: int,
                                               tmp_path: Path) -> None:
    """Back-off off: every record waits out CONNECT_TIMEOUT_MS against the silent listener -
    with a 50 us interval timer interrupting the wait (EINTR) in some cases; the wait must
    stay bounded and change nothing."""
    _needs_root(case)
    compare(case, programs, silent_port, tmp_path, lib=programs.lib_nobackoff)


# --- the programs as musl and as i386 builds ---------------------------------------------

VARIANT_CASES = ["fork_exec_chain", "fexecve", "vfork", "posix_spawn", "threads_that_fork",
                 "close_all_fds_then_exec", "clashing_symbol_names", "std_fds_closed", "exit_via_abort",
                 "exit_via_quick_exit", "exit_via_pthread_exit", "exit_with_every_fd_in_use",
                 "exit_with_environ_null", "exit_via_exit", "exec_without_return",
                 "signals_interrupting_everything", "threads_running_at_exit",
                 "exit_from_thread_with_minimal_stack", "deleted_cwd", "odd_bytes_in_path_and_args",
                 "process_state_at_main"]
VARIANTS = [(v, name) for v in ("musl", "m32") for name in VARIANT_CASES
            if v == "m32" or name != "process_state_at_main"]  # startstate reads glibc's mallinfo2


def variant_case(name: str, variant: str) -> Case:
    """The case; for musl its end records carry no exit status (musl has no on_exit: the
    library's destructor sends them)."""
    case = next(c for c in CASES if c.name == name)
    ends = case.ends
    if variant != "musl" or ends is None:
        return case

    def without_status(p: Programs) -> Counter[tuple[str, int | None]]:
        out: Counter[tuple[str, int | None]] = Counter()
        for (exe, status), n in ends(p).items():
            out[(exe, None if exe.startswith(str(p.dir)) else status)] += n
        return out

    return replace(case, ends=without_status)


@pytest.fixture
def variant_programs(programs: Programs, request: pytest.FixtureRequest) -> Programs:
    variant = request.node.callspec.params["variant"]
    missing = variant_missing(variant)
    if missing:
        pytest.skip(missing)
    # LD_PRELOAD=PREFIX/$LIB/libogrt.so: glibc's loaders expand $LIB to the directory of the
    # process's class, musl's opens the literal '$LIB' directory (the 64-bit build)
    return replace(programs, suffix=f".{variant}", lib=programs.dir / "prefix-tcp" / "$LIB" / "libogrt.so",
                   lib_udp=programs.dir / "prefix-udp" / "$LIB" / "libogrt.so",
                   lib_nobackoff=programs.dir / "prefix-nobackoff" / "$LIB" / "libogrt.so",
                   lib_relay=programs.dir / "prefix-relay" / "$LIB" / "libogrt.so")


VARIANT_IDS = [f"{v}-{n}" for v, n in VARIANTS]


@pytest.mark.parametrize("transport", ["tcp", "udp", "relay"])
@pytest.mark.parametrize(("variant", "name"), VARIANTS, ids=VARIANT_IDS)
def test_variant_listening_daemon(variant: str, name: str, transport: str, variant_programs: Programs,
                                  receiver: FrameReceiver, tmp_path: Path) -> None:
    compare_and_check(variant_case(name, variant), transport, variant_programs, receiver, tmp_path)


@pytest.mark.parametrize(("variant", "name"), VARIANTS, ids=VARIANT_IDS)
def test_variant_port_closed(variant: str, name: str, variant_programs: Programs, tmp_path: Path) -> None:
    compare(variant_case(name, variant), variant_programs, closed_port(), tmp_path)


@pytest.mark.parametrize(("variant", "name"), VARIANTS, ids=VARIANT_IDS)
def test_variant_unresponsive_listener(variant: str, name: str, variant_programs: Programs, silent_port: int,
                                       tmp_path: Path) -> None:
    compare(variant_case(name, variant), variant_programs, silent_port, tmp_path)
