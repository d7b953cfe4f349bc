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
