"""package.py with a real Spack: a repository made with `spack repo create`, the recipe installed
from the working tree without network (externals for the compiler and gmake, the working tree as
the `main` version's source via dev_path), then the installed library's OGRT_DEBUG_INFO output
shows the variants, and `spack test run ogrt` passes.

Spack is found through OGRT_TEST_SPACK=/path/to/bin/spack or on PATH (it needs a Python with
clingo, e.g. SPACK_PYTHON). Spack 1.x builds its compiler-wrapper package from source, which
needs the network; offline, point OGRT_TEST_SPACK_COMPILER_WRAPPER at a checkout of
github.com/spack/compiler-wrapper (any directory with cc.sh): the test serves it from a local
mirror. Nothing is written outside the test's temp dir (user config, caches, install tree)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO, lmod_script, run_playbook

SPACK = os.environ.get("OGRT_TEST_SPACK") or shutil.which("spack")

pytestmark = pytest.mark.skipif(
    SPACK is None,
    reason="Spack is not installed here (no distribution or PyPI package carries it; set "
           "OGRT_TEST_SPACK=/path/to/spack/bin/spack to run this test)")

VARIANTS = ["server_host=collector.example", "server_port=7999", "jobid_var=PBS_JOBID",
            "transport=udp", "env_whitelist=HOME,PBS_O_QUEUE", "~send_cmdline",
            "connect_timeout_ms=350"]
EXPECTED = ["OGRT server_host: collector.example", "OGRT server_port: 7999",
            "OGRT jobid_var: PBS_JOBID", "OGRT transport: udp",
            "OGRT env_whitelist: HOME,PBS_O_QUEUE", "OGRT send_cmdline: no",
            "OGRT connect_timeout_ms: 350"]


class Spack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.scope = tmp / "config"  # a command-line scope: overrides even `repos::`
        self.scope.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SPACK_USER", "SPACK_DISABLE", "OGRT_", "LD_PRELOAD"))}
        self.env.update(SPACK_USER_CONFIG_PATH=str(tmp / "user"),
                        SPACK_USER_CACHE_PATH=str(tmp / "cache"))

    def __call__(self, *args: str, check: bool = True,
                 timeout: int = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(SPACK), "-C", str(self.scope), *args], env=self.env,
                              cwd=self.tmp, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, (f"spack {' '.join(args)} failed:\n"
                                          f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _mirror_compiler_wrapper(spack: Spack) -> bool:
    """Serve OGRT_TEST_SPACK_COMPILER_WRAPPER's cc.sh as every compiler-wrapper version's
    source tarball in a local mirror (content-addressed layout); True if configured."""
    source = os.environ.get("OGRT_TEST_SPACK_COMPILER_WRAPPER")
    if not source:
        return False
    src = Path(source)
    src = src.parent if src.name == "cc.sh" else src
    assert (src / "cc.sh").is_file(), f"{src}/cc.sh not found"
    script = spack.tmp / "wrapper_versions.py"
    _write(script, "import spack.repo\n"
                   "c = spack.repo.PATH.get_pkg_class('compiler-wrapper')\n"
                   "for v, d in c.versions.items():\n"
                   "    print(v, d.get('sha256', ''))\n")
    listing = spack("python", str(script)).stdout
    mirror = spack.tmp / "mirror"
    for line in listing.split("\n"):
        version, _, sha = line.strip().partition(" ")
        if not sha:
            continue
        dest = mirror / "_source-cache" / "archive" / sha[:2] / f"{sha}.tar.gz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest, "w:gz") as tar:
            tar.add(src / "cc.sh", arcname=f"compiler-wrapper-{version}/cc.sh")
    _write(spack.scope / "mirrors.yaml", f"mirrors:\n  ogrt-test: file://{mirror}\n")
    return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spack, Path]:
    tmp = tmp_path_factory.mktemp("spack")
    spack = Spack(tmp)
    spack("repo", "create", str(tmp / "repo"), "ogrtsite")
    (repo_yaml,) = (tmp / "repo").rglob("repo.yaml")
    packages = repo_yaml.parent / "packages" / "ogrt"
    packages.mkdir(parents=True)
    shutil.copy2(REPO / "package.py", packages / "package.py")
    _write(spack.scope / "repos.yaml", f"repos:\n  ogrtsite: {repo_yaml.parent}\n")
    _write(spack.scope / "config.yaml",
           "config:\n"
           f"  install_tree:\n    root: {tmp / 'opt'}\n"
           f"  build_stage: [{tmp / 'stage'}]\n"
           f"  source_cache: {tmp / 'source-cache'}\n"
           f"  misc_cache: {tmp / 'misc-cache'}\n"
           f"  test_stage: {tmp / 'test-stage'}\n"
           "  build_jobs: 2\n")
    spack("compiler", "find", "--scope", "user")
    spack("external", "find", "--scope", "user", "--not-buildable", "gmake")
    offline_wrapper = _mirror_compiler_wrapper(spack)
    # The working tree is the source of the `main` version (no fetch): a clean copy of preload/.
    src = tmp / "src"
    shutil.copytree(REPO / "preload", src / "preload",
                    ignore=shutil.ignore_patterns("build", "*.o", "*.so", "*.tmp"))
    args = ["install", "--test=root", *(["--no-checksum"] if offline_wrapper else []),
            "ogrt@main", f"dev_path={src}", *VARIANTS]
    spack(*args)
    prefix = Path(spack("location", "--install-dir", "ogrt").stdout.strip())
    return spack, prefix


def test_installed_library_has_the_variants_compiled_in(installed: tuple[Spack, Path]) -> None:
    _, prefix = installed
    lib = prefix / "lib" / "libogrt.so"
    assert lib.is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGRT_")}
    env.update(OGRT_DEBUG_INFO="1", LD_PRELOAD=str(lib))
    proc = subprocess.run(["/bin/true"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    out = proc.stdout + proc.stderr
    for line in EXPECTED:
        assert line in out.splitlines(), f"{line!r} not in:\n{out}"


def test_install_time_tests_ran_make_check(installed: tuple[Spack, Path]) -> None:
    _, prefix = installed
    logs = list((prefix / ".spack").glob("*test*log*"))
    assert logs, f"no install-time test log in {prefix / '.spack'}"
    assert any("libogrt self-check passed" in log.read_text(errors="replace") for log in logs)


def test_spack_test_run_passes(installed: tuple[Spack, Path]) -> None:
    spack, _ = installed
    run = spack("test", "run", "--alias", "ogrt-deploy", "ogrt")
    results = spack("test", "results", "-l", "ogrt-deploy").stdout
    assert "PASSED: Ogrt::test_settings" in results, run.stdout + results
    assert "PASSED: Ogrt::test_program_unchanged" in results, results
    assert "FAILED" not in results


@pytest.mark.parametrize("bad", ["server_port=70000", "server_port=abc", "jobid_var=1BAD"])
def test_bad_variant_values_are_rejected(installed: tuple[Spack, Path], bad: str) -> None:
    spack, _ = installed
    proc = spack("spec", "ogrt", bad, check=False, timeout=300)
    assert proc.returncode != 0
    name = bad.split("=")[0]
    assert f"invalid values for variant '{name}'" in proc.stderr + proc.stdout


def test_modulefile_role_finds_the_spack_installed_library(installed: tuple[Spack, Path],
                                                           tmp_path: Path) -> None:
    """roles/ogrt_modulefile with no library given asks this Spack (`spack location -i
    ogrt`); the deployed module then preloads the Spack-built library."""
    spack, prefix = installed
    root = tmp_path / "root"
    variables = {"ogrt_root": str(root), "ogrt_modulefile_library": "",
                 "ogrt_modulefile_spack": str(SPACK),
                 "ogrt_modulefile_spack_args": ["-C", str(spack.scope)]}
    proc = run_playbook(tmp_path / "run", variables, "--tags", "ogrt_modulefile",
                        extra_env=spack.env)
    assert proc.returncode == 0, proc.stdout[-4000:]
    lib = prefix / "lib" / "libogrt.so"
    modulefile = root / "opt" / "modulefiles" / "ogrt" / "0.1.0.lua"
    assert f'prepend_path("LD_PRELOAD", "{lib}", ":")' in modulefile.read_text()
    out = lmod_script(f"module use {root / 'opt' / 'modulefiles'}", "module load ogrt",
                      "OGRT_DEBUG_INFO=1 /bin/true")
    assert "OGRT server_host: collector.example" in out.stdout + out.stderr, out
