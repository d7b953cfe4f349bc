"""Scaling out deployed for real by the ogrt_server role: a collector whose ogrt.conf holds a
`nats` output (servers list, credentials with quotes and backslashes) and `ogrt sink`
(ogrt_server_sink_enabled) with sink.conf merged from ogrt_server_sink_config, both validated
by the deployed `ogrt check-config`, the sink's own hardened unit. The deployed processes
(deployed venv, deployed configs) carry a record through a real nats-server into the sink's
jsonl file. A second run and --check change nothing; a bad sink config or nats output is
refused and the old file stays; on a sink-only host (ogrt_server_collector_enabled false) no
collector part is written."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helpers import changed_tasks, free_port, have, local_deploy_vars, recap, run_playbook
from tests.fixtures.nats import NatsCluster, find_nats_server
from tests.fixtures.server import end_msg, frame, start_msg

ODD_PASSWORD = 'p"w\\d \u00fc'  # quote, backslash, space, non-ASCII: TOML-escaped by ogrt_toml


@dataclass
class SinkDeployment:
    tmp: Path
    root: Path
    nats: NatsCluster
    port: int
    variables: dict[str, Any]

    @property
    def venv(self) -> Path:
        return self.root / "opt/ogrt/venv"

    @property
    def sink_conf(self) -> Path:
        return self.root / "etc/ogrt/sink.conf"

    @property
    def records(self) -> Path:
        return self.root / "var/lib/ogrt-sink/records.jsonl"


@pytest.fixture(scope="module")
def sink_deployment(tmp_path_factory: pytest.TempPathFactory, ogrt_wheel: Path) -> Iterator[SinkDeployment]:
    binary = find_nats_server()
    if binary is None:
        pytest.skip("nats-server is not installed (Debian package nats-server)")
    tmp = tmp_path_factory.mktemp("deploy-sink")
    root = tmp / "root"
    nats = NatsCluster(binary, size=1)  # its port is known now; it runs from the first test on
    port = free_port()
    variables: dict[str, Any] = {
        **local_deploy_vars(root, ogrt_wheel),
        "ogrt_server_sink_enabled": True,
        "ogrt_server_config": {
            "server": {"address": "127.0.0.1", "port": port, "transports": ["tcp"]},
            "metrics": {"address": None},
            "outputs": {"js": {"type": "nats", "servers": nats.urls, "replicas": 1,
                               "user": "ogrt", "password": ODD_PASSWORD,
                               "batch_records": 1, "flush_interval": 0.05}},
        },
        "ogrt_server_sink_config": {
            "source": {"servers": nats.urls, "user": "ogrt", "password": ODD_PASSWORD, "batch": 50},
            "metrics": {"address": f"127.0.0.1:{free_port()}"},
            "outputs": {"files": {"type": "jsonl", "path": str(root / "var/lib/ogrt-sink/records.jsonl")}},
        },
    }
    first = run_playbook(tmp / "run1", variables, "--tags", "ogrt_server")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    try:
        yield SinkDeployment(tmp, root, nats, port, variables)
    finally:
        nats.destroy()


def test_sink_conf_is_the_sites_merged_over_the_roles(sink_deployment: SinkDeployment) -> None:
    d = sink_deployment
    site = d.variables["ogrt_server_sink_config"]
    assert stat.S_IMODE(d.sink_conf.stat().st_mode) == 0o640
    assert tomllib.loads(d.sink_conf.read_text()) == {
        "sink": {"state_dir": str(d.root / "var/lib/ogrt-sink")},
        "source": {"type": "nats", **site["source"]},
        "metrics": site["metrics"], "outputs": site["outputs"]}
    js = tomllib.loads((d.root / "etc/ogrt/ogrt.conf").read_text())["outputs"]["js"]
    assert js["servers"] == d.nats.urls and js["password"] == ODD_PASSWORD
    state = d.root / "var/lib/ogrt-sink"
    assert state.is_dir() and stat.S_IMODE(state.stat().st_mode) == 0o750


def test_sink_unit_runs_the_deployed_sink_hardened(sink_deployment: SinkDeployment) -> None:
    d = sink_deployment
    unit = (d.root / "etc/systemd/system/ogrt-sink.service").read_text()
    assert f'ExecStart="{d.venv}/bin/ogrt" sink --config "{d.sink_conf}"' in unit
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n",
                "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "UMask=0027",
                f'ReadWritePaths="{d.root}/var/lib/ogrt-sink"'):
        assert key in unit, key
    assert (d.root / "etc/systemd/system/ogrt-server.service").is_file()  # the collector too


@pytest.mark.skipif(not have("systemd-analyze"),
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_deployed_sink_unit_passes_systemd_analyze(sink_deployment: SinkDeployment) -> None:
    unit = sink_deployment.root / "etc/systemd/system/ogrt-sink.service"
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def test_record_flows_through_the_deployed_collector_nats_and_sink(sink_deployment: SinkDeployment) -> None:
    d = sink_deployment
    d.nats.start_all()
    ogrt = str(d.venv / "bin/ogrt")
    collector = _start([ogrt, "server", "--config", str(d.root / "etc/ogrt/ogrt.conf")], d.tmp / "collector.log")
    sink = _start([ogrt, "sink", "--config", str(d.sink_conf)], d.tmp / "sink.log")
    try:
        deadline = time.monotonic() + 60
        start = start_msg(args=[b"deployed-sink-marker"])
        data = frame(12, start) + frame(13, end_msg(uuid=start.uuid, pid=start.pid))
        while True:  # the collector listens once ready
            assert collector.poll() is None, (d.tmp / "collector.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", d.port), timeout=1) as conn:
                    conn.sendall(data)
                break
            except OSError:
                assert time.monotonic() < deadline, "the deployed collector never listened"
                time.sleep(0.2)
        while len(_lines(d.records)) < 2:
            assert sink.poll() is None, (d.tmp / "sink.log").read_text()
            assert time.monotonic() < deadline, (d.tmp / "sink.log").read_text()
            time.sleep(0.2)
        records = _lines(d.records)
        assert sorted(r["event"] for r in records) == ["end", "start"]
        assert records[0]["args"] == ["deployed-sink-marker"] or records[1]["args"] == ["deployed-sink-marker"]
    finally:
        assert _stop(sink) == 0, (d.tmp / "sink.log").read_text()
        assert _stop(collector) == 0


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        return []


def test_second_run_and_check_mode_change_nothing(sink_deployment: SinkDeployment) -> None:
    d = sink_deployment
    again = run_playbook(d.tmp / "run2", d.variables, "--tags", "ogrt_server")
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap(again)["changed"] == 0, changed_tasks(again)
    check = run_playbook(d.tmp / "check", d.variables, "--tags", "ogrt_server", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check)["changed"] == 0, changed_tasks(check)


def test_bad_sink_config_is_refused_and_not_installed(sink_deployment: SinkDeployment) -> None:
    d = sink_deployment
    before = d.sink_conf.read_bytes()
    bad = {**d.variables["ogrt_server_sink_config"], "source": {"servers": []}}
    run = run_playbook(d.tmp / "bad", {**d.variables, "ogrt_server_sink_config": bad}, "--tags", "ogrt_server")
    assert run.returncode != 0
    assert "failed to validate" in run.stdout, run.stdout[-3000:]
    assert "source.servers: must list at least one server" in run.stdout, run.stdout[-3000:]
    assert d.sink_conf.read_bytes() == before


def test_bad_nats_output_is_refused_and_not_installed(sink_deployment: SinkDeployment) -> None:
    d = sink_deployment
    conf = d.root / "etc/ogrt/ogrt.conf"
    before = conf.read_bytes()
    site = d.variables["ogrt_server_config"]
    bad = {**site, "outputs": {"js": {**site["outputs"]["js"], "replicas": 3}}}  # one server listed
    run = run_playbook(d.tmp / "bad-nats", {**d.variables, "ogrt_server_config": bad}, "--tags", "ogrt_server")
    assert run.returncode != 0
    assert "outputs.js.replicas: 3 replicas need at least 3 servers" in run.stdout, run.stdout[-3000:]
    assert conf.read_bytes() == before


def test_sink_only_host_in_check_mode_writes_no_collector_part(sink_deployment: SinkDeployment) -> None:
    d = sink_deployment
    fresh = d.tmp / "sink-only root"
    variables = {**d.variables, "ogrt_root": str(fresh), "ogrt_server_collector_enabled": False}
    check = run_playbook(d.tmp / "sink-only", variables, "--tags", "ogrt_server", "--check")
    assert check.returncode == 0, check.stdout[-4000:]
    changed = "".join(changed_tasks(check))
    assert "Write sink.conf" in changed and "Install the sink's systemd unit" in changed
    assert "Write ogrt.conf" not in changed and "Install the systemd unit]" not in changed
    assert not fresh.exists()
