"""Config validation: every bad key is named, with why; `ogrt check-config` and the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ogrt import __version__
from ogrt.config import ConfigError, default_state_dir, load_config, parse_config
from ogrt.errors import ConfigError as SharedConfigError


def _ogrt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ogrt", *args], capture_output=True, text=True, timeout=60)


def test_defaults(tmp_path: Path) -> None:
    c = parse_config({"server": {"state_dir": str(tmp_path)}})
    assert c.server.port == 7971 and c.server.transports == ("tcp", "udp") and c.server.workers == 1
    assert c.server.max_frame_bytes == 4 << 20 and c.metrics.address is None
    assert [(o.name, o.type) for o in c.outputs] == [("default", "sqlite")]
    assert c.outputs[0].options["path"] == str(tmp_path / "ogrt.sqlite")
    assert load_config(None).server.state_dir == default_state_dir()


def test_file_outputs_default_to_state_dir(tmp_path: Path) -> None:
    c = parse_config({"server": {"state_dir": str(tmp_path)},
                      "outputs": {"default": {"type": "sqlite"}, "lines": {"type": "jsonl"}, "db2": {"type": "sqlite"}}})
    paths = {o.name: o.options["path"] for o in c.outputs}
    assert paths == {"default": str(tmp_path / "ogrt.sqlite"), "lines": str(tmp_path / "lines.jsonl"),
                     "db2": str(tmp_path / "db2.sqlite")}


def test_full_config(tmp_path: Path) -> None:
    p = tmp_path / "ogrt.conf"
    p.write_text(f"""
[server]
address = "::"
port = 7000
transports = ["udp"]
workers = 3
idle_timeout = 5
state_dir = "{tmp_path}"
log_level = "DEBUG"
[metrics]
address = "[::1]:9000"
[spool]
max_bytes = 1000
[outputs.lines]
type = "jsonl"
path = "{tmp_path}/r.jsonl"
[outputs.nothing]
type = "null"
""")
    c = load_config(p)
    assert c.server.address == "::" and c.server.transports == ("udp",) and c.server.idle_timeout == 5.0
    assert c.server.log_level == "debug" and c.metrics.address == ("::1", 9000) and c.spool.max_bytes == 1000
    assert [(o.name, o.type) for o in c.outputs] == [("lines", "jsonl"), ("nothing", "null")]
    with pytest.raises(AttributeError):
        c.server.port = 1  # type: ignore[misc]  # frozen


@pytest.mark.parametrize("data, key, why", [
    ({"server": {"port": 70000}}, "server.port", "between"),
    ({"server": {"port": "7971"}}, "server.port", "must be an integer"),
    ({"server": {"workers": True}}, "server.workers", "must be an integer"),
    ({"server": {"transports": ["tcp", "sctp"]}}, "server.transports", "sctp"),
    ({"server": {"address": "localhost"}}, "server.address", "IP address"),
    ({"server": {"idle_timeout": 0}}, "server.idle_timeout", ">="),
    ({"server": {"log_level": "loud"}}, "server.log_level", "one of"),
    ({"server": {"bogus": 1}}, "server.bogus", "unknown key"),
    ({"serverr": {}}, "serverr", "unknown key"),
    ({"metrics": {"address": "9971"}}, "metrics.address", "host:port"),
    ({"spool": {"max_bytes": -1}}, "spool.max_bytes", ">="),
    ({"outputs": {"x": {"type": "foo"}}}, "outputs.x.type", 'unknown output type "foo"'),
    ({"outputs": {"x": {"path": "/tmp/a"}}}, "outputs.x.type", "required"),
    ({"outputs": {"x": "jsonl"}}, "outputs.x", "must be a table"),
    ({"outputs": {"x": {"type": "postgresql"}}}, "outputs.x.dsn", "required"),
    ({"outputs": {"x": {"type": "jsonl", "path": "/tmp/a", "colour": 1}}}, "outputs.x.colour", "unknown key"),
])
def test_bad_keys_are_named(data: dict, key: str, why: str, tmp_path: Path) -> None:
    data = {**data}
    data.setdefault("server", {})
    if isinstance(data["server"], dict):
        data["server"] = {"state_dir": str(tmp_path), **data["server"]}
    with pytest.raises(ConfigError) as ei:
        parse_config(data)
    assert ei.value.key == key
    assert why in str(ei.value)
    assert str(ei.value).startswith(f"{key}: ")
    assert isinstance(ei.value, SharedConfigError)


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text(f'[server]\nstate_dir = "{tmp_path}"\n[outputs.lines]\ntype = "jsonl"\npath = "{tmp_path}/x"\n')
    r = _ogrt("check-config", str(good))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "lines (jsonl)" in r.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text('[outputs.x]\ntype = "foo"\n')
    r = _ogrt("check-config", str(bad))
    assert r.returncode != 0
    assert 'outputs.x.type: unknown output type "foo"' in r.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text("[server\nport = 1\n")
    r = _ogrt("check-config", str(broken))
    assert r.returncode != 0 and "not valid TOML" in r.stderr
    assert r.stderr.count(str(broken)) == 1, r.stderr  # the path is named once
    r = _ogrt("check-config", str(tmp_path / "missing.conf"))
    assert r.returncode != 0 and "cannot read" in r.stderr
    r = _ogrt("server", "--config", str(bad))
    assert r.returncode == 2 and 'outputs.x.type: unknown output type "foo"' in r.stderr


def test_version_and_help() -> None:
    r = _ogrt("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"ogrt {__version__}"
    r = _ogrt("--help")
    assert r.returncode == 0 and "server" in r.stdout and "check-config" in r.stdout
    for sub in ("server", "check-config", "unescape"):
        r = _ogrt(sub, "--help")
        assert r.returncode == 0 and f"usage: ogrt {sub}" in r.stdout, (sub, r.stderr)
    r = _ogrt()
    assert r.returncode != 0 and "usage" in r.stderr


def test_unescape_cli() -> None:
    r = subprocess.run([sys.executable, "-m", "ogrt", "unescape", "-n", "a\\\\b\\xff\\x00"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == b"a\\b\xff\x00"
    r = _ogrt("unescape", "bad\\q")
    assert r.returncode == 1 and "lone backslash" in r.stderr


@pytest.mark.parametrize("data, key, why", [
    ({"server": "x"}, "server", "must be a table"),
    ({"server": {"transports": []}}, "server.transports", "at least one transport"),
    ({"server": {"state_dir": ""}}, "server.state_dir", "must not be empty"),
    ({"server": {"idle_timeout": "5"}}, "server.idle_timeout", "must be a number, got str"),
    ({"metrics": {"address": "localhost:9971"}}, "metrics.address", "host must be an IP address"),
    ({"metrics": {"address": 9971}}, "metrics.address", "must be a string"),
    ({"spool": {"max_bytes": 1.5}}, "spool.max_bytes", "must be an integer"),
    ({"outputs": {"x": {"type": "null", "batch_records": 0}}}, "outputs.x.batch_records", "must be > 0"),
    ({"outputs": {"x": {"type": "json_tcp", "host": "h", "port": 0}}}, "outputs.x.port", "port number"),
])
def test_more_bad_keys_are_named(data: dict, key: str, why: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(data)
    assert ei.value.key == key and str(ei.value).startswith(f"{key}: ") and why in str(ei.value)


def test_defaults_are_declared_once() -> None:
    """What an empty table gives is what the dataclass gives: the defaults have one home."""
    from ogrt.config import MetricsConfig, ServerConfig, SpoolConfig
    from ogrt.keys import keys_of

    c = parse_config({})
    assert (c.server, c.metrics, c.spool) == (ServerConfig(), MetricsConfig(), SpoolConfig())
    for cls in (ServerConfig, MetricsConfig, SpoolConfig):  # every field is a checked key
        assert set(keys_of(cls)) == set(cls.__dataclass_fields__)
    assert c.spool.max_bytes == 1 << 30 and c.server.idle_timeout == 60.0


def test_values_are_converted() -> None:
    c = parse_config({"server": {"transports": ["udp", "udp", "tcp"], "state_dir": "/x", "log_level": "Warning",
                                 "shutdown_timeout": 5},
                      "metrics": {"address": "127.0.0.1:0"}})
    assert c.server.transports == ("udp", "tcp") and c.server.state_dir == Path("/x")
    assert c.server.log_level == "warning" and isinstance(c.server.shutdown_timeout, float)
    assert c.metrics.address == ("127.0.0.1", 0)


@pytest.mark.parametrize("server, per_peer", [
    ({}, 1024), ({"max_connections": 100}, 25), ({"max_connections": 3}, 1),
    ({"max_connections_per_peer": 7}, 7),
])
def test_connections_per_peer(server: dict, per_peer: int) -> None:
    assert parse_config({"server": server}).server.connections_per_peer == per_peer


def test_output_options_get_the_common_defaults(tmp_path: Path) -> None:
    c = parse_config({"outputs": {"n": {"type": "null"},
                                  "t": {"type": "json_tcp", "host": "127.0.0.1", "port": 1, "flush_interval": 1}}})
    n, t = (o.options for o in c.outputs)
    assert dict(n) == {"type": "null", "batch_records": 1000, "flush_interval": 0.2, "queue_records": 0,
                       "reconnect_max_seconds": 30.0}
    assert t["flush_interval"] == 1.0 and isinstance(t["flush_interval"], float)
    assert t["connect_timeout"] == 5.0 and t["send_timeout"] == 30.0


def test_check_config_names_server_and_output_keys(tmp_path: Path) -> None:
    for text, message in [("[server]\nport = 70000\n", "server.port: must be between 0 and 65535, got 70000"),
                          ("[server]\nbogus = 1\n", "server.bogus: unknown key (known: address, "),
                          ('[outputs.j]\ntype = "jsonl"\nfsync = "always"\n',
                           "outputs.j.fsync: must be one of 'batch', 'never', got 'always'")]:
        p = tmp_path / "c.conf"
        p.write_text(text)
        r = _ogrt("check-config", str(p))
        assert r.returncode == 1 and message in r.stderr, (text, r.stderr)
