"""OGRT signatures end to end: programs and shared libraries stamped at link time (through
ogrt-cc and with ogrt-stamp-object directly) run under libogrt.so; the start record carries
the executable's UUID as `readelf -n` shows it, and each stamped library's entry in `libs`
(start record for linked libraries, end record for dlopen'ed ones) carries its own.
"""
from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.preload import PROCESS_END, PROCESS_START, FrameReceiver, preload_env
from tests.preload.programs.elfnotes import signatures_in

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc


def readelf_signature(path: Path) -> str:
    """The OGRT UUID of a linked file as `readelf -n` prints it ('' when there is none)."""
    out = _run(["readelf", "-nW", str(path)]).stdout
    found = []
    for m in re.finditer(r"OGRT\s+0x00000026\s+[^\n]*0x4f475254\)?\s*description data: ((?:[0-9a-f]{2} ?)+)", out):
        raw = bytes.fromhex(m.group(1).replace(" ", ""))
        assert len(raw) == 38 and raw[0] == 1 and raw[-1] == 0, raw
        found.append(raw[1:37].decode())
    assert len(found) <= 1, found
    return found[0] if found else ""


@dataclass
class Built:
    wrapped_exe: Path       # linked through ogrt-cc, against wrapped_lib
    wrapped_lib: Path
    direct_exe: Path        # linked with a stamp object, against direct_lib
    direct_lib: Path
    plain_exe: Path         # no stamp, against plain_lib
    plain_lib: Path
    plugin: Path            # stamped, dlopen'ed by the programs
    given: dict[Path, str]  # UUIDs passed to ogrt-stamp-object


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("ogrt-signatures")
    prefix = root / "prefix"
    _run(["make", "-s", "-C", str(REPO / "preload" / "tools"), f"BUILDDIR={root / 'toolbuild'}",
          "install", f"PREFIX={prefix}"])
    cc, stamp = str(prefix / "bin" / "ogrt-cc"), str(prefix / "bin" / "ogrt-stamp-object")
    main, lib = str(PROGRAMS / "sigmain.c"), str(PROGRAMS / "siglib.c")
    given: dict[Path, str] = {}

    def link_dir(name: str) -> Path:
        d = root / name
        d.mkdir()
        return d

    w, d, p = link_dir("wrapped"), link_dir("direct"), link_dir("plain")
    # through the wrapper
    _run([cc, "gcc", "-shared", "-fPIC", "-o", str(w / "libsiglib.so"), lib])
    _run([cc, "gcc", "-o", str(w / "prog"), main, f"-L{w}", "-lsiglib", f"-Wl,-rpath,{w}", "-ldl"])
    # with stamp objects made by hand
    for target in ("libsiglib.so", "prog", "plugin.so"):
        u = str(uuid.uuid4())
        _run([stamp, str(d / f"{target}.stamp.o"), u])
        given[d / target] = u
    _run(["gcc", "-shared", "-fPIC", "-o", str(d / "libsiglib.so"), lib, str(d / "libsiglib.so.stamp.o")])
    _run(["gcc", "-o", str(d / "prog"), str(d / "prog.stamp.o"), main, f"-L{d}", "-lsiglib",
          f"-Wl,-rpath,{d}", "-ldl"])
    _run(["gcc", "-shared", "-fPIC", "-o", str(d / "plugin.so"), lib, str(d / "plugin.so.stamp.o")])
    # unstamped
    _run(["gcc", "-shared", "-fPIC", "-o", str(p / "libsiglib.so"), lib])
    _run(["gcc", "-o", str(p / "prog"), main, f"-L{p}", "-lsiglib", f"-Wl,-rpath,{p}", "-ldl"])
    return Built(w / "prog", w / "libsiglib.so", d / "prog", d / "libsiglib.so",
                 p / "prog", p / "libsiglib.so", d / "plugin.so", given)


def run_traced(lib: Path, receiver: FrameReceiver, argv: list[str]) -> tuple[Any, Any]:
    receiver.clear()
    proc = subprocess.run(argv, env=preload_env(lib, receiver.port), capture_output=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"siglib says 42\n" and proc.stderr == b""
    recs = receiver.messages(2, timeout=10.0)
    starts = [m for t, m in recs if t == PROCESS_START]
    ends = [m for t, m in recs if t == PROCESS_END]
    assert len(starts) == 1 and len(ends) == 1, recs
    return starts[0], ends[0]


def lib_signatures(msg: Any) -> dict[str, str]:
    return {os.path.realpath(os.fsdecode(so.path)): so.signature.decode() for so in msg.libs}


def test_stamps_are_readable_and_distinct(built: Built) -> None:
    for path, u in built.given.items():
        assert readelf_signature(path) == u == signatures_in(path)[0]
    sigs = [readelf_signature(p) for p in (built.wrapped_exe, built.wrapped_lib, built.direct_exe,
                                           built.direct_lib, built.plugin)]
    assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", s) for s in sigs), sigs
    assert len(set(sigs)) == len(sigs), "two links must give two different UUIDs"
    assert readelf_signature(built.plain_exe) == readelf_signature(built.plain_lib) == ""


@pytest.mark.parametrize("kind", ["wrapped", "direct"])
def test_signatures_arrive(kind: str, built: Built, preload_lib: Path,
                           frame_receiver: FrameReceiver) -> None:
    exe = getattr(built, f"{kind}_exe")
    lib = getattr(built, f"{kind}_lib")
    start, end = run_traced(preload_lib, frame_receiver, [str(exe), str(built.plugin)])
    assert start.signature.decode() == readelf_signature(exe) != ""
    libs = lib_signatures(start)
    assert libs.get(os.path.realpath(lib)) == readelf_signature(lib) != ""
    # every other object (libc, the loader ...) is unstamped; the executable is not in `libs`
    others = {p: s for p, s in libs.items() if p != os.path.realpath(lib)}
    assert others and all(s == "" for s in others.values()), others
    assert os.path.realpath(exe) not in libs
    # the dlopen'ed plugin shows up in the end record with its own stamp
    assert lib_signatures(end).get(os.path.realpath(built.plugin)) == built.given[built.plugin]


def test_unstamped_program_has_empty_signature(built: Built, preload_lib: Path,
                                               frame_receiver: FrameReceiver) -> None:
    start, end = run_traced(preload_lib, frame_receiver, [str(built.plain_exe)])
    assert start.signature == b""
    libs = lib_signatures(start)
    assert libs.get(os.path.realpath(built.plain_lib)) == ""
    assert all(s == "" for s in libs.values())
    assert list(end.libs) == []


def test_relinking_changes_the_signature(built: Built, tmp_path: Path, preload_lib: Path,
                                         frame_receiver: FrameReceiver) -> None:
    """The same sources linked twice through ogrt-cc: two different UUIDs arrive."""
    cc = built.wrapped_exe.parents[1] / "prefix" / "bin" / "ogrt-cc"
    again = tmp_path / "prog-again"
    _run([str(cc), "gcc", "-o", str(again), str(PROGRAMS / "sigmain.c"),
          f"-L{built.wrapped_lib.parent}", "-lsiglib", f"-Wl,-rpath,{built.wrapped_lib.parent}",
          "-ldl"])
    first, _ = run_traced(preload_lib, frame_receiver, [str(built.wrapped_exe)])
    second, _ = run_traced(preload_lib, frame_receiver, [str(again)])
    assert first.signature and second.signature
    assert first.signature != second.signature
    assert second.signature.decode() == readelf_signature(again)


def test_signatures_through_ogrt_server(built: Built, preload_lib: Path, ogrt_server: Any) -> None:
    """The daemon's records carry the same UUIDs; unstamped objects get null (README)."""
    srv = ogrt_server()
    env = preload_env(preload_lib, srv.port)
    for exe in (built.direct_exe, built.plain_exe):
        proc = subprocess.run([str(exe), str(built.plugin)], env=env, capture_output=True, timeout=60)
        assert proc.returncode == 0 and proc.stderr == b""
    recs = srv.records(4, timeout=15)
    starts = {os.path.realpath(r["exe"]): r for r in recs if r["event"] == "start"}
    ends = {r["id"]: r for r in recs if r["event"] == "end"}
    stamped, plain = starts[os.path.realpath(built.direct_exe)], starts[os.path.realpath(built.plain_exe)]
    assert stamped["signature"] == built.given[built.direct_exe]
    assert plain["signature"] is None

    def libs(rec: dict[str, Any]) -> dict[str, Any]:
        return {os.path.realpath(entry["path"]): entry["signature"] for entry in rec["libs"]}

    assert libs(stamped)[os.path.realpath(built.direct_lib)] == built.given[built.direct_lib]
    assert libs(plain)[os.path.realpath(built.plain_lib)] is None
    for start in (stamped, plain):
        assert libs(ends[start["id"]])[os.path.realpath(built.plugin)] == built.given[built.plugin]
    assert srv.stop() == 0
