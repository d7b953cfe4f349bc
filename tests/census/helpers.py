"""Running `ogrt census update` and `ogrt report` as the administrator would (subprocesses)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OGRT = Path(sys.executable).parent / "ogrt"


def census_update(db: str, *argv: str) -> str:
    proc = subprocess.run([str(OGRT), "census", "update", "--db", db, *argv],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def report(db: str, *argv: str) -> Any:
    top = [] if argv[0] == "job" else ["--top", "0"]
    proc = subprocess.run([str(OGRT), "report", *argv, "--db", db, "--format", "json", *top],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def packages(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Software report rows by (source, package)."""
    return {(r["source"], r["package"]): r for r in rows}
