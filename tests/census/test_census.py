"""The software census end to end, with real tools and no fabricated metadata: programs run
under the real library → a real `ogrt server` writing SQLite and PostgreSQL → `ogrt census
update` over the machine's dpkg database, a venv with a distribution from PyPI that has a C
extension (markupsafe), modulefiles made here and read by Lmod's own spider → `ogrt report
software`, `--unused`, the package column of `executables` and `job`.
(Spack: tests/deploy/test_spack.py, which has the Spack-installed ogrt.)"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.census.helpers import OGRT, census_update, packages, report
from tests.fixtures.preload import preload_env

PYTHON = "/usr/bin/python3.11"
LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
JOB = "census-job-1"

if not (os.access(PYTHON, os.X_OK) and shutil.which("dpkg-query") and LMOD_INIT.is_file()):
    pytestmark = pytest.mark.skip(reason=f"needs {PYTHON}, dpkg-query and Lmod ({LMOD_INIT})")


def dpkg_version(package: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of /usr/bin/python3.11 with markupsafe (a C extension) from PyPI, once per session."""
    path = tmp_path_factory.mktemp("census-venv") / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
    pip = subprocess.run([str(path / "bin" / "pip"), "install", "-q", "markupsafe"],
                         capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"cannot install markupsafe from the package index: {pip.stderr[-500:]}")
    return path


def modules(root: Path) -> tuple[Path, Path, Path]:
    """Two modules made here: censustool/1.0 (a copy of /bin/true in its bin/) and
    unusedtool/2.0 (never loaded). Returns (MODULEPATH, censustool's program, unused's bin)."""
    mf = root / "modulefiles"
    progs = {}
    for name, version in (("censustool", "1.0"), ("unusedtool", "2.0")):
        bindir = root / "sw" / f"{name}-{version}" / "bin"
        bindir.mkdir(parents=True)
        shutil.copy("/bin/true", bindir / name)
        (mf / name).mkdir(parents=True)
        (mf / name / f"{version}.lua").write_text(f'prepend_path("PATH", "{bindir}")\n')
        progs[name] = bindir
    return mf, progs["censustool"] / "censustool", progs["unusedtool"]


def _no_lmod(env: dict[str, str]) -> dict[str, str]:
    """The environment without the caller's Lmod state (a clean `module` in the script)."""
    return {k: v for k, v in env.items() if not k.startswith(
        ("LMOD", "MODULE", "__LMOD", "_ModuleTable", "LOADEDMODULES", "_LMFILES_"))}


def run_workload(preload_lib: Path, port: int, venv: Path, modulepath: Path, loner: Path) -> None:
    """Under the library: the venv's python importing markupsafe's extension, and
    `module load censustool/1.0; censustool` in a bash that sourced Lmod's init."""
    env = _no_lmod(preload_env(preload_lib, port, OGRT_TEST_JOBID=JOB))
    script = "\n".join([
        f"{venv / 'bin' / 'python'} -c 'import markupsafe._speedups'",
        f"source {LMOD_INIT}",
        f"export MODULEPATH={modulepath}",
        "module load censustool/1.0",
        "censustool",
        str(loner),
    ])
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def run_module_tool(preload_lib: Path, port: int, modulepath: Path) -> None:
    """`module load censustool/1.0; censustool` once more, in the same job."""
    env = preload_env(preload_lib, port, OGRT_TEST_JOBID=JOB)
    script = f"source {LMOD_INIT}\nexport MODULEPATH={modulepath}\nmodule load censustool/1.0\ncensustool\n"
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], env=_no_lmod(env),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_census_attributes_real_programs(preload_lib: Path, ogrt_server: Any, postgres: Any,
                                         venv: Path, tmp_path: Path) -> None:
    modulepath, tool, unused_bin = modules(tmp_path)
    sqlite_path = str(tmp_path / "ogrt.sqlite")
    dsn = postgres.new_database()
    srv = ogrt_server(jsonl=False, extra_outputs=(
        f'[outputs.db]\ntype = "sqlite"\npath = "{sqlite_path}"\n'
        f'[outputs.pg]\ntype = "postgresql"\ndsn = "{dsn}"\n'))
    loner = tmp_path / "loose" / "loner"
    loner.parent.mkdir()
    shutil.copy("/bin/true", loner)
    run_workload(preload_lib, srv.port, venv, modulepath, loner)
    assert srv.stop() == 0

    python_version = dpkg_version("python3.11-minimal")
    markupsafe_version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('markupsafe'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    sources = ("--dpkg", "--python", str(venv), "--lmod", "--modulepath", str(modulepath))
    for db in (sqlite_path, dsn):
        out = census_update(db, *sources)
        assert "attribution (all paths)" in out, out
        got = packages(report(db, "software"))
        # dpkg: the interpreter the venv links to, with dpkg-query's version
        py = got[("dpkg", "python3.11-minimal")]
        assert py["version"] == python_version and py["processes"] >= 1 and py["jobs"] == 1
        # python: the distribution whose extension module the library saw loaded
        ms = got[("python", "MarkupSafe")]
        assert ms["version"] == markupsafe_version and ms["processes"] == 1
        # lmod: the module's directory from Lmod's spider, the program run from it
        lm = got[("lmod", "censustool")]
        assert lm["version"] == "1.0" and lm["processes"] == 1 and lm["users"] == 1
        # libc is loaded by every process: Debian's libc6
        assert got[("dpkg", "libc6")]["processes"] >= 3
        assert ("lmod", "unusedtool") not in got

        # the same report with a filter takes the other path (from the processes themselves)
        assert packages(report(db, "software", "--job", JOB))[("lmod", "censustool")]["processes"] == 1
        assert [r["package"] for r in report(db, "software", "--source", "lmod")] == ["censustool"]
        assert [r["package"] for r in report(db, "software", "--name", "markup*")] == ["MarkupSafe"]

        unused = packages(report(db, "software", "--unused", "--source", "lmod"))
        assert set(unused) == {("lmod", "unusedtool")}
        assert unused[("lmod", "unusedtool")]["prefix"].endswith("unusedtool/2.0.lua")
        assert ("python", "MarkupSafe") not in packages(report(db, "software", "--unused", "--source", "python"))
        # a period without the run: everything is unused then
        assert ("lmod", "censustool") in packages(
            report(db, "software", "--unused", "--until", "2000-01-01"))

        exes = {r["executable"]: r for r in report(db, "executables", "--job", JOB)}
        assert exes[str(tool)]["package"] == "censustool@1.0"
        assert exes[os.path.realpath(PYTHON)]["package"] == f"python3.11-minimal@{python_version}"
        tree = report(db, "job", JOB)["tree"]
        images = [img for root in tree for c in [root, *root["children"]] for img in c["images"]]
        assert {img["exe"]: img["package"] for img in images}[str(tool)] == "censustool@1.0"

        # unattributed stays unattributed: a program no source lists
        assert exes[str(loner)]["package"] is None

    # the same job runs the tool again, recorded after the census's roll-ups: the report adds
    # it (processes 2) without counting the job or the user twice; the next update rolls it up
    srv = ogrt_server(jsonl=False, extra_outputs=(
        f'[outputs.db]\ntype = "sqlite"\npath = "{sqlite_path}"\n'
        f'[outputs.pg]\ntype = "postgresql"\ndsn = "{dsn}"\n'))
    run_module_tool(preload_lib, srv.port, modulepath)
    assert srv.stop() == 0
    for db in (sqlite_path, dsn):
        for argv in ((), ("--job", JOB)):  # the roll-ups plus the new process; the processes alone
            lm = packages(report(db, "software", *argv))[("lmod", "censustool")]
            assert (lm["processes"], lm["jobs"], lm["users"], lm["hosts"]) == (2, 1, 1, 1), argv
        # incremental: nothing changed, nothing rewritten; only the new process is rolled up
        again = census_update(db, *sources)
        assert "0 added, 0 changed, 0 removed" in again and "attribution (new paths)" in again, again
        lm = packages(report(db, "software"))[("lmod", "censustool")]
        assert (lm["processes"], lm["jobs"], lm["users"]) == (2, 1, 1)
    # a vanished module is removed
    shutil.rmtree(unused_bin.parent)
    (modulepath / "unusedtool" / "2.0.lua").unlink()
    out = census_update(sqlite_path, *sources)
    assert "lmod" in out and "1 removed" in out, out
    assert ("lmod", "unusedtool") not in packages(report(sqlite_path, "software", "--unused"))


def test_schema_3_database_is_migrated_by_census_update(venv: Path, tmp_path: Path) -> None:
    """A database the previous release wrote (schema 3) gains the census tables at the first
    `census update`; reports refuse it until then, naming the way out."""
    from ogrt.sql.schema import SCHEMA_VERSION, schema_statements

    db = tmp_path / "v3.sqlite"
    with sqlite3.connect(db) as conn:
        for stmt in schema_statements("sqlite"):
            if "census_" not in stmt:
                conn.execute(stmt)
        conn.execute("INSERT INTO schema_version VALUES (3)")
    conn.close()
    refused = subprocess.run([str(OGRT), "report", "software", "--db", str(db)], capture_output=True, text=True)
    assert refused.returncode == 2 and "census update" in refused.stderr
    census_update(str(db), "--python", str(venv))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
    assert ("python", "MarkupSafe") in packages(report(str(db), "software", "--unused"))


def test_untrusted_names_and_bad_records(tmp_path: Path) -> None:
    """File names that are not UTF-8 are stored escaped, as the records store them (so a
    recorded path can match); a RECORD that cannot be read is counted unreadable, not a crash."""
    site = tmp_path / "prefix" / "lib" / "python3.11" / "site-packages"
    good = site / "odd-1.0.dist-info"
    good.mkdir(parents=True)
    (good / "METADATA").write_text("Name: odd\nVersion: 1.0\n\n")
    (good / "RECORD").write_bytes(b"odd/caf\xe9.so,,\nodd/__init__.py,,\n")
    bad = site / "bad-2.0.dist-info"
    bad.mkdir()
    (bad / "RECORD").mkdir()  # unreadable as a file
    db = tmp_path / "db.sqlite"
    db.touch()
    out = census_update(str(db), "--python", str(tmp_path / "prefix"))
    assert "1 added" in out and "1 unreadable" in out, out
    with sqlite3.connect(db) as conn:
        paths = [p for (p,) in conn.execute("SELECT path FROM census_paths")]
    conn.close()
    assert paths == [f"{site}/odd/caf\\xe9.so"]  # the .py file: never seen by the library
    assert census_update(str(db), "--python", str(tmp_path / "prefix")).count("0 added") == 1
