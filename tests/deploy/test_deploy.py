"""The whole deployment, for real: `ansible-playbook site.yml` (inventory localhost, connection
local) into a temp root with a space in its name, then the deployed daemon (deployed venv,
deployed config) receives the record of a program run under the deployed modulefile loaded
with real Lmod, using a libogrt.so installed the way Spack does (`make -C preload install`), and the
deployed `ogrt web` serves the deployed database."""
from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helpers import (REPO, changed_tasks, free_port, have, lmod_script,
                                  recap, run_playbook, snapshot_source)
from tests.report.conftest import write_records
from tests.report.records import dataset

JOB_VAR = "OGRT_DEPLOY_TEST_JOB"
STALE_MODULE = "deleted_since_last_build.py"
# [server] keys the role once had no variable for (issue 9, bug 3)
SERVER_EXTRAS = {"udp_rcvbuf": 8388608, "shutdown_timeout": 7.5, "max_connections_per_peer": 9}


@dataclass
class Deployment:
    tmp: Path
    root: Path
    lib: Path
    port: int
    variables: dict[str, Any]
    first: subprocess.CompletedProcess[str]

    @property
    def venv(self) -> Path:
        return self.root / "opt" / "ogrt" / "venv"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "ogrt" / "ogrt.conf"

    @property
    def modulefiles(self) -> Path:
        return self.root / "opt" / "modulefiles"

    @property
    def records_path(self) -> Path:
        return self.root / "var" / "lib" / "ogrt" / "records.jsonl"


def _snapshot_source(dest: Path) -> Path:
    """The project's snapshot, plus what an earlier setuptools build of this checkout left
    in it: a module since deleted."""
    snapshot_source(dest)
    stale = dest / "build" / "lib" / "ogrt" / STALE_MODULE
    stale.parent.mkdir(parents=True)
    stale.write_text("raise ImportError('a module deleted from the source')\n")
    return dest


def _install_preload(tmp: Path, port: int) -> Path:
    """Install libogrt.so like the Spack recipe: `make -C preload install PREFIX=...`."""
    prefix = tmp / "spack" / "ogrt-0.1.0"
    proc = subprocess.run(
        ["make", "-s", "-C", str(REPO / "preload"), "install", f"PREFIX={prefix}",
         f"BUILDDIR={tmp / 'preload-build'}", "SERVER_HOST=127.0.0.1", f"SERVER_PORT={port}",
         "TRANSPORT=tcp", f"JOBID_VAR={JOB_VAR}", "CONNECT_TIMEOUT_MS=1000"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"make -C preload install failed:\n{proc.stdout}\n{proc.stderr}"
    # a literal $LIB, as the modulefile and the docs use it: the loader expands it per process
    # (64-bit: lib/x86_64-linux-gnu); `make install` also makes a directory named $LIB for musl
    lib = prefix / "$LIB" / "libogrt.so"
    assert (prefix / "lib" / "x86_64-linux-gnu" / "libogrt.so").is_file() and lib.is_file()
    return lib


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    tmp = tmp_path_factory.mktemp("deploy")
    port, web_port = free_port(), free_port()
    lib = _install_preload(tmp, port)
    root = tmp / "root dir"
    user = os.environ.get("USER") or "root"
    variables: dict[str, Any] = {
        "ogrt_root": str(root),
        "ogrt_server_source": str(_snapshot_source(tmp / "source")),
        "ogrt_server_manage_user": False,
        "ogrt_server_build_isolation": False,  # the suite's venv has setuptools: no download
        "ogrt_server_user": user,
        "ogrt_server_group": user,
        "ogrt_server_config": {
            "server": {"address": "127.0.0.1", "port": port, "transports": ["tcp"],
                       **SERVER_EXTRAS},
            "metrics": {"address": None},  # removes the role's default endpoint
            "outputs": {
                "records": {"type": "jsonl", "path": str(root / "var/lib/ogrt/records.jsonl"),
                            "batch_records": 1, "flush_interval": 0.05, "fsync": "never"},
                "db": {"type": "sqlite"},
            },
            "web": {"address": f"127.0.0.1:{web_port}"},
        },
        "ogrt_server_web_enabled": True,
        "ogrt_modulefile_library": str(lib),
        "ogrt_modulefile_default": True,
    }
    first = run_playbook(tmp / "run1", variables)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    return Deployment(tmp, root, lib, port, variables, first)


def test_first_run_installs_everything(deployment: Deployment) -> None:
    d = deployment
    assert (d.venv / "bin" / "ogrt").is_file()
    assert d.config.is_file() and stat.S_IMODE(d.config.stat().st_mode) == 0o640
    unit = d.root / "etc" / "systemd" / "system" / "ogrt-server.service"
    assert f'ExecStart="{d.venv}/bin/ogrt" server --config "{d.config}"' in unit.read_text()
    assert (d.root / "var" / "lib" / "ogrt").is_dir()
    assert (d.modulefiles / "ogrt" / "0.1.0.lua").is_file()
    assert 'module_version("ogrt/0.1.0", "default")' in (
        d.modulefiles / "ogrt" / ".modulerc.lua").read_text()
    # Not the real root: the unit is installed, no service started, and the role says so.
    assert "no service was enabled or started" in d.first.stdout
    assert recap(d.first)["failed"] == 0


def test_wheel_is_built_outside_the_source(deployment: Deployment) -> None:
    """setuptools packs whatever its build directory holds: a module deleted from the source
    since an earlier build in <source>/build would ship again. The role builds elsewhere and
    leaves the source tree as it was."""
    source = Path(deployment.variables["ogrt_server_source"])
    installed = list(deployment.venv.glob("lib/python*/site-packages/ogrt"))
    assert installed and (installed[0] / "outputs" / "sqlbase.py").is_file()
    assert not (installed[0] / STALE_MODULE).exists()
    assert not (source / "ogrt.egg-info").exists()
    assert sorted(p.name for p in (source / "build").iterdir()) == ["lib"]


def test_deployed_config_is_the_sites_merged_over_the_roles(deployment: Deployment) -> None:
    """Regression (issue 9, bug 3): ogrt_server_config sets any [server] key (udp_rcvbuf,
    shutdown_timeout, max_connections_per_peer), a null removes the role's [metrics] default,
    and the role adds only state_dir; the deployed daemon reads the values."""
    d = deployment
    site = d.variables["ogrt_server_config"]
    assert tomllib.loads(d.config.read_text()) == {
        "server": {"state_dir": str(d.root / "var/lib/ogrt"), **site["server"]},
        "metrics": {}, "outputs": site["outputs"], "web": site["web"]}
    read = subprocess.run(
        [str(d.venv / "bin" / "python"), "-c",
         "import json, sys; from ogrt.config import load_config; c = load_config(sys.argv[1]); "
         "print(json.dumps({k: getattr(c.server, k) for k in sys.argv[2:]}), c.metrics.address, sep='\\n')",
         str(d.config), *SERVER_EXTRAS], capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    values, metrics = read.stdout.splitlines()
    assert json.loads(values) == SERVER_EXTRAS and metrics.strip() == "None"


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    again = run_playbook(deployment.tmp / "run2", deployment.variables)
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap(again)["changed"] == 0, changed_tasks(again)


def test_check_mode_changes_nothing_on_a_deployed_root(deployment: Deployment) -> None:
    check = run_playbook(deployment.tmp / "check", deployment.variables, "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check)["changed"] == 0, changed_tasks(check)


def test_check_mode_on_a_fresh_root_writes_nothing(deployment: Deployment) -> None:
    """--check works before anything exists, including the system-user path (which
    is only reported, not created)."""
    fresh = deployment.tmp / "fresh root"
    user = "ogrt-check-mode-nobody"
    variables = {**deployment.variables, "ogrt_root": str(fresh),
                 "ogrt_server_manage_user": True, "ogrt_server_user": user,
                 "ogrt_server_group": user,
                 "ogrt_server_config": {"outputs": {"db": {"type": "sqlite"}}}}
    check = run_playbook(deployment.tmp / "check-fresh", variables, "--check")
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check)["changed"] > 0
    assert "Create the daemon's system user" in "".join(changed_tasks(check))
    assert not fresh.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(user)


def test_config_rejected_by_check_config_is_not_installed(deployment: Deployment) -> None:
    """A bad key fails the play with the daemon's own message; the old file stays."""
    before = deployment.config.read_bytes()
    variables = {**deployment.variables, "ogrt_server_config": {"server": {"udp_rcvbuff": 1}}}
    run = run_playbook(deployment.tmp / "bad-key", variables)
    assert run.returncode != 0
    assert "failed to validate" in run.stdout, run.stdout[-3000:]
    assert "server.udp_rcvbuff: unknown key" in run.stdout, run.stdout[-3000:]
    assert deployment.config.read_bytes() == before


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the deployed daemon exited early"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"daemon not listening on {port} after {timeout}s")


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@contextmanager
def _running_daemon(venv: Path, config: Path, port: int, log_path: Path
                    ) -> Iterator[subprocess.Popen[bytes]]:
    """The deployed venv's `ogrt server --config <deployed ogrt.conf>`, as the unit runs it."""
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(venv / "bin" / "ogrt"), "server", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_listening(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture()
def deployed_daemon(deployment: Deployment) -> Iterator[subprocess.Popen[bytes]]:
    with _running_daemon(deployment.venv, deployment.config, deployment.port,
                         deployment.tmp / "daemon.log") as proc:
        yield proc


def test_program_under_module_load_reaches_the_deployed_daemon(
        deployment: Deployment, deployed_daemon: subprocess.Popen[bytes]) -> None:
    marker = f"ogrt-deploy-marker-{os.getpid()}"
    proc = lmod_script(
        f"module use '{deployment.modulefiles}'",
        "module load ogrt",
        'echo "LD_PRELOAD=$LD_PRELOAD OGRT_ACTIVE=$OGRT_ACTIVE"',
        f"{JOB_VAR}=job-4242 /bin/echo {marker}",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"LD_PRELOAD={deployment.lib} OGRT_ACTIVE=1" in proc.stdout
    assert f"{marker}\n" in proc.stdout  # the program's own output is unchanged
    deadline = time.monotonic() + 20
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        mine = [r for r in _records(deployment.records_path)
                if r.get("event") == "start" and marker in (r.get("args") or [])]
        if mine:
            break
        time.sleep(0.1)
    log = (deployment.tmp / "daemon.log").read_text(errors="replace")
    assert mine, f"no start record of /bin/echo {marker}; daemon log:\n{log[-3000:]}"
    record = mine[0]
    assert record["exe"].endswith("echo")
    assert record["job_id"] == "job-4242"
    assert record["peer"] == "127.0.0.1"


def test_module_unload_restores_ld_preload_exactly(deployment: Deployment) -> None:
    lines = [f"module use '{deployment.modulefiles}'"]
    befores = [None, "a.so", "/x/a.so b.so", "/x/a.so:/y/b.so", f"{deployment.lib}:/x/a.so"]
    for i, before in enumerate(befores):
        lines.append("unset LD_PRELOAD" if before is None else f"export LD_PRELOAD='{before}'")
        lines += ["module load ogrt 2>/dev/null",
                  f'echo "loaded{i}=${{LD_PRELOAD-<unset>}}|${{OGRT_ACTIVE-<unset>}}"',
                  "module unload ogrt 2>/dev/null",
                  f'echo "after{i}=${{LD_PRELOAD-<unset>}}|${{OGRT_ACTIVE-<unset>}}"']
    proc = lmod_script(*lines)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    lib = str(deployment.lib)
    assert out["loaded0"] == f"{lib}|1" and out["after0"] == "<unset>|<unset>"
    assert out["loaded1"] == f"{lib}:a.so|1" and out["after1"] == "a.so|<unset>"
    assert out["after2"] == "/x/a.so b.so|<unset>"
    assert out["loaded3"] == f"{lib}:/x/a.so:/y/b.so|1"
    assert out["after3"] == "/x/a.so:/y/b.so|<unset>"
    # the library was already preloaded by the user: Lmod's reference count keeps it
    assert out["after4"] == f"{lib}:/x/a.so|<unset>"


def test_module_conflicts_with_xalt_and_is_the_default(deployment: Deployment,
                                                       tmp_path: Path) -> None:
    xalt = tmp_path / "mf" / "xalt"
    xalt.mkdir(parents=True)
    (xalt / "3.0.lua").write_text('setenv("XALT_TEST", "1")\n')
    proc = lmod_script(f"module use '{deployment.modulefiles}'",
                       f"module use '{tmp_path / 'mf'}'",
                       "module --terse avail ogrt 2>&1",
                       "module load xalt",
                       "module load ogrt; echo rc=$?",
                       'echo "active=${OGRT_ACTIVE-<unset>}"')
    assert "ogrt/0.1.0" in proc.stdout
    assert "active=<unset>" in proc.stdout
    assert "cannot load module" in proc.stderr.lower() and "xalt" in proc.stderr, proc.stderr


@pytest.mark.skipif(not have("systemd-analyze"),
                    reason="systemd-analyze is not installed (Debian package systemd)")
@pytest.mark.parametrize("service", ["ogrt-server", "ogrt-web"])
def test_deployed_units_pass_systemd_analyze(deployment: Deployment, service: str) -> None:
    unit = deployment.root / "etc" / "systemd" / "system" / f"{service}.service"
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _get_metrics(port: int, timeout: float = 30) -> str:
    """The daemon's /metrics text (the endpoint may open just after the TCP listener)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                return reply.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_roles_work_from_a_playbook_in_another_directory(deployment: Deployment,
                                                         tmp_path: Path) -> None:
    """Regression (issue 9, bug 4): a site's own playbook outside the checkout uses the roles
    through ANSIBLE_ROLES_PATH; each role finds its own templates and the ogrt_server role
    builds the checkout it belongs to. The deployed daemon accepts its config and runs."""
    assert REPO not in tmp_path.parents
    site = tmp_path / "site playbooks"
    site.mkdir()
    (site / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {json.dumps(sys.executable)}\n")
    (site / "deploy-ogrt.yml").write_text(
        "- name: OGRT from the site's own playbook\n  hosts: all\n"
        "  roles:\n    - role: ogrt_server\n    - role: ogrt_modulefile\n")
    root = tmp_path / "site root"
    port, metrics_port = free_port(), free_port()
    while metrics_port == port:
        metrics_port = free_port()
    user = os.environ.get("USER") or "root"
    variables = {
        "ogrt_root": str(root), "ogrt_server_manage_user": False,
        "ogrt_server_user": user, "ogrt_server_group": user,
        "ogrt_server_build_isolation": False,
        "ogrt_server_config": {
            "server": {"address": "127.0.0.1", "port": port, "transports": ["tcp"]},
            "metrics": {"address": f"127.0.0.1:{metrics_port}"}},
        "ogrt_modulefile_library": str(deployment.lib),
    }
    run = run_playbook(tmp_path / "run", variables, playbook=site / "deploy-ogrt.yml",
                       inventory=site / "hosts.yml", cwd=site,
                       extra_env={"ANSIBLE_ROLES_PATH": str(REPO / "roles")})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    venv, config = root / "opt/ogrt/venv", root / "etc/ogrt/ogrt.conf"
    state = root / "var/lib/ogrt"
    assert (root / "opt/modulefiles/ogrt/0.1.0.lua").is_file()
    assert (root / "etc/systemd/system/ogrt-server.service").is_file()
    # the role sets only the state directory and its metrics endpoint; the rest is the site's
    assert tomllib.loads(config.read_text()) == {
        "server": {"state_dir": str(state), **variables["ogrt_server_config"]["server"]},
        "metrics": {"address": f"127.0.0.1:{metrics_port}"}}
    check = subprocess.run([str(venv / "bin" / "ogrt"), "check-config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "outputs: default (sqlite)" in check.stdout  # the daemon's own default output
    with _running_daemon(venv, config, port, tmp_path / "daemon.log"):
        # the running daemon serves its metrics, with the default output among them
        assert 'ogrt_output_persisted_total{output="default"}' in _get_metrics(metrics_port)


def test_deployed_dashboard_serves_the_deployed_database(deployment: Deployment) -> None:
    """ogrt_server_web_enabled: the web extra in the deployed venv, its own unit, and the
    deployed `ogrt web` serving the deployed config's database over loopback (the second
    run and --check above cover its tasks too)."""
    d = deployment
    port = int(d.variables["ogrt_server_config"]["web"]["address"].rsplit(":", 1)[1])
    unit = (d.root / "etc/systemd/system/ogrt-web.service").read_text()
    assert f'ExecStart="{d.venv}/bin/ogrt" web --config "{d.config}"' in unit
    # the database the deployed daemon writes (the role's state dir), with records in it
    write_records("sqlite", {"type": "sqlite", "path": str(d.root / "var/lib/ogrt/db.sqlite")}, dataset())
    proc = subprocess.Popen([str(d.venv / "bin/ogrt"), "web", "--config", str(d.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs?format=csv", timeout=30) as reply:
            assert reply.status == 200 and "job-1" in reply.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
