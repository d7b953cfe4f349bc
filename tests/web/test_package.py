"""The wheel carries the dashboard's templates, static files and the vendored chart licence."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_has_templates_and_static_files(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("ogrt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = REPO / "ogrt/web/static"
    templates = REPO / "ogrt/web/templates"
    want = {f"ogrt/web/static/{p.name}" for p in static.iterdir()} | {
        f"ogrt/web/templates/{p.name}" for p in templates.iterdir()}
    assert "ogrt/web/static/LICENSE.uplot" in want and "ogrt/web/templates/job.html" in want
    assert want <= names, sorted(want - names)
