"""Rendering tests of the roles' templates (roles/<role>/templates/*.j2) with unusual values,
parsed back by real parsers: tomllib (and `ogrt check-config`) for ogrt.conf, systemd-analyze
for the unit, lua for the modulefile. Rendering uses Ansible's own filters and tests plus the
role's filter_plugins, like the template module."""
from __future__ import annotations

import dataclasses
import json
import math
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.deploy.helpers import REPO, have, lua_interpreter, render, role_filters

ODD_DIR = '/srv/o g"r\'t \\ %d $HOME ü'

# ogrt_server_merged_config with every kind of value ogrt.conf holds
CONFIG: dict[str, Any] = {
    "server": {"address": "::1", "port": 7999, "transports": ["tcp", "udp"], "workers": 2,
               "idle_timeout": 30.5, "shutdown_timeout": 5, "state_dir": ODD_DIR + "/state",
               "log_level": "debug"},
    "metrics": {"address": "[::1]:9971"},
    "spool": {"max_bytes": 1000000},
    "outputs": {
        "db": {"type": "sqlite", "path": ODD_DIR + "/ogrt.sqlite"},
        "my archive.v2": {"type": "jsonl", "path": ODD_DIR + "/a b.jsonl", "rotate_bytes": 1000},
        "pg": {"type": "postgresql", "dsn": "host=::1 dbname='og rt' password='p\"w\\d'"},
    },
}

SERVER_VARS: dict[str, Any] = {
    "ogrt_server_merged_config": CONFIG,
    "ogrt_server_user": "ogrt",
    "ogrt_server_group": "ogrt",
    "ogrt_server_venv": ODD_DIR + "/venv",
    "ogrt_server_config_file": ODD_DIR + "/etc/ogrt.conf",
    "ogrt_server_state_path": ODD_DIR + "/state",
    "ogrt_server_limit_nofile": 4096,
}

# Every [server] key of the daemon, each set to a valid value other than its default.
EVERY_SERVER_KEY: dict[str, Any] = {
    "address": "127.0.0.1", "port": 7000, "transports": ["udp"], "workers": 3,
    "max_frame_bytes": 65536, "idle_timeout": 12.5, "max_connections": 50,
    "max_connections_per_peer": 7, "log_level": "warning", "udp_rcvbuf": 8388608,
    "fragment_timeout": 3.5, "fragment_max_bytes": 1048576, "max_buffered_bytes": 2097152,
    "shutdown_timeout": 9.5, "allowed_networks": ["10.77.0.0/24", "::1/128"],
    "relay_port": 7972, "relay_users": ["ogrt-relay"], "munge_socket": "/run/m/s", "direct": "reject",
}


def _conf(config: dict[str, Any]) -> dict[str, Any]:
    return tomllib.loads(render("ogrt_server", "ogrt.conf.j2", {"ogrt_server_merged_config": config}))


def test_ogrt_conf_parses_back_to_the_config() -> None:
    assert _conf(CONFIG) == CONFIG


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def test_every_daemon_key_is_settable(tmp_path: Path) -> None:
    """Regression (issue 9, bug 3): udp_rcvbuf, shutdown_timeout, max_connections_per_peer and
    every other [server] key, [metrics], [spool] and outputs reach the daemon's config."""
    from ogrt.config import load_config

    config = {"server": {**EVERY_SERVER_KEY, "state_dir": str(tmp_path / "state")},
              "metrics": {"address": "127.0.0.1:9999"}, "spool": {"max_bytes": 12345},
              "outputs": {"lines": {"type": "jsonl", "path": str(tmp_path / "x y.jsonl")}}}
    path = tmp_path / "ogrt.conf"
    path.write_text(render("ogrt_server", "ogrt.conf.j2", {"ogrt_server_merged_config": config}))
    proc = _check_config(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loaded = load_config(path)
    assert {f.name for f in dataclasses.fields(loaded.server)} == {*EVERY_SERVER_KEY, "state_dir"}
    for key, value in EVERY_SERVER_KEY.items():
        got = getattr(loaded.server, key)
        if key == "allowed_networks":
            got = [str(n) for n in got]
        assert (list(got) if key in ("transports", "relay_users") else got) == value, key
    assert loaded.server.state_dir == tmp_path / "state"
    assert loaded.metrics.address == ("127.0.0.1", 9999)
    assert loaded.spool.max_bytes == 12345
    assert [(o.name, o.type) for o in loaded.outputs] == [("lines", "jsonl")]


def test_null_removes_a_key_and_a_table() -> None:
    """A site removes what the role's default config sets by setting it to null."""
    conf = _conf({"server": {"state_dir": "/s", "port": None},
                  "metrics": {"address": None}, "outputs": {"db": None, "x": {"type": "null"}}})
    assert conf == {"server": {"state_dir": "/s"}, "metrics": {}, "outputs": {"x": {"type": "null"}}}


def test_ogrt_conf_is_accepted_by_check_config(tmp_path: Path) -> None:
    """The rendered file (IPv6, spaces and quotes in paths) is valid for the daemon itself."""
    config = {**CONFIG, "outputs": {
        "db": {"type": "sqlite", "path": str(tmp_path / "a b" / "o'g\"rt.sqlite")},
        "lines": {"type": "jsonl", "path": str(tmp_path / "x y.jsonl")}}}
    path = tmp_path / "ogrt.conf"
    path.write_text(render("ogrt_server", "ogrt.conf.j2", {"ogrt_server_merged_config": config}))
    proc = _check_config(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ogrt_conf_bad_key_gets_the_daemons_message(tmp_path: Path) -> None:
    path = tmp_path / "ogrt.conf"
    path.write_text(render("ogrt_server", "ogrt.conf.j2", {"ogrt_server_merged_config": {
        "server": {"udp_rcvbuff": 1}}}))
    proc = _check_config(path)
    assert proc.returncode == 1
    assert "server.udp_rcvbuff: unknown key" in proc.stderr


def test_toml_filter_refuses_what_toml_cannot_hold() -> None:
    to_toml = role_filters("ogrt_server")["ogrt_toml"]
    for bad in ({"server": {"state_dir": "a\ud800b"}}, {"server": {"x": {1, 2}}},
                {"server": {"x": [None]}}, {"server": {3: 1}}, ["server"]):
        with pytest.raises(AnsibleFilterError, match="ogrt_toml"):
            to_toml(bad)


def test_toml_filter_floats() -> None:
    text = role_filters("ogrt_server")["ogrt_toml"](
        {"t": {"a": 1e-05, "b": 1e300, "c": float("inf"), "d": -float("inf"), "e": float("nan"),
               "f": 2.0, "g": -0.0}})
    t = tomllib.loads(text)["t"]
    assert (t["a"], t["b"], t["c"], t["d"], t["f"]) == (1e-05, 1e300, math.inf, -math.inf, 2.0)
    assert math.isnan(t["e"]) and isinstance(t["f"], float) and math.copysign(1, t["g"]) == -1


TOML_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
TOML_SCALAR = st.one_of(TOML_TEXT, st.integers(-2**63, 2**63 - 1), st.booleans(),
                        st.floats(allow_nan=False))
TOML_VALUE = st.recursive(TOML_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TOML_TEXT.filter(bool), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state_dir=TOML_TEXT, name=TOML_TEXT.filter(bool), key=TOML_TEXT.filter(bool),
       value=TOML_VALUE)
def test_ogrt_conf_any_value_round_trips(state_dir: str, name: str, key: str, value: Any) -> None:
    """Any string (control characters, DEL, quotes, non-ASCII, astral), number, list and
    inline table in a table named by any text stays valid TOML with the same value."""
    config = {"server": {"state_dir": state_dir}, "outputs": {name: {key: value}}}
    assert _conf(config) == config


def _systemd_unquote(word: str) -> str:
    """Undo the unit template's quoting of one path (shell-like "..." plus %% and $$)."""
    (value,) = shlex.split(word)
    return value.replace("%%", "%").replace("$$", "$")


def _service_keys(text: str) -> dict[str, str]:
    """The [Service] keys of a unit's text."""
    service: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif "=" in line and section == "[Service]":
            k, v = line.split("=", 1)
            service[k] = v
    return service


def test_unit_keys_and_quoting(tmp_path: Path) -> None:
    text = render("ogrt_server", "ogrt-server.service.j2", SERVER_VARS)
    service = _service_keys(text)
    assert service["User"] == "ogrt" and service["Group"] == "ogrt"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["Restart"] == "on-failure"
    assert _systemd_unquote(service["ReadWritePaths"]) == ODD_DIR + "/state"
    argv = shlex.split(service["ExecStart"])
    argv = [a.replace("%%", "%") for a in argv[:1]] + [
        a.replace("%%", "%").replace("$$", "$") for a in argv[1:]]
    assert argv == [ODD_DIR + "/venv/bin/ogrt", "server", "--config", ODD_DIR + "/etc/ogrt.conf"]
    assert "WantedBy=multi-user.target" in text


@pytest.mark.skipif(not have("systemd-analyze"),
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own parser accepts the unit with spaces, quotes, % and $ in its paths."""
    odd = tmp_path / 'o g"r\'t %d $HOME'
    # systemd refuses quotes and backslashes in the program path (the role asserts that)
    venv = tmp_path / "v e n v %d $HOME ü"
    (venv / "bin").mkdir(parents=True)
    (odd / "state").mkdir(parents=True)
    ogrt = venv / "bin" / "ogrt"
    ogrt.write_text("#!/bin/sh\nexit 0\n")
    ogrt.chmod(0o755)
    variables = {**SERVER_VARS, "ogrt_server_venv": str(venv),
                 "ogrt_server_state_path": str(odd / "state"),
                 "ogrt_server_config_file": str(odd / "ogrt.conf"),
                 "ogrt_server_user": "root", "ogrt_server_group": "root"}
    unit = tmp_path / "ogrt-server.service"
    unit.write_text(render("ogrt_server", "ogrt-server.service.j2", variables))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ogrt-server.service" not in proc.stderr, proc.stderr
    # A path with a missing program is rejected: the verify above really checked ExecStart.
    bad = tmp_path / "bad.service"
    bad.write_text(render("ogrt_server", "ogrt-server.service.j2", {**variables,
                                                      "ogrt_server_venv": str(tmp_path / "nope")}))
    proc = subprocess.run(["systemd-analyze", "verify", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 or "nope" in proc.stderr


LUA_STUBS = r"""
local calls = {}
local function rec(name) return function(...) calls[#calls + 1] = {name, {...}} end end
whatis = rec("whatis"); help = rec("help"); conflict = rec("conflict")
prepend_path = rec("prepend_path"); setenv = rec("setenv")
dofile(arg[1])
local function q(s) return (string.gsub(s, "[%c\"\\\128-\255]", function(c) return string.format("\\%03d", c:byte()) end)) end
for _, c in ipairs(calls) do
  local parts = {}
  for i, v in ipairs(c[2]) do parts[i] = '"' .. q(v) .. '"' end
  print(c[1] .. " " .. table.concat(parts, " "))
end
"""


def _lua_calls(modulefile: Path, tmp_path: Path) -> list[tuple[str, list[str]]]:
    stub = tmp_path / "stubs.lua"
    stub.write_text(LUA_STUBS)
    proc = subprocess.run([str(lua_interpreter()), str(stub), str(modulefile)],
                          capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    calls = []
    for line in proc.stdout.decode().splitlines():
        name, _, rest = line.partition(" ")
        args = []
        for quoted in rest.split('" "') if rest else []:
            raw = quoted.strip('"')
            out, i = bytearray(), 0
            while i < len(raw):
                if raw[i] == "\\":
                    out.append(int(raw[i + 1:i + 4]))
                    i += 4
                else:
                    out += raw[i].encode()
                    i += 1
            args.append(out.decode("utf-8"))
        calls.append((name, args))
    return calls


@pytest.mark.skipif(lua_interpreter() is None,
                    reason="no Lua interpreter (Debian lua5.3, a dependency of lmod)")
def test_modulefile_evaluates_to_the_variables(tmp_path: Path) -> None:
    help_text = 'Line "one" \\ back\nline two ü ]] [[ ]=]\n'
    lib = "/opt/sp ack/o'g\"rt\\lib/libogrt.so"
    path = tmp_path / "1.0.lua"
    path.write_text(render("ogrt_modulefile", "ogrt.lua.j2", {
        "ogrt_modulefile_version": '1.0 "beta"',
        "ogrt_modulefile_help": help_text,
        "ogrt_modulefile_conflicts": ["xalt", "dar shan"],
        "ogrt_modulefile_library_path": lib,
    }))
    calls = _lua_calls(path, tmp_path)
    assert ("help", [help_text]) in calls
    assert ("whatis", ['Version: 1.0 "beta"']) in calls
    assert ("conflict", ["xalt"]) in calls and ("conflict", ["dar shan"]) in calls
    assert ("prepend_path", ["LD_PRELOAD", lib, ":"]) in calls
    assert ("setenv", ["OGRT_ACTIVE", "1"]) in calls


def test_inventory_and_site_are_valid_yaml() -> None:
    import yaml

    site = yaml.safe_load((REPO / "site.yml").read_text())
    assert [p["hosts"] for p in site] == ["ogrt_servers", "ogrt_sinks", "compute:login",
                                          "slurm_controllers:slurm_nodes", "ogrt_relays"]
    assert [p["roles"][0]["role"] for p in site] == ["ogrt_server", "ogrt_server", "ogrt_modulefile", "ogrt_slurm",
                                                     "ogrt_relay"]
    assert site[1]["roles"][0]["vars"] == {"ogrt_server_collector_enabled": False, "ogrt_server_sink_enabled": True}
    example = yaml.safe_load((REPO / "inventory" / "example.yml").read_text())
    assert set(example["all"]["children"]) == {"ogrt_servers", "compute", "login", "slurm_controllers",
                                               "slurm_nodes", "ogrt_relays"}
    json.dumps(example)


def test_web_unit_is_hardened_and_runs_ogrt_web() -> None:
    service = _service_keys(render("ogrt_server", "ogrt-web.service.j2",
                                   {**SERVER_VARS, "ogrt_server_service_name": "ogrt-server"}))
    assert service["User"] == "ogrt" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["CapabilityBoundingSet"] == ""
    assert service["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert _systemd_unquote(service["ReadWritePaths"]) == ODD_DIR + "/state"
    argv = [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(service["ExecStart"])]
    assert argv == [ODD_DIR + "/venv/bin/ogrt", "web", "--config", ODD_DIR + "/etc/ogrt.conf"]


@pytest.mark.skipif(not have("systemd-analyze"),
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_web_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    venv = tmp_path / "v e n v %d $HOME"
    (venv / "bin").mkdir(parents=True)
    (tmp_path / "state").mkdir()
    ogrt = venv / "bin" / "ogrt"
    ogrt.write_text("#!/bin/sh\nexit 0\n")
    ogrt.chmod(0o755)
    unit = tmp_path / "ogrt-web.service"
    unit.write_text(render("ogrt_server", "ogrt-web.service.j2", {
        **SERVER_VARS, "ogrt_server_venv": str(venv), "ogrt_server_state_path": str(tmp_path / "state"),
        "ogrt_server_config_file": str(tmp_path / "ogrt.conf"), "ogrt_server_user": "root",
        "ogrt_server_group": "root", "ogrt_server_service_name": "ogrt-server"}))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ogrt-web.service" not in proc.stderr, proc.stderr


def test_web_table_round_trips_through_check_config(tmp_path: Path) -> None:
    """The role renders [web] and [web.users] like any table; the daemon's checker accepts them."""
    from ogrt.web.passwords import hash_password

    config = {"server": {"state_dir": str(tmp_path)},
              "web": {"address": "127.0.0.1:8971", "auth": "basic", "show_args": False,
                      "users": {"alice": hash_password("pw")}}}
    conf = tmp_path / "ogrt.conf"
    conf.write_text(render("ogrt_server", "ogrt.conf.j2", {"ogrt_server_merged_config": config}))
    assert tomllib.loads(conf.read_text())["web"]["users"] == config["web"]["users"]
    proc = subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
