"""Bad role variables fail early, before anything is written, with a clear message."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.helpers import run_playbook

CASES = [
    ({"ogrt_server_port": "abc"},
     ["Validation of arguments failed", "ogrt_server_port", "int"]),
    ({"ogrt_server_transports": ["tcp", "sctp"]},
     ["Validation of arguments failed", "ogrt_server_transports", "sctp"]),
    ({"ogrt_server_port": 70000}, ["ogrt_server_port must be 1-65535"]),
    ({"ogrt_modulefile_default": "maybe", "ogrt_modulefile_library": "/nonexistent/lib.so"},
     ["Validation of arguments failed", "ogrt_modulefile_default", "bool"]),
]


@pytest.mark.parametrize(("bad", "expected"), CASES, ids=lambda v: str(v)[:40])
def test_bad_variable_fails_early(tmp_path: Path, bad: dict[str, object],
                                  expected: list[str]) -> None:
    root = tmp_path / "root"
    variables = {"ogrt_root": str(root), "ogrt_server_manage_user": False, **bad}
    part = "ogrt_modulefile" if "ogrt_modulefile_default" in bad else "ogrt_server"
    args = ["--tags", part]
    proc = run_playbook(tmp_path / "run", variables, *args)
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stdout, proc.stdout[-3000:]
    assert not (root / "etc").exists() and not (root / "opt" / "ogrt" / "venv").exists()
