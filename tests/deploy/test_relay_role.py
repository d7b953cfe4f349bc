"""roles/ogrt_relay with the real ansible-playbook (site.yml, --tags ogrt_relay): what it writes
and with which modes, idempotence, --check, argument checks, the unit's hardening (and
systemd-analyze); then the deployed config runs a real `ogrt relay` that delivers to a real
collector through a real munged."""
from __future__ import annotations

import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO, changed_tasks, have, local_inventory, recap, render, run_playbook
from tests.deploy.test_templates import _service_keys
from tests.fixtures.server import frame, free_port, start_msg
from tests.relay.helpers import relay_server, send


def _play(tmp: Path, variables: dict, *args: str) -> subprocess.CompletedProcess[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    return run_playbook(tmp / "run", variables, "--tags", "ogrt_relay", *args, inventory=local_inventory(tmp, "ogrt_relays"))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, munged) -> tuple[Path, dict, Path]:
    """One deployment into a private root; its relay's first collector is the relay port a test
    starts a collector on (variables["port"]), its munged a real one (variables["munge"])."""
    tmp = tmp_path_factory.mktemp("relay-role")
    root = tmp / "root"
    port, m = free_port(udp_too=False), munged()
    variables = {"ogrt_root": str(root), "ogrt_relay_manage_user": False, "ogrt_relay_user": "root",
                 "ogrt_relay_group": "root", "ogrt_relay_install_package": False,
                 "ogrt_relay_venv": str(REPO / ".venv"), "ogrt_relay_upstream": [f"127.0.0.1:{port}", "[::1]:2"],
                 "ogrt_relay_munge_socket": m.socket,
                 "ogrt_relay_config": {"relay": {"batch_records": 50, "metrics": "127.0.0.1:1"}}}
    first = _play(tmp / "first", variables)
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
    assert recap(first)["changed"] > 0
    return root, {**variables, "port": port, "munge": m.socket}, tmp


def test_writes_config_unit_and_directories(deployed) -> None:
    from ogrt.config import load_config

    root, variables, _ = deployed
    conf = load_config(root / "etc" / "ogrt" / "relay.conf")
    assert conf.relay.socket == f"{root}/run/ogrt/relay.sock"
    assert conf.relay.upstream == (("127.0.0.1", variables["port"]), ("::1", 2)) and conf.relay.batch_records == 50
    assert conf.relay.spool_dir == root / "var" / "spool" / "ogrt-relay"
    assert stat.S_IMODE((root / "run" / "ogrt").stat().st_mode) == 0o755
    assert stat.S_IMODE(conf.relay.spool_dir.stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "etc" / "ogrt" / "relay.conf").stat().st_mode) == 0o640
    sysctl = (root / "etc" / "sysctl.d" / "60-ogrt-relay.conf").read_text().splitlines()
    assert sysctl[1:] == ["net.unix.max_dgram_qlen = 4096"]
    service = _service_keys((root / "etc" / "systemd" / "system" / "ogrt-relay.service").read_text())
    assert shlex.split(service["ExecStart"]) == [str(REPO / ".venv" / "bin" / "ogrt"), "relay", "--config",
                                                 str(root / "etc" / "ogrt" / "relay.conf")]
    assert "RuntimeDirectory" not in service  # the socket is not under the real /run


def test_second_run_and_check_mode_change_nothing(deployed) -> None:
    root, variables, tmp = deployed
    variables = {k: v for k, v in variables.items() if k not in ("port", "munge")}
    again = _play(tmp / "again", variables)
    assert again.returncode == 0 and recap(again)["changed"] == 0, changed_tasks(again)
    check = _play(tmp / "check", variables, "--check")
    assert check.returncode == 0 and recap(check)["changed"] == 0, changed_tasks(check)


@pytest.mark.parametrize("bad", [{"ogrt_relay_upstream": []}, {"ogrt_relay_manage_user": "maybe"}])
def test_bad_variables_fail_before_anything_is_written(deployed, bad) -> None:
    root, variables, tmp = deployed
    variables = {k: v for k, v in variables.items() if k not in ("port", "munge")}
    fresh = tmp / f"bad-{len(list(tmp.glob('bad-*')))}"
    proc = _play(fresh, {**variables, "ogrt_root": str(fresh / "root"), **bad})
    assert proc.returncode != 0
    assert not (fresh / "root" / "etc" / "ogrt" / "relay.conf").exists()


def test_unit_is_hardened_and_owns_its_runtime_directory(tmp_path: Path) -> None:
    variables = {"ogrt_relay_user": "ogrt-relay", "ogrt_relay_group": "ogrt-relay",
                 "ogrt_relay_venv": str(tmp_path / "v e n v"), "ogrt_relay_config_file": "/etc/ogrt/relay.conf",
                 "ogrt_relay_socket_path": "/run/ogrt/relay.sock", "ogrt_relay_spool_path": "/var/spool/ogrt-relay",
                 "ogrt_relay_runtime_dir": "ogrt"}
    text = render("ogrt_relay", "ogrt-relay.service.j2", variables)
    service = _service_keys(text)
    assert service["User"] == "ogrt-relay" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["CapabilityBoundingSet"] == ""
    assert service["RuntimeDirectory"] == "ogrt" and service["RuntimeDirectoryMode"] == "0755"
    assert service["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert service["ReadWritePaths"] == '-"/run/ogrt" "/var/spool/ogrt-relay"'
    if have("systemd-analyze"):
        venv = tmp_path / "v e n v"
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "ogrt").write_text("#!/bin/sh\nexit 0\n")
        (venv / "bin" / "ogrt").chmod(0o755)
        unit = tmp_path / "ogrt-relay.service"
        unit.write_text(render("ogrt_relay", "ogrt-relay.service.j2", {**variables, "ogrt_relay_user": "root",
                                                                        "ogrt_relay_group": "root"}))
        proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deployed_relay_delivers(deployed, ogrt_server) -> None:
    root, variables, _ = deployed
    srv = relay_server(ogrt_server, variables["munge"], relay_port=variables["port"])
    root.chmod(0o755)
    relay = subprocess.Popen([sys.executable, "-m", "ogrt", "relay", "--config", str(root / "etc/ogrt/relay.conf")],
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "ogrt relay ready" in relay.stderr.readline() + relay.stderr.readline()
        sock = root / "run" / "ogrt" / "relay.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o666
        send(str(sock), [frame(12, start_msg())])
        [rec] = srv.records(1)
        assert rec["verified"] is True
    finally:
        relay.terminate()
        relay.wait(30)
