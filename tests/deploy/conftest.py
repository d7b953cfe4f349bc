"""Fixtures of the deployment tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.helpers import build_wheel, snapshot_source


@pytest.fixture(scope="session")
def ogrt_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ogrt wheel of a snapshot of this checkout for the deployments that test other
    parts than the role's own wheel build (test_deploy.py has the role build from a source):
    each playbook run of theirs skips building it again."""
    tmp = tmp_path_factory.mktemp("wheel")
    return build_wheel(snapshot_source(tmp / "source"), tmp / "dist")
