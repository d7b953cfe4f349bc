"""Rendering tests of templates/*.j2 with unusual values, parsed back by real parsers:
tomllib (and `ogrt check-config`) for ogrt.conf, systemd-analyze for the unit, lua for the
modulefile. Rendering uses Ansible's own filters and tests, like the template module."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.deploy.helpers import REPO, have, lua_interpreter, render

ODD_DIR = '/srv/o g"r\'t \\ %d $HOME ü'

SERVER_VARS: dict[str, Any] = {
    "ogrt_server_address": "::1",
    "ogrt_server_port": 7999,
    "ogrt_server_transports": ["tcp", "udp"],
    "ogrt_server_workers": 2,
    "ogrt_server_max_frame_bytes": 1048576,
    "ogrt_server_idle_timeout": 30,
    "ogrt_server_max_connections": 100,
    "ogrt_server_log_level": "debug",
    "ogrt_server_metrics_address": "[::1]:9971",
    "ogrt_server_spool_max_bytes": 1000000,
    "ogrt_server_state_dir": ODD_DIR + "/state",
    "ogrt_server_outputs": {
        "db": {"type": "sqlite", "path": ODD_DIR + "/ogrt.sqlite"},
        "my archive.v2": {"type": "jsonl", "path": ODD_DIR + "/a b.jsonl", "rotate_bytes": 1000},
        "pg": {"type": "postgresql",
               "dsn": "host=::1 dbname='og rt' password='p\"w\\d'"},
    },
    "ogrt_server_user": "ogrt",
    "ogrt_server_group": "ogrt",
    "ogrt_server_venv": ODD_DIR + "/venv",
    "ogrt_server_config_file": ODD_DIR + "/etc/ogrt.conf",
    "ogrt_server_limit_nofile": 4096,
}


def test_ogrt_conf_parses_back_to_the_variables(tmp_path: Path) -> None:
    text = render("ogrt.conf.j2", SERVER_VARS)
    conf = tomllib.loads(text)
    assert conf["server"] == {
        "address": "::1", "port": 7999, "transports": ["tcp", "udp"], "workers": 2,
        "max_frame_bytes": 1048576, "idle_timeout": 30.0, "max_connections": 100,
        "state_dir": ODD_DIR + "/state", "log_level": "debug",
    }
    assert conf["metrics"] == {"address": "[::1]:9971"}
    assert conf["spool"] == {"max_bytes": 1000000}
    assert conf["outputs"] == SERVER_VARS["ogrt_server_outputs"]


def test_ogrt_conf_without_metrics_has_no_metrics_table() -> None:
    conf = tomllib.loads(render("ogrt.conf.j2", {**SERVER_VARS, "ogrt_server_metrics_address": ""}))
    assert "metrics" not in conf


def test_ogrt_conf_is_accepted_by_check_config(tmp_path: Path) -> None:
    """The rendered file (IPv6, spaces and quotes in paths) is valid for the daemon itself."""
    variables = {**SERVER_VARS, "ogrt_server_outputs": {
        "db": {"type": "sqlite", "path": str(tmp_path / "a b" / "o'g\"rt.sqlite")},
        "lines": {"type": "jsonl", "path": str(tmp_path / "x y.jsonl")}}}
    path = tmp_path / "ogrt.conf"
    path.write_text(render("ogrt.conf.j2", variables))
    proc = subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


TOML_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state_dir=TOML_TEXT, name=TOML_TEXT.filter(bool), key=TOML_TEXT.filter(bool),
       value=st.one_of(TOML_TEXT, st.integers(-2**63, 2**63 - 1), st.booleans(),
                       st.lists(TOML_TEXT, max_size=3)))
def test_ogrt_conf_any_text_round_trips(state_dir: str, name: str, key: str, value: Any) -> None:
    """Any string (control characters, DEL, quotes, non-ASCII, astral) stays valid TOML."""
    outputs = {name: {"type": "jsonl", key: value}} if key != "type" else {name: {"type": value}}
    text = render("ogrt.conf.j2", {**SERVER_VARS, "ogrt_server_state_dir": state_dir,
                                   "ogrt_server_outputs": outputs})
    conf = tomllib.loads(text)
    assert conf["server"]["state_dir"] == state_dir
    assert conf["outputs"] == outputs


def _systemd_unquote(word: str) -> str:
    """Undo the unit template's quoting of one path (shell-like "..." plus %% and $$)."""
    (value,) = shlex.split(word)
    return value.replace("%%", "%").replace("$$", "$")


def test_unit_keys_and_quoting(tmp_path: Path) -> None:
    text = render("ogrt-server.service.j2", SERVER_VARS)
    service: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif "=" in line and section == "[Service]":
            k, v = line.split("=", 1)
            service[k] = v
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
                 "ogrt_server_state_dir": str(odd / "state"),
                 "ogrt_server_config_file": str(odd / "ogrt.conf"),
                 "ogrt_server_user": "root", "ogrt_server_group": "root"}
    unit = tmp_path / "ogrt-server.service"
    unit.write_text(render("ogrt-server.service.j2", variables))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ogrt-server.service" not in proc.stderr, proc.stderr
    # A path with a missing program is rejected: the verify above really checked ExecStart.
    bad = tmp_path / "bad.service"
    bad.write_text(render("ogrt-server.service.j2", {**variables,
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
    path.write_text(render("ogrt.lua.j2", {
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
    assert [p["hosts"] for p in site] == ["ogrt_servers", "compute:login"]
    assert [p["roles"][0]["role"] for p in site] == ["ogrt_server", "ogrt_modulefile"]
    example = yaml.safe_load((REPO / "inventory" / "example.yml").read_text())
    assert set(example["all"]["children"]) == {"ogrt_servers", "compute", "login"}
    json.dumps(example)


def test_role_defaults_render_a_valid_config(tmp_path: Path) -> None:
    """ogrt.conf rendered from roles/ogrt_server's own defaults (no overrides) passes check-config."""
    from tests.deploy.helpers import run_playbook
    out = tmp_path / "ogrt.conf"
    playbook = tmp_path / "render-defaults.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  vars_files:
    - {REPO}/roles/ogrt_server/defaults/main.yml
  vars:
    ogrt_root: {json.dumps(str(tmp_path / "root"))}
  tasks:
    - ansible.builtin.template:
        src: {REPO}/templates/ogrt.conf.j2
        dest: {json.dumps(str(out))}
        mode: "0644"
""")
    proc = run_playbook(tmp_path, {}, playbook=playbook)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    conf = tomllib.loads(out.read_text())
    assert conf["outputs"]["db"]["path"] == str(tmp_path / "root" / "var/lib/ogrt/ogrt.sqlite")
    check = subprocess.run([sys.executable, "-m", "ogrt", "check-config", str(out)],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    assert check.returncode == 0, check.stdout + check.stderr
