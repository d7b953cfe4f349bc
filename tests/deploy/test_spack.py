"""package.py with a real Spack: a repository made with `spack repo create`, the recipe installed
from the working tree without network (externals for the compiler and gmake, the working tree as
the `main` version's source via dev_path), then the installed library's OGRT_DEBUG_INFO output
shows the variants, and `spack test run ogrt` passes. The variants' checks are compared with
preload/genconfig.sh's on values at and beyond every bound of preload/settings.tsv.

Spack: OGRT_TEST_SPACK=/path/to/bin/spack, else the pruned snapshot `../shared/spack/` beside
the checkout (read its README.md), else `spack` on PATH. Spack runs with SPACK_PYTHON (default:
this interpreter, which needs clingo: `pip install -e '.[test]'` brings it). Spack 1.x builds its
compiler-wrapper package from source: it is served from a local mirror made of
OGRT_TEST_SPACK_COMPILER_WRAPPER (a checkout of github.com/spack/compiler-wrapper), else of
`../shared/spack/compiler-wrapper`; without either the tests skip (they use no network).
Nothing is written outside the test's temp dir (user config, caches, install tree, bytecode)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helpers import REPO, lmod_script, run_playbook
from tests.fixtures.preload import PRELOAD_DIR, gensettings
from tests.fixtures.spack import COMPILER_WRAPPER, SNAPSHOT_SPACK, SPACK, SPACK_PYTHON, Spack, has_clingo

if SPACK is None:
    pytestmark = pytest.mark.skip(
        reason=f"Spack not found: no {SNAPSHOT_SPACK} beside the checkout, no OGRT_TEST_SPACK, "
               "no spack on PATH")
elif COMPILER_WRAPPER is None:
    pytestmark = pytest.mark.skip(
        reason="no source of Spack's compiler-wrapper to serve offline: no ../shared/spack/"
               "compiler-wrapper beside the checkout, no OGRT_TEST_SPACK_COMPILER_WRAPPER")
elif not has_clingo(SPACK_PYTHON):
    pytestmark = pytest.mark.skip(
        reason=f"{SPACK_PYTHON} cannot import clingo, which Spack needs (pip install -e '.[test]')")

SETTINGS = gensettings().read_table(PRELOAD_DIR / "settings.tsv")

VARIANTS = ["server_host=collector.example,[fd00::7]:7998,backup.example:7997", "server_port=7999",
            "jobid_var=PBS_JOBID", "transport=relay", "relay_socket=/run/site-ogrt/relay.sock",
            "env_whitelist=HOME,PBS_O_QUEUE", "~send_cmdline",
            "connect_timeout_ms=350", "backoff_seconds=17",
            "filter_regexps=^/opt/my apps/[^/]+/(x|y){2}\\.sh$:^/nonexistent/", "+allow_server_env"]
# Spack keeps a multi-valued variant's values sorted: the list arrives in that order
EXPECTED = ["OGRT server_host: [fd00::7]:7998,backup.example:7997,collector.example", "OGRT server_port: 7999",
            "OGRT jobid_var: PBS_JOBID", "OGRT transport: relay", "OGRT relay_socket: /run/site-ogrt/relay.sock",
            "OGRT env_whitelist: HOME,PBS_O_QUEUE", "OGRT send_cmdline: no",
            "OGRT connect_timeout_ms: 350", "OGRT backoff_seconds: 17",
            "OGRT filter_regexps: ^/opt/my apps/[^/]+/(x|y){2}\\.sh$:^/nonexistent/",
            "OGRT allow_server_env: yes"]


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _mirror_compiler_wrapper(spack: Spack) -> None:
    """Serve COMPILER_WRAPPER's cc.sh as every compiler-wrapper version's source tarball in a
    local mirror (content-addressed layout)."""
    src = Path(str(COMPILER_WRAPPER))
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


@pytest.fixture(scope="module")
def spack(tmp_path_factory: pytest.TempPathFactory) -> Spack:
    """A Spack whose config, caches and install tree live in a temp dir, with the recipe in a
    repository of its own, the compiler and gmake as externals and compiler-wrapper mirrored."""
    tmp = tmp_path_factory.mktemp("spack")
    spack = Spack(tmp)
    spack("repo", "create", str(tmp / "repo"), "ogrtsite")
    (repo_yaml,) = (tmp / "repo").rglob("repo.yaml")
    packages = repo_yaml.parent / "packages" / "ogrt"
    packages.mkdir(parents=True)
    shutil.copy2(REPO / "package.py", packages / "package.py")
    _write(spack.scope / "repos.yaml", f"repos:\n  ogrtsite: {repo_yaml.parent}\n")
    spack.local_config("  build_jobs: 2\n")
    spack("compiler", "find", "--scope", "user")
    spack("external", "find", "--scope", "user", "--not-buildable", "gmake")
    _mirror_compiler_wrapper(spack)
    return spack


@pytest.fixture(scope="module")
def installed(spack: Spack) -> tuple[Spack, Path]:
    # The working tree is the source of the `main` version (no fetch): a clean copy of preload/.
    src = spack.tmp / "src"
    shutil.copytree(REPO / "preload", src / "preload",
                    ignore=shutil.ignore_patterns("build", "*.o", "*.so", "*.tmp", "__pycache__"))
    # --no-checksum: the mirrored compiler-wrapper tarballs are made here, not the released ones
    spack("install", "--test=root", "--no-checksum", "ogrt@main", f"dev_path={src}", *VARIANTS)
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


@pytest.mark.parametrize("bad", ["server_port=70000", "server_port=abc", "jobid_var=1BAD",
                                 "connect_timeout_ms=60001", "connect_timeout_ms=100000"])
def test_bad_variant_values_are_refused_at_concretization(spack: Spack, bad: str) -> None:
    """Refused by `spack spec` (nothing is built); connect_timeout_ms above genconfig.sh's bound
    used to concretize and then fail the build."""
    proc = spack("spec", "ogrt", bad, check=False, timeout=300)
    assert proc.returncode != 0
    name = bad.split("=")[0]
    assert f"invalid values for variant '{name}'" in proc.stderr + proc.stdout


def _probes() -> dict[str, list[str]]:
    """Values at and beyond the bounds of every setting of settings.tsv that has a checked value
    (booleans and choices are Spack's own). No ',' and no "'" in regexps: Spack cannot pass them."""
    probes: dict[str, list[str]] = {}
    for s in SETTINGS:
        lo, _, hi = s.bounds.partition("..")
        if s.kind == "uint":
            values = [lo, hi, str(int(hi) + 1), "0" + hi, "1e3", "-1", str(int(lo) - 1)]
        elif s.kind == "host":
            values = ["a" * int(lo), "h" * int(hi), "h" * (int(hi) + 1), "a b", "::1", "x/y"]
        elif s.kind in ("envname", "envnames"):
            values = ["PBS_JOBID", "_x9", "1BAD", "A-B", "A B", "Ä"]
            values += ["HOME,PATH", "HOME,1BAD"] if s.kind == "envnames" else []
        elif s.kind == "regexps":
            values = ["^/usr/lib/[[:alnum:]]+/:^/opt/x$", "a b", "tab\there", "bell\a"]
        else:
            continue
        probes[s.variant] = [v for v in values if v]
    return probes


def test_variant_checks_agree_with_genconfig(spack: Spack, tmp_path: Path) -> None:
    """Each probe value is refused by the recipe's variant exactly when genconfig.sh refuses it
    as the make variable: one set of bounds, applied before the build."""
    probes = _probes()
    script = tmp_path / "verdicts.py"
    _write(script, "import json, sys\n"
                   "import spack.error, spack.repo, spack.variant\n"
                   "cls = spack.repo.PATH.get_pkg_class('ogrt')\n"
                   "out = {}\n"
                   "for name, values in json.load(open(sys.argv[1])).items():\n"
                   "    ((_, definition),) = cls.variant_definitions(name)\n"
                   "    for value in values:\n"
                   "        v = spack.variant.VariantValue.from_string_or_bool(name, value)\n"
                   "        try:\n"
                   "            definition.validate_or_raise(v, 'ogrt')\n"
                   "            out[name + '=' + value] = True\n"
                   "        except spack.error.SpecError:\n"
                   "            out[name + '=' + value] = False\n"
                   "print(json.dumps(out))\n")
    (tmp_path / "probes.json").write_text(json.dumps(probes))
    spack_says = json.loads(spack("python", str(script), str(tmp_path / "probes.json")).stdout)
    make_says = {}
    for name, values in probes.items():
        for value in values:
            proc = subprocess.run([str(PRELOAD_DIR / "genconfig.sh"), str(tmp_path / "c.h"),
                                   f"{name.upper()}={value}"], capture_output=True, text=True)
            make_says[f"{name}={value}"] = proc.returncode == 0
    assert spack_says == make_says
    assert set(make_says.values()) == {True, False}


def test_defaults_are_genconfigs_defaults(spack: Spack, tmp_path: Path) -> None:
    """The make variables of the default spec give the same config.h as no make variable."""
    script = tmp_path / "defaults.py"
    _write(script, "import json, spack.concretize\n"
                   "spec = spack.concretize.concretize_one('ogrt')\n"
                   "print(json.dumps(spec.package.make_variables))\n")
    make_variables = json.loads(spack("python", str(script)).stdout.splitlines()[-1])
    assert [v.split("=")[0] for v in make_variables] == [s.name for s in SETTINGS]
    genconfig = str(PRELOAD_DIR / "genconfig.sh")
    subprocess.run([genconfig, str(tmp_path / "spack.h"), *make_variables], check=True)
    subprocess.run([genconfig, str(tmp_path / "make.h")], check=True)
    assert (tmp_path / "spack.h").read_text() == (tmp_path / "make.h").read_text()


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
    lib = prefix / "$LIB" / "libogrt.so"  # a literal $LIB: the loader picks the 64- or 32-bit build
    modulefile = root / "opt" / "modulefiles" / "ogrt" / "0.1.0.lua"
    assert f'prepend_path("LD_PRELOAD", "{lib}", ":")' in modulefile.read_text()
    out = lmod_script(f"module use {root / 'opt' / 'modulefiles'}", "module load ogrt",
                      "OGRT_DEBUG_INFO=1 /bin/true")
    assert EXPECTED[0] in (out.stdout + out.stderr).splitlines(), out


def test_census_attributes_the_spack_installed_library(installed: tuple[Spack, Path], ogrt_server: Any,
                                                       tmp_path: Path) -> None:
    """A process preloading the Spack-built libogrt.so, recorded by a real `ogrt server`:
    `ogrt census update --spack-root` over this Spack's install tree attributes it to
    ogrt@main with the hash Spack gave it."""
    from tests.census.helpers import census_update, packages, report
    from tests.fixtures.preload import preload_env

    spack, prefix = installed
    lib = prefix / "lib" / "libogrt.so"
    db = str(tmp_path / "ogrt.sqlite")
    srv = ogrt_server(jsonl=False, extra_outputs=f'[outputs.db]\ntype = "sqlite"\npath = "{db}"\n')
    # +allow_server_env: OGRT_SERVER points the library (built for collector.example) here
    env = preload_env(lib, srv.port, PBS_JOBID="spack-census-1")
    subprocess.run(["/bin/true"], env=env, check=True, timeout=60)
    assert srv.stop() == 0
    hash_ = spack("find", "--format", "{hash}", "ogrt").stdout.strip()
    out = census_update(db, "--spack-root", str(spack.tmp / "opt"))
    assert "spack" in out and "added" in out, out
    got = packages(report(db, "software", "--source", "spack"))
    ogrt = got[("spack", "ogrt")]
    assert (ogrt["version"], ogrt["hash"], ogrt["processes"]) == ("main", hash_, 1), got
    libs = report(db, "libraries", "--path", str(lib))
    assert libs and libs[0]["processes"] == 1
