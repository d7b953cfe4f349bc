"""Building the library: invisibility, site settings (make variables), rebuilds, install, check."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.preload import (PRELOAD_DIR, FrameReceiver, gensettings, make_preload, preload_env,
                                   variant_missing)


def test_ldd_lists_only_libc_loader_and_vdso(preload_lib: Path) -> None:
    out = subprocess.run(["ldd", str(preload_lib)], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert len(names) == 3, out
    assert any(n.startswith("linux-vdso") for n in names)
    assert any(n.startswith("libc.so") for n in names)
    assert any("ld-linux" in n for n in names)


def test_no_dynamic_symbol_defined(preload_lib: Path) -> None:
    out = subprocess.run(["nm", "-D", "--defined-only", str(preload_lib)], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == ""
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(preload_lib)], capture_output=True,
                               text=True, check=True).stdout
    for name in ("protobuf", "uuid", "random", "setenv", "putenv", "malloc"):
        assert name not in undefined.replace("getrandom", ""), undefined


@pytest.mark.parametrize(("var", "value"), [
    ("SERVER_PORT", "0"), ("SERVER_PORT", "70000"), ("SERVER_PORT", "http"), ("TRANSPORT", "sctp"),
    ("SEND_CMDLINE", "maybe"), ("ALLOW_SERVER_ENV", "perhaps"), ("CONNECT_TIMEOUT_MS", "0"),
    ("CONNECT_TIMEOUT_MS", "1e3"), ("BACKOFF_SECONDS", "-1"), ("ENV_WHITELIST", "HOME,1BAD"),
    ("JOBID_VAR", "SLURM-JOB"), ("SERVER_HOST", "a b"), ("SERVER_HOST", ""), ("FILTER_REGEXPS", "^/ok$:^/bad("),
    ("CONNECT_TIMEOUT_MS", "60001"), ("BACKOFF_SECONDS", "86401"), ("SERVER_PORT", "07971"),
    ("SERVER_HOST", "h" * 254), ("ENV_WHITELIST", "HOME,*"), ("TRANSPORT", "tcp|udp"),
    ("SERVER_HOST", "a,,b"), ("SERVER_HOST", "a,"), ("SERVER_HOST", "a:0"), ("SERVER_HOST", "a:65536"),
    ("SERVER_HOST", "[::1]"), ("SERVER_HOST", "[::1]:x"), ("SERVER_HOST", ":80"), ("SERVER_HOST", ",".join("h" * 17)),
    ("RELAY_SOCKET", "relay.sock"), ("RELAY_SOCKET", "/run/ogrt relay.sock"), ("RELAY_SOCKET", "/" + "r" * 107),
    ("RELAY_SOCKET", ""), ("TRANSPORT", "unix"),
])
def test_bad_value_fails_the_build_naming_it(tmp_path: Path, var: str, value: str) -> None:
    proc = make_preload(tmp_path, **{var: value})
    assert proc.returncode != 0
    assert var in proc.stderr, proc.stderr
    assert not (tmp_path / "libogrt.so").exists()


SITE = {"SERVER_HOST": "collector.example", "SERVER_PORT": "9999", "TRANSPORT": "udp", "JOBID_VAR": "PBS_JOBID",
        "CONNECT_TIMEOUT_MS": "333", "BACKOFF_SECONDS": "17", "ENV_WHITELIST": "OMP_NUM_THREADS,CUDA_VISIBLE_DEVICES",
        "SEND_CMDLINE": "no", "FILTER_REGEXPS": "^/usr/lib/[[:alnum:]]+/:^/opt/x", "ALLOW_SERVER_ENV": "no"}


def test_site_settings_in_debug_info(build_preload: Callable[..., Path]) -> None:
    lib = build_preload(**SITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGRT_")}
    env.update(LD_PRELOAD=str(lib), OGRT_DEBUG_INFO="1")
    proc = subprocess.run(["/bin/true"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == ""
    lines = set(proc.stderr.splitlines())
    expected = {f"OGRT {k.lower()}: {v}" for k, v in SITE.items()}
    assert expected <= lines, proc.stderr
    env.pop("OGRT_DEBUG_INFO")
    assert subprocess.run(["/bin/true"], env=env, capture_output=True, timeout=30).stderr == b""


def test_values_at_the_bounds_are_accepted(build_preload: Callable[..., Path], tmp_path: Path) -> None:
    edges = {"SERVER_HOST": "h" * 253, "SERVER_PORT": "65535", "CONNECT_TIMEOUT_MS": "60000",
             "BACKOFF_SECONDS": "86400", "RELAY_SOCKET": "/" + "r" * 106}
    env = dict(os.environ, LD_PRELOAD=str(build_preload(**edges)), OGRT_DEBUG_INFO="1")
    lines = subprocess.run(["/bin/true"], env=env, capture_output=True, text=True,
                           timeout=30).stderr.splitlines()
    assert {f"OGRT {k.lower()}: {v}" for k, v in edges.items()} <= set(lines), lines
    config = PRELOAD_DIR / "genconfig.sh"
    for value in ("0", "1"):
        # never /dev/null as the output: genconfig.sh writes a temp file and renames it over
        # the output, which as root replaces the device with a regular file
        out = tmp_path / f"config-{value}.h"
        proc = subprocess.run([config, out, f"BACKOFF_SECONDS={value}"], capture_output=True)
        assert proc.returncode == 0, proc.stderr
        assert f"#define OGRT_CFG_BACKOFF_SECONDS {value}\n" in out.read_text()


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([PRELOAD_DIR / "genconfig.sh", tmp_path / "config.h", "SERVER_PROT=1"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown setting SERVER_PROT" in proc.stderr
    assert not (tmp_path / "config.h").exists()


def test_generated_parts_follow_the_settings_table(tmp_path: Path) -> None:
    """package.py's _SETTINGS and README's tables are what gensettings.py makes of settings.tsv;
    a bound changed in the table alone makes the check fail and name the command to run."""
    tool = [sys.executable, str(PRELOAD_DIR / "gensettings.py")]
    proc = subprocess.run([*tool, "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("package.py", "README.md", "preload/settings.tsv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text((PRELOAD_DIR.parent / name).read_text())
    table = tmp_path / "preload" / "settings.tsv"
    table.write_text(table.read_text().replace(" 1..60000 ", " 1..3600000 "))
    stale = subprocess.run([*tool, "--check", "--root", str(tmp_path)], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "package.py is stale" in stale.stdout and "README.md is stale" in stale.stdout
    assert "run `python3 preload/gensettings.py`" in stale.stdout
    assert subprocess.run([*tool, "--root", str(tmp_path)], capture_output=True).returncode == 0
    assert "'1..3600000'" in (tmp_path / "package.py").read_text()
    assert subprocess.run([*tool, "--check", "--root", str(tmp_path)]).returncode == 0
    settings = gensettings().read_table(table)
    assert [s.name for s in settings][:3] == ["SERVER_HOST", "SERVER_PORT", "JOBID_VAR"]


def test_compiled_in_server_used_and_server_env_ignored(build_preload: Callable[..., Path],
                                                        frame_receiver: FrameReceiver,
                                                        c_program: Callable[..., Path]) -> None:
    """ALLOW_SERVER_ENV=no: OGRT_SERVER is ignored, SERVER_HOST/SERVER_PORT are used; SEND_CMDLINE=no."""
    lib = build_preload(SERVER_HOST="127.0.0.1", SERVER_PORT=str(frame_receiver.port), SEND_CMDLINE="no",
                        JOBID_VAR="MY_SITE_JOB")
    other = FrameReceiver()
    try:
        env = preload_env(lib, other.port, MY_SITE_JOB="77", OGRT_TEST_ENV_A="not-whitelisted")
        proc = subprocess.run([c_program("exit_status"), "4", "secret-arg"], env=env, capture_output=True,
                              timeout=60)
        assert proc.returncode == 4
        msgs = frame_receiver.messages(2, timeout=10)
        assert [t for t, _ in msgs] == [12, 13]
        start = msgs[0][1]
        assert list(start.args) == [] and start.job_id == b"77" and list(start.env) == []
        assert start.exe == os.fsencode(c_program("exit_status"))
        assert other.messages(1, timeout=0.3) == []
    finally:
        other.close()


@pytest.mark.parametrize("filters", ["/exit_status[[:digit:]]+$:^/nonexistent/",  # regcomp's
                                     "^/nonexistent/:/exit_status"])  # plain strings: matched without regcomp
def test_filter_regexps_skip_matching_executables(build_preload: Callable[..., Path],
                                                  frame_receiver: FrameReceiver,
                                                  c_program: Callable[..., Path], filters: str) -> None:
    lib = build_preload(ALLOW_SERVER_ENV="yes", FILTER_REGEXPS=filters)
    env = preload_env(lib, frame_receiver.port)
    assert subprocess.run([c_program("exit_status"), "2"], env=env, capture_output=True).returncode == 2
    assert frame_receiver.messages(1, timeout=0.5) == []
    assert subprocess.run([c_program("dlopen_libs", "-ldl")], env=env, capture_output=True).returncode == 0
    assert [t for t, _ in frame_receiver.messages(2, timeout=10)] == [12, 13]


PLAIN = ["^/usr/lib/", "^/opt/x$", "\\.sh$", "exit_status", "^", "$", "^$", "a\\.b", "^/a\\$", "\\^x", "x\\$$",
         "\\[1\\]", "b\\|c", "\\\\", "ü"]
NOT_PLAIN = ["/exit_status[[:digit:]]+$", "a.b", "^a|b", "a\\d", "(x)", "a*", "^^a", "a$b", "x{2}", "a\\", "\\<a"]
SUBJECTS = ["/usr/lib/x", "/usr/lib", "/opt/x", "/opt/xy", "/opt/x\n", "run.sh", "runsh", "", "a.b", "axb", "/a$", "/a",
            "^x", "x$", "x", "[1]", "b|c", "\\", "/usr/bin/exit_status", "a\nb", "/ü/"]


def test_plain_filters_match_as_regexec_does(build_preload: Callable[..., Path],
                                             c_program: Callable[..., Path]) -> None:
    """A filter that is a plain string (maybe anchored, special characters escaped) is matched
    without regcomp: for every pair here the answer is regexec's; any other regex is left to it."""
    objdir = build_preload().parent / "obj"  # config.h of a default build
    prog = c_program("filter_plain", "-I", str(PRELOAD_DIR), "-I", str(objdir), sources=(str(PRELOAD_DIR / "filter.c"),))
    pairs = [(r, s) for r in PLAIN + NOT_PLAIN for s in SUBJECTS]
    out = subprocess.run([prog, *(x for pair in pairs for x in pair)], capture_output=True, text=True, check=True)
    results = [tuple(map(int, line.split())) for line in out.stdout.splitlines()]
    assert len(results) == len(pairs)
    for (regex, subject), (plain, rx) in zip(pairs, results):
        assert rx in (0, 1) or regex == "a\\", (regex, rx)
        if regex in PLAIN:
            assert plain == rx, (regex, subject, plain, rx)
        else:
            assert plain == -1, (regex, subject)
    assert {rx for (regex, _), (_, rx) in zip(pairs, results) if regex in PLAIN} == {0, 1}


def test_settings_change_rebuilds_and_same_settings_do_not(tmp_path: Path) -> None:
    lib = tmp_path / "libogrt.so"
    assert make_preload(tmp_path, SERVER_PORT="1234").returncode == 0
    first = lib.stat().st_mtime_ns
    assert make_preload(tmp_path, SERVER_PORT="1234").returncode == 0
    assert lib.stat().st_mtime_ns == first
    assert make_preload(tmp_path, SERVER_PORT="4321").returncode == 0
    assert lib.stat().st_mtime_ns != first
    env = dict(os.environ, LD_PRELOAD=str(lib), OGRT_DEBUG_INFO="1")
    env.pop("OGRT_SILENT", None)
    out = subprocess.run(["/bin/true"], env=env, capture_output=True, text=True).stderr
    assert "OGRT server_port: 4321" in out


def test_install_and_check(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    prefix = tmp_path / "prefix"
    proc = subprocess.run(["make", "-s", "-C", str(PRELOAD_DIR), f"BUILDDIR={build}", "install",
                           f"PREFIX={prefix}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # the real files where Debian's loaders expand $LIB, aliases for other loaders (lib64,
    # lib32, '$LIB' for musl), and lib/libogrt.so, the path of earlier installs: 64-bit
    lib64 = prefix / "lib" / "x86_64-linux-gnu" / "libogrt.so"
    assert lib64.is_file() and not lib64.is_symlink()
    for alias in ("lib", "lib64", "$LIB"):
        assert (prefix / alias / "libogrt.so").resolve() == lib64, alias
    if not variant_missing("m32"):
        lib32 = prefix / "lib" / "i386-linux-gnu" / "libogrt.so"
        assert lib32.is_file() and (prefix / "lib32" / "libogrt.so").resolve() == lib32
        assert lib32.read_bytes()[4] == 1 and lib64.read_bytes()[4] == 2  # EI_CLASS: ELFCLASS32 / 64
    if (PRELOAD_DIR / "tools" / "Makefile").exists():
        assert (prefix / "bin" / "ogrt-cc").exists()
    check = subprocess.run(["make", "-s", "-C", str(PRELOAD_DIR), f"BUILDDIR={build}", "check"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert "OGRT server_host: localhost" in check.stdout and "self-check passed" in check.stdout


def test_output_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.run([PRELOAD_DIR / "genconfig.sh", fifo], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "not a regular file" in proc.stderr
    assert fifo.is_fifo() and not list(tmp_path.glob("fifo.tmp.*"))
