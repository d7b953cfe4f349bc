"""The daemon pays for a backend's client library only when an output uses it."""
from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from ogrt.config import parse_config
from ogrt import server, cli
parse_config({{"outputs": {{"db": {{"type": "sqlite", "path": "/tmp/x.sqlite"}}}}}})
loaded = "psycopg" in sys.modules
parse_config({{"outputs": {{"pg": {{"type": "postgresql", "dsn": "dbname=ogrt"}}}}}})
print(loaded, "psycopg" in sys.modules)
"""


def test_psycopg_is_imported_only_for_a_postgresql_output() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE.format()], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_the_supervisor_does_not_import_the_server() -> None:
    """ogrt.server hands the worker its serve function: the import goes one way only."""
    probe = "import sys, ogrt.supervisors.workers; print('ogrt.server' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]
