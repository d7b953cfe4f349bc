"""nats-py is loaded only by a process that uses NATS."""
from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from ogrt.config import parse_config
from ogrt import server, cli
parse_config({"outputs": {"j": {"type": "jsonl", "path": "/tmp/x.jsonl"}}})
parse_config({"outputs": {"js": {"type": "nats", "servers": ["nats://127.0.0.1:4222"], "replicas": 1}}})
print("nats" in sys.modules)
"""


def test_nats_client_not_imported_by_config_or_a_server_without_nats() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]
