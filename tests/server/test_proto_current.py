"""The committed ogrt/proto/ogrt_pb2.py is what grpcio-tools makes of protocol/ogrt.proto."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protocol'}",
                    f"--python_out={tmp_path}", str(ROOT / "protocol" / "ogrt.proto")], check=True)
    fresh = (tmp_path / "ogrt_pb2.py").read_text()
    committed = (ROOT / "ogrt" / "proto" / "ogrt_pb2.py").read_text()
    assert fresh == committed, ("ogrt/proto/ogrt_pb2.py is stale: regenerate with "
                                "python -m grpc_tools.protoc -Iprotocol --python_out=ogrt/proto protocol/ogrt.proto")
