"""Run `ogrt report` in-process and capture what it prints."""
from __future__ import annotations

import io
import json
from typing import Any

from ogrt.report.cli import main


def report(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def report_json(*argv: str) -> Any:
    code, text = report(*argv, "--format", "json")
    assert code == 0, text
    return json.loads(text)
