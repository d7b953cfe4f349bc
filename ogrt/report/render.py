"""Print a report: a rich table on a terminal, aligned plain text otherwise; JSON; CSV."""
from __future__ import annotations

import csv
import json
import re
from typing import Any, TextIO

from ogrt.report.queries import Report

#: list cells (users, hosts) longer than this are cut with "…" in tables; paths and other
#: text are never cut, nor is anything in JSON and CSV
MAX_CELL = 80


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        digits = 6 if 0 < abs(value) < 0.001 else 3  # a 400 µs process is not "0" s
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    if isinstance(value, (list, tuple)):
        return ",".join(cell_text(v) for v in value)
    return str(value)


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)\.\d{6}Z$")


def _cell(value: Any) -> str:
    """A value as a table shows it: times to the second (UTC), long lists cut."""
    text = cell_text(value)
    if isinstance(value, str):
        m = _RFC3339.match(value)
        if m:
            return f"{m.group(1)} {m.group(2)}"
    if isinstance(value, (list, tuple)) and len(text) > MAX_CELL:
        return text[: MAX_CELL - 1] + "…"
    return text


def _numeric(report: Report, key: str) -> bool:
    return all(isinstance(r.get(key), (int, float)) or r.get(key) is None for r in report.rows) and any(
        r.get(key) is not None for r in report.rows
    )


def render_plain(report: Report, out: TextIO) -> None:
    headers = [h for _, h in report.columns]
    cells = [[_cell(row.get(k)) for k, _ in report.columns] for row in report.rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    right = [_numeric(report, k) for k, _ in report.columns]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(parts).rstrip()

    out.write(f"{report.title}\n")
    out.write(line(headers) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    if not cells:
        out.write("(no matching records)\n")


def render_rich(report: Report, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # every cell is a Text: a path like "/tmp/[bold]x" is data, never rich markup
    table = Table(title=Text(report.title), title_justify="left", show_edge=False)
    for key, header in report.columns:
        table.add_column(Text(header), justify="right" if _numeric(report, key) else "left",
                         overflow="fold")
    for row in report.rows:
        table.add_row(*(Text(_cell(row.get(k))) for k, _ in report.columns))
    console = Console(file=out)
    console.print(table)
    if not report.rows:
        console.print("(no matching records)")


def render_json(data: Any, out: TextIO) -> None:
    json.dump(data, out, indent=2, ensure_ascii=False)
    out.write("\n")


def render_csv(report: Report, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([k for k, _ in report.columns])
    for row in report.rows:
        writer.writerow([cell_text(row.get(k)) for k, _ in report.columns])


def render(report: Report, fmt: str, out: TextIO, json_data: Any = None) -> None:
    """fmt: table | json | csv. `json_data` replaces the rows in JSON (the job tree nests)."""
    if fmt == "json":
        render_json(report.rows if json_data is None else json_data, out)
    elif fmt == "csv":
        render_csv(report, out)
    elif out.isatty():
        render_rich(report, out)
    else:
        render_plain(report, out)
