"""The signature stamping tools of preload/tools: ogrt-stamp-object and the ogrt-cc wrapper.

Real gcc, real ld, real readelf; the note is checked byte for byte in the PT_NOTE segments of
the linked files (what libogrt.so reads at run time through dl_iterate_phdr).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.preload.programs.elfnotes import (
    OGRT_NOTE_TYPE, section_notes, signatures_in)

REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO / "preload" / "tools"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAIN_C = "#include <stdio.h>\nint main(void) { puts(\"stamped hello\"); return 0; }\n"


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make -C preload/tools install PREFIX=<tmp>`; returns the prefix."""
    root = tmp_path_factory.mktemp("ogrt-tools")
    prefix = root / "prefix with space"
    proc = subprocess.run(
        ["make", "-s", "-C", str(TOOLS_DIR), f"BUILDDIR={root / 'build'}", "install",
         f"PREFIX={prefix}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return prefix


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def _readelf_signatures(path: Path) -> list[str]:
    """UUIDs of OGRT notes as `readelf -n` prints them (hex description data)."""
    out = _run(["readelf", "-nW", str(path)]).stdout
    sigs = []
    for block in out.split("OGRT")[1:]:
        m = re.search(r"description data: ((?:[0-9a-f]{2} ?)+)", block)
        if m and "0x4f475254" in block.split("description data")[0]:
            raw = bytes.fromhex(m.group(1).replace(" ", ""))
            assert raw[0] == 1 and raw[-1] == 0 and len(raw) == 38
            sigs.append(raw[1:37].decode())
    return sigs


def test_stamp_object_layout(tools: Path, tmp_path: Path) -> None:
    given = str(uuid.uuid4())
    obj = tmp_path / "stamp.o"
    proc = _run([str(tools / "bin" / "ogrt-stamp-object"), str(obj), given])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == given + "\n" and proc.stderr == ""
    notes = [n for n in section_notes(obj) if n.name == b"OGRT"]
    assert len(notes) == 1
    note = notes[0]
    assert note.namesz == 5 and note.type == OGRT_NOTE_TYPE and note.align == 4
    assert note.desc == b"\x01" + given.encode() + b"\0"
    sections = _run(["readelf", "-SW", str(obj)]).stdout
    line = next(l for l in sections.splitlines() if ".note.ogrt" in l)
    assert " NOTE " in line and re.search(r"\bA\b", line), line
    assert ".note.GNU-stack" in sections
    assert _readelf_signatures(obj) == [given]


def test_stamp_object_fresh_uuid_and_normalized_input(tools: Path, tmp_path: Path) -> None:
    tool = str(tools / "bin" / "ogrt-stamp-object")
    a = _run([tool, str(tmp_path / "a.o")]).stdout.strip()
    b = _run([tool, str(tmp_path / "b.o")]).stdout.strip()
    assert UUID_RE.match(a) and UUID_RE.match(b) and a != b
    assert _readelf_signatures(tmp_path / "a.o") == [a]
    upper = str(uuid.uuid4()).upper()
    assert _run([tool, str(tmp_path / "u.o"), upper]).stdout.strip() == upper.lower()
    assert _readelf_signatures(tmp_path / "u.o") == [upper.lower()]


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "1234", str(uuid.uuid4()) + "0",
                                 str(uuid.uuid4()).replace("-", ""), "g" * 8 + "-aaaa-aaaa-aaaa-" + "a" * 12])
def test_stamp_object_rejects_bad_uuid(tools: Path, tmp_path: Path, bad: str) -> None:
    out = tmp_path / "bad.o"
    proc = _run([str(tools / "bin" / "ogrt-stamp-object"), str(out), bad])
    assert proc.returncode == 2
    assert "UUID" in proc.stderr and proc.stdout == ""
    assert not out.exists()


def test_stamp_object_usage(tools: Path) -> None:
    tool = str(tools / "bin" / "ogrt-stamp-object")
    for argv in ([tool], [tool, "a", "b", "c"], [tool, "-x"]):
        proc = _run(argv)
        assert proc.returncode == 2 and "usage" in proc.stderr


def test_linked_stamp_lands_in_pt_note_unchanged_properties(tools: Path, tmp_path: Path) -> None:
    src = tmp_path / "main.c"
    src.write_text(MAIN_C)
    given = str(uuid.uuid4())
    obj = tmp_path / "stamp.o"
    assert _run([str(tools / "bin" / "ogrt-stamp-object"), str(obj), given]).returncode == 0
    plain, stamped, lib = tmp_path / "plain", tmp_path / "stamped", tmp_path / "libs.so"
    assert _run(["gcc", "-o", str(plain), str(src)]).returncode == 0
    link = _run(["gcc", "-o", str(stamped), str(obj), str(src)])
    assert link.returncode == 0 and link.stderr == ""  # no executable-stack or other warning
    assert _run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src), str(obj)]).returncode == 0
    assert signatures_in(stamped) == [given] and signatures_in(lib) == [given]
    assert signatures_in(plain) == []
    assert _readelf_signatures(stamped) == [given]
    assert _run([str(stamped)]).stdout == "stamped hello\n"
    # The stamp changes nothing else the loader looks at: GNU properties and stack flags.
    def props(p: Path) -> list[str]:
        return [l.strip() for l in _run(["readelf", "-nW", str(p)]).stdout.splitlines()
                if "Properties" in l]
    def stack(p: Path) -> str:
        return next(l.split()[-2] for l in _run(["readelf", "-lW", str(p)]).stdout.splitlines()
                    if "GNU_STACK" in l)
    assert props(stamped) == props(plain)
    assert stack(stamped) == stack(plain) == "RW"


# --- ogrt-cc ---------------------------------------------------------------------------

def _cc(tools: Path) -> str:
    return str(tools / "bin" / "ogrt-cc")


def test_wrapper_stamps_links_only(tools: Path, tmp_path: Path) -> None:
    d = tmp_path / "dir with space"
    d.mkdir()
    src = d / "main prog.c"
    src.write_text(MAIN_C)
    obj, exe1, exe2, lib = d / "main prog.o", d / "my prog", d / "prog2", d / "lib x.so"
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp dir"))
    (tmp_path / "tmp dir").mkdir()
    assert _run([_cc(tools), "gcc", "-c", "-o", str(obj), str(src)], env=env).returncode == 0
    assert section_notes(obj) == [] or not any(n.name == b"OGRT" for n in section_notes(obj, False))
    assert _run([_cc(tools), "gcc", "-S", "-o", str(d / "x.s"), str(src)], env=env).returncode == 0
    pre = _run([_cc(tools), "gcc", "-E", str(src)], env=env)
    assert pre.returncode == 0 and "main" in pre.stdout
    assert _run([_cc(tools), "gcc", "-o", str(exe1), str(obj)], env=env).returncode == 0
    assert _run([_cc(tools), "gcc", "-o", str(exe2), str(src)], env=env).returncode == 0
    assert _run([_cc(tools), "gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], env=env).returncode == 0
    s1, s2, s3 = signatures_in(exe1), signatures_in(exe2), signatures_in(lib)
    assert len(s1) == len(s2) == len(s3) == 1
    assert len({s1[0], s2[0], s3[0]}) == 3, "every link gets a fresh UUID"
    assert _readelf_signatures(exe1) == s1
    assert _run([str(exe1)]).stdout == "stamped hello\n"
    assert list((tmp_path / "tmp dir").iterdir()) == [], "temporary stamp files left behind"


def test_wrapper_language_option_and_relocatable(tools: Path, tmp_path: Path) -> None:
    src = tmp_path / "prog.txt"  # not a .c name: only -x c makes it C
    src.write_text(MAIN_C)
    exe = tmp_path / "prog"
    proc = _run([_cc(tools), "gcc", "-x", "c", str(src), "-o", str(exe)])
    assert proc.returncode == 0, proc.stderr
    assert len(signatures_in(exe)) == 1
    (tmp_path / "m.c").write_text(MAIN_C)
    assert _run(["gcc", "-c", "-o", str(tmp_path / "m.o"), str(tmp_path / "m.c")]).returncode == 0
    part = tmp_path / "part.o"
    assert _run([_cc(tools), "gcc", "-r", "-o", str(part), str(tmp_path / "m.o")]).returncode == 0
    assert not any(n.name == b"OGRT" for n in section_notes(part, False)), "partial links stay unstamped"
    part2 = tmp_path / "part2.o"
    proc = _run([_cc(tools), "gcc", "-nostdlib", "-no-pie", "-Xlinker", "-r", "-o", str(part2), str(tmp_path / "m.o")])
    assert proc.returncode == 0, proc.stderr
    assert not any(n.name == b"OGRT" for n in section_notes(part2, False))


def test_wrapper_passes_arguments_and_exit_status(tools: Path, tmp_path: Path) -> None:
    log = tmp_path / "args.log"
    fake = tmp_path / "fakecc"
    # Records its argv, assembles stamp sources with gcc, and otherwise exits 42.
    fake.write_text(
        "#!/bin/sh\n"
        f"for a in \"$@\"; do printf '[%s]' \"$a\" >> '{log}'; done; echo >> '{log}'\n"
        "for a in \"$@\"; do case $a in *.S) exec gcc \"$@\";; esac; done\n"
        "exit 42\n")
    fake.chmod(0o755)
    weird = ["a b", "", "$HOME", "*", "'q'", '"d"', "x\\y"]
    proc = _run([_cc(tools), str(fake), "-c", *weird])
    assert proc.returncode == 42
    assert log.read_text().splitlines() == ["".join(f"[{a}]" for a in ["-c", *weird])]
    log.unlink()
    proc = _run([_cc(tools), str(fake), "-o", "out", *weird])
    assert proc.returncode == 42
    calls = log.read_text().splitlines()
    assert len(calls) == 2  # the stamp object, then the link
    link = re.findall(r"\[([^\]]*)\]", calls[1])
    assert link[0].endswith("ogrt-stamp.o") and link[1:] == ["-o", "out", *weird]
    for query in (["--version"], ["-dumpmachine"], ["-print-prog-name=ld"], ["-v"], []):
        log.unlink()
        assert _run([_cc(tools), str(fake), *query]).returncode == 42
        assert log.read_text().splitlines() == ["".join(f"[{a}]" for a in query)]
    # a real failing compile keeps gcc's status and message
    proc = _run([_cc(tools), "gcc", "-o", str(tmp_path / "n"), str(tmp_path / "missing.c")])
    assert proc.returncode == 1 and "missing.c" in proc.stderr
    assert _run([_cc(tools)]).returncode == 2


def test_wrapper_response_file_opt_out_and_nesting(tools: Path, tmp_path: Path) -> None:
    src = tmp_path / "m.c"
    src.write_text(MAIN_C)
    rsp = tmp_path / "args.rsp"
    rsp.write_text(f"-c -o {tmp_path / 'm.o'} {src}\n")
    assert _run([_cc(tools), "gcc", f"@{rsp}"]).returncode == 0
    assert not any(n.name == b"OGRT" for n in section_notes(tmp_path / "m.o", False))
    off = _run([_cc(tools), "gcc", "-o", str(tmp_path / "off"), str(src)],
               env=dict(os.environ, OGRT_STAMP="0"))
    assert off.returncode == 0 and signatures_in(tmp_path / "off") == []
    nested = _run([_cc(tools), _cc(tools), "gcc", "-o", str(tmp_path / "nested"), str(src)])
    assert nested.returncode == 0 and len(signatures_in(tmp_path / "nested")) == 1
    # CC="ogrt-cc gcc" while the wrappers directory is on PATH too: still one stamp
    wrappers = tools / "libexec" / "ogrt" / "wrappers"
    env = dict(os.environ, PATH=f"{wrappers}:{os.environ['PATH']}")
    both = _run([_cc(tools), "gcc", "-o", str(tmp_path / "both"), str(src)], env=env)
    assert both.returncode == 0 and both.stderr == "" and len(signatures_in(tmp_path / "both")) == 1


def test_wrapper_named_like_the_compiler(tools: Path, tmp_path: Path) -> None:
    wrappers = tools / "libexec" / "ogrt" / "wrappers"
    assert (wrappers / "gcc").is_symlink() and (wrappers / "cc").is_symlink()
    src = tmp_path / "m.c"
    src.write_text(MAIN_C)
    real_path = os.environ["PATH"]
    env = dict(os.environ, PATH=f"{wrappers}:{wrappers}:{real_path}")
    exe = tmp_path / "viapath"
    proc = _run(["gcc", "-o", str(exe), str(src)], env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(signatures_in(exe)) == 1
    cc = _run(["cc", "-o", str(tmp_path / "viacc"), str(src)], env=env)
    assert cc.returncode == 0 and len(signatures_in(tmp_path / "viacc")) == 1
    version = _run(["gcc", "--version"], env=env)
    assert version.stdout == _run(["gcc", "--version"]).stdout
    # a PATH with the basic tools but no gcc
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("readlink", "mktemp", "rm", "grep"):
        (bare / tool).symlink_to(shutil.which(tool))
    lonely = _run([str(wrappers / "gcc"), "--version"], env=dict(os.environ, PATH=f"{wrappers}:{bare}"))
    assert lonely.returncode == 127 and "no 'gcc' on PATH" in lonely.stderr


def test_tools_makefile_clean(tools: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    assert _run(["make", "-s", "-C", str(TOOLS_DIR), f"BUILDDIR={build}"]).returncode == 0
    assert (build / "ogrt-cc").is_file() and os.access(build / "ogrt-stamp-object", os.X_OK)
    assert _run(["make", "-s", "-C", str(TOOLS_DIR), f"BUILDDIR={build}", "clean"]).returncode == 0
    assert not (build / "ogrt-cc").exists()
    assert shutil.which("sh")


@pytest.mark.parametrize("flags", [
    ["-O2", "-ffunction-sections", "-Wl,--gc-sections"],   # unreferenced sections collected
    ["-static"], ["-static-pie"], ["-flto", "-O2"], ["-pie", "-Wl,-z,now"], ["-no-pie"],
])
def test_stamp_survives_link_options_and_strip(tools: Path, tmp_path: Path, flags: list[str]) -> None:
    src = tmp_path / "m.c"
    src.write_text(MAIN_C)
    exe = tmp_path / "prog"
    proc = _run([_cc(tools), "gcc", *flags, "-o", str(exe), str(src)])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    sig = signatures_in(exe)
    assert len(sig) == 1
    assert _run(["strip", str(exe)]).returncode == 0
    assert signatures_in(exe) == sig == _readelf_signatures(exe)
    assert _run([str(exe)]).stdout == "stamped hello\n"


def test_wrapper_for_cxx(tools: Path, tmp_path: Path) -> None:
    src = tmp_path / "m.cc"
    src.write_text('#include <iostream>\nint main() { std::cout << "stamped hello" << std::endl; }\n')
    exe = tmp_path / "cxx"
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed (Debian package g++; `make test` installs it)")
    assert _run([_cc(tools), "g++", "-o", str(exe), str(src)]).returncode == 0
    assert len(signatures_in(exe)) == 1
    assert _run([str(exe)]).stdout == "stamped hello\n"


def test_preload_install_brings_the_tools(tmp_path: Path) -> None:
    """`make -C preload install PREFIX=DIR` installs the tools next to lib/libogrt.so."""
    prefix = tmp_path / "prefix"
    proc = _run(["make", "-s", "-C", str(REPO / "preload"), f"BUILDDIR={tmp_path / 'build'}",
                 "install", f"PREFIX={prefix}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (prefix / "lib" / "libogrt.so").is_file()
    for tool in ("ogrt-cc", "ogrt-stamp-object", "ogrt-signature"):
        assert os.access(prefix / "bin" / tool, os.X_OK)
    gcc = prefix / "libexec" / "ogrt" / "wrappers" / "gcc"
    assert gcc.is_symlink() and gcc.resolve() == (prefix / "bin" / "ogrt-cc").resolve()
    src = tmp_path / "m.c"
    src.write_text(MAIN_C)
    assert _run([str(prefix / "bin" / "ogrt-cc"), "gcc", "-o", str(tmp_path / "p"), str(src)]).returncode == 0
    assert len(signatures_in(tmp_path / "p")) == 1


def test_signature_tool(tools: Path, tmp_path: Path) -> None:
    src = tmp_path / "m.c"
    src.write_text(MAIN_C)
    stamped, plain = tmp_path / "with space", tmp_path / "plain"
    assert _run([_cc(tools), "gcc", "-o", str(stamped), str(src)]).returncode == 0
    assert _run(["gcc", "-o", str(plain), str(src)]).returncode == 0
    tool = str(tools / "bin" / "ogrt-signature")
    proc = _run([tool, str(stamped), str(plain)])
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == f"{signatures_in(stamped)[0]}\t{stamped}\n-\t{plain}\n"
    text = tmp_path / "notelf.txt"
    text.write_text("hello\n")
    bad = _run([tool, str(text), str(stamped), str(tmp_path / "missing")])
    assert bad.returncode == 1
    assert bad.stdout == f"{signatures_in(stamped)[0]}\t{stamped}\n"
    assert bad.stderr.count("cannot read ELF notes") == 2
    assert _run([tool]).returncode == 2


def test_fresh_stamp_comes_first(tools: Path, tmp_path: Path) -> None:
    """An input that already carries a stamp (a stamped object in a library, say): the
    wrapper's fresh stamp is the first OGRT note, the one libogrt.so reports."""
    old = str(uuid.uuid4())
    obj = tmp_path / "old-stamp.o"
    assert _run([str(tools / "bin" / "ogrt-stamp-object"), str(obj), old]).returncode == 0
    src = tmp_path / "m.c"
    src.write_text(MAIN_C)
    exe = tmp_path / "p"
    assert _run([_cc(tools), "gcc", "-o", str(exe), str(src), str(obj)]).returncode == 0
    sigs = signatures_in(exe)
    assert len(sigs) == 2 and sigs[1] == old and sigs[0] != old
    assert _run([str(tools / "bin" / "ogrt-signature"), str(exe)]).stdout == f"{sigs[0]}\t{exe}\n"


def test_wrapper_never_breaks_a_link(tools: Path, tmp_path: Path) -> None:
    """No usable TMPDIR: the link still succeeds (unstamped, with a warning)."""
    src = tmp_path / "m.c"
    src.write_text(MAIN_C)
    exe = tmp_path / "p"
    proc = _run([_cc(tools), "gcc", "-o", str(exe), str(src)],
                env=dict(os.environ, TMPDIR=str(tmp_path / "does-not-exist")))
    assert proc.returncode == 0
    assert "linking without it" in proc.stderr
    assert signatures_in(exe) == []
    assert _run([str(exe)]).stdout == "stamped hello\n"


def test_cmake_linker_launcher(tools: Path, tmp_path: Path) -> None:
    """CMake >= 3.21: -DCMAKE_<LANG>_LINKER_LAUNCHER=ogrt-cc stamps every program and library."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (Debian package cmake; `make test` installs it)")
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.c").write_text("int lib_f(void);\nint main(void) { return lib_f() - 1; }\n")
    (src / "l.c").write_text("int lib_f(void) { return 1; }\n")
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\nproject(t C)\nadd_library(l SHARED l.c)\n"
        "add_executable(m m.c)\ntarget_link_libraries(m l)\n")
    build = tmp_path / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    assert _run(["cmake", "-S", str(src), "-B", str(build), *gen,
                 f"-DCMAKE_C_LINKER_LAUNCHER={_cc(tools)}"]).returncode == 0
    proc = _run(["cmake", "--build", str(build)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prog, lib = signatures_in(build / "m"), signatures_in(build / "libl.so")
    assert len(prog) == 1 and len(lib) == 1 and prog != lib
    objs = list(build.glob("CMakeFiles/*/*.o"))
    assert objs and all(not any(n.name == b"OGRT" for n in section_notes(o, False)) for o in objs)
    assert _run([str(build / "m")]).returncode == 0
