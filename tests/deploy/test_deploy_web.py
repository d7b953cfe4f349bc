"""`ogrt web` deployed for real by the ogrt_server role (ogrt_server_web_enabled): the web extra
in the deployed venv, its own unit, and the deployed `ogrt web` serving the deployed config's
database over loopback. A second run changes nothing."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.helpers import changed_tasks, free_port, have, local_deploy_vars, recap, run_playbook
from tests.report.conftest import write_records
from tests.report.records import dataset


@pytest.fixture(scope="module")
def web_deployment(tmp_path_factory: pytest.TempPathFactory, ogrt_wheel: Path) -> tuple[Path, dict, int]:
    tmp = tmp_path_factory.mktemp("deploy-web")
    root = tmp / "root"
    web_port = free_port()
    variables = {
        **local_deploy_vars(root, ogrt_wheel),
        "ogrt_server_web_enabled": True,
        "ogrt_server_config": {
            "server": {"address": "127.0.0.1", "port": free_port(), "transports": ["tcp"]},
            "outputs": {"db": {"type": "sqlite"}},
            "web": {"address": f"127.0.0.1:{web_port}"},
        },
    }
    first = run_playbook(tmp / "run1", variables, "--tags", "ogrt_server")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    return tmp, variables, web_port


def test_deployed_dashboard_serves_the_deployed_database(web_deployment: tuple[Path, dict, int]) -> None:
    tmp, variables, port = web_deployment
    root = Path(variables["ogrt_root"])
    venv, conf = root / "opt/ogrt/venv", root / "etc/ogrt/ogrt.conf"
    unit = (root / "etc/systemd/system/ogrt-web.service").read_text()
    assert f'ExecStart="{venv}/bin/ogrt" web --config "{conf}"' in unit
    # the database the deployed daemon would write (the role's state dir), with records in it
    write_records("sqlite", {"type": "sqlite", "path": str(root / "var/lib/ogrt/db.sqlite")}, dataset())
    proc = subprocess.Popen([str(venv / "bin/ogrt"), "web", "--config", str(conf)],
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


@pytest.mark.skipif(not have("systemd-analyze"),
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_deployed_web_unit_passes_systemd_analyze(web_deployment: tuple[Path, dict, int]) -> None:
    unit = Path(web_deployment[1]["ogrt_root"]) / "etc/systemd/system/ogrt-web.service"
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_second_run_changes_nothing(web_deployment: tuple[Path, dict, int]) -> None:
    tmp, variables, _ = web_deployment
    again = run_playbook(tmp / "run2", variables, "--tags", "ogrt_server")
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap(again)["changed"] == 0, changed_tasks(again)
