"""ansible-lint at the production profile (configured in .ansible-lint) passes."""
from __future__ import annotations

import subprocess

from tests.deploy.helpers import REPO, VENV_BIN, ansible_env


def test_ansible_lint_production_profile(tmp_path) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor",
         "-f", "pep8", "site.yml", "roles", "inventory"],
        cwd=REPO, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout


def test_example_inventory_and_site_syntax(tmp_path) -> None:
    """The example inventory expands to the three groups site.yml targets."""
    import json

    inv = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", "inventory/example.yml",
                          "--list"], cwd=REPO, env=ansible_env(tmp_path), capture_output=True,
                         text=True, timeout=120)
    assert inv.returncode == 0, inv.stderr
    groups = json.loads(inv.stdout)
    assert groups["ogrt_servers"]["hosts"] == ["collector.example.org"]
    compute = groups["compute"]["hosts"]
    assert len(compute) == 128 and "node001.example.org" in compute
    assert groups["login"]["hosts"] == ["login1.example.org", "login2.example.org"]
    syntax = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventory/example.yml",
                             "--syntax-check", "site.yml"], cwd=REPO, env=ansible_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
