"""Bad role variables fail early, before anything is written, with a clear message."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.helpers import run_playbook

CASES = [
    ({"ogrt_server_config": "abc"},
     ["Validation of arguments failed", "ogrt_server_config", "dict"]),
    ({"ogrt_server_config": "port=abc"},  # the spec's dict type accepts key=value text
     ["ogrt_server_config and ogrt_server_default_config must be dicts"]),
    ({"ogrt_server_config": ["server"]},
     ["Validation of arguments failed", "ogrt_server_config", "dict"]),
    ({"ogrt_server_manage_user": "maybe"},
     ["Validation of arguments failed", "ogrt_server_manage_user", "bool"]),
    ({"ogrt_server_config": {"server": {"state_dir": "relative/dir"}}},
     ["state_dir is an absolute"]),
    ({"ogrt_server_config": {"server": 7971}}, ["ogrt_server_config.server must be a dict"]),
    ({"ogrt_server_sink_enabled": True, "ogrt_server_sink_config": "abc"},
     ["Validation of arguments failed", "ogrt_server_sink_config", "dict"]),
    ({"ogrt_server_sink_enabled": True, "ogrt_server_sink_config": {"sink": {"state_dir": "rel"}}},
     ["ogrt_server_sink_config.sink must be a dict whose state_dir is an absolute"]),
    ({"ogrt_server_sink_enabled": "maybe"},
     ["Validation of arguments failed", "ogrt_server_sink_enabled", "bool"]),
    ({"ogrt_modulefile_default": "maybe", "ogrt_modulefile_library": "/nonexistent/lib.so"},
     ["Validation of arguments failed", "ogrt_modulefile_default", "bool"]),
]


@pytest.mark.parametrize(("bad", "expected"), CASES, ids=lambda v: str(v)[:40])
def test_bad_variable_fails_early(tmp_path: Path, bad: dict[str, object],
                                  expected: list[str]) -> None:
    root = tmp_path / "root"
    variables = {"ogrt_root": str(root), "ogrt_server_manage_user": False, **bad}
    # ogrt.conf's keys and values are checked later, by the deployed `ogrt check-config`
    # (tests/deploy/test_deploy.py); these fail before anything is written.
    part = "ogrt_modulefile" if "ogrt_modulefile_default" in bad else "ogrt_server"
    args = ["--tags", part]
    proc = run_playbook(tmp_path / "run", variables, *args)
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stdout, proc.stdout[-3000:]
    assert not (root / "etc").exists() and not (root / "opt" / "ogrt" / "venv").exists()
