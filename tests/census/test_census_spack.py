"""`ogrt census update --spack COMMAND` with the real Spack (tests/fixtures/spack.py): a package
installed by Spack into a temp install tree (a recipe made here: its install() copies a real
program, no source, no compiler), that program run under the real library with a real `ogrt
server` writing SQLite, then the census asks Spack for its prefixes through a wrapper script
(Spack's config scope and environment, as a site would wrap it) and through a command line with
arguments → the package, its version and Spack's hash, the process attributed to it."""
from __future__ import annotations

import shlex
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.census.helpers import census_update, packages, report
from tests.fixtures.preload import preload_env
from tests.fixtures.spack import SNAPSHOT_SPACK, SPACK, SPACK_PYTHON, Spack, has_clingo

if SPACK is None:
    pytestmark = pytest.mark.skip(
        reason=f"Spack not found: no {SNAPSHOT_SPACK} beside the checkout, no OGRT_TEST_SPACK, no spack on PATH")
elif not has_clingo(SPACK_PYTHON):
    pytestmark = pytest.mark.skip(reason=f"{SPACK_PYTHON} cannot import clingo, which Spack needs")

RECIPE = '''import shutil
from spack.package import *
from spack_repo.builtin.build_systems.generic import Package


class Censusdemo(Package):
    """A program copied at install time: no source to fetch, no compiler."""

    has_code = False
    version("1.0")

    def install(self, spec, prefix):
        mkdirp(prefix.bin)
        shutil.copy("/bin/true", join_path(prefix.bin, "censusdemo"))
'''


def install(tmp: Path) -> tuple[Spack, Path, str]:
    """censusdemo@1.0 installed by Spack: (spack, its prefix, its hash)."""
    tmp.mkdir()
    spack = Spack(tmp)
    spack.local_config()
    spack("repo", "create", str(tmp / "repo"), "censustest")
    (repo_yaml,) = (tmp / "repo").rglob("repo.yaml")
    recipe = repo_yaml.parent / "packages" / "censusdemo" / "package.py"
    recipe.parent.mkdir(parents=True)
    recipe.write_text(RECIPE)
    (spack.scope / "repos.yaml").write_text(f"repos:\n  censustest: {repo_yaml.parent}\n")
    spack("install", "censusdemo")
    prefix, hash_ = spack("find", "--format", "{prefix} {hash}", "censusdemo").stdout.split()
    return spack, Path(prefix), hash_


def wrapper(spack: Spack) -> Path:
    """A script that runs the real Spack with the test's scope and environment."""
    script = spack.tmp / "site-spack"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in spack.env.items() if k.startswith(("SPACK_", "PYTHON")))
    script.write_text(f"#!/bin/sh\nexport {env}\nexec {shlex.quote(str(SPACK))} -C {shlex.quote(str(spack.scope))} \"$@\"\n")
    script.chmod(0o755)
    return script


def test_spack_command_indexes_the_installed_packages(preload_lib: Path, ogrt_server: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spack, prefix, hash_ = install(tmp_path / "spack")
    program = prefix / "bin" / "censusdemo"
    db = str(tmp_path / "ogrt.sqlite")
    srv = ogrt_server(jsonl=False, extra_outputs=f'[outputs.db]\ntype = "sqlite"\npath = "{db}"\n')
    proc = subprocess.run([str(program)], env=preload_env(preload_lib, srv.port, OGRT_TEST_JOBID="spack-job"),
                          capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert srv.stop() == 0

    out = census_update(db, "--spack", str(wrapper(spack)))
    assert "spack spack find" in out and "1 added" in out, out
    demo = packages(report(db, "software"))[("spack", "censusdemo")]
    assert (demo["version"], demo["hash"], demo["processes"], demo["jobs"]) == ("1.0", hash_, 1, 1)
    exes = {r["executable"]: r for r in report(db, "executables", "--job", "spack-job")}
    assert exes[str(program)]["package"] == "censusdemo@1.0"

    # a command line with arguments (the environment from the caller): the same package, unchanged
    for k, v in spack.env.items():
        if k.startswith("SPACK_"):
            monkeypatch.setenv(k, v)
    again = census_update(db, "--spack", f"{shlex.quote(str(SPACK))} -C {shlex.quote(str(spack.scope))}")
    assert "0 added, 0 changed, 0 removed, 1 unchanged" in again, again
    # uninstalled: gone from the index
    spack("uninstall", "-y", "censusdemo")
    assert not prefix.exists()
    gone = census_update(db, "--spack", str(wrapper(spack)))
    assert "1 removed" in gone, gone
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM census_packages").fetchone() == (0,)
    conn.close()
