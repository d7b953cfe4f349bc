"""The process tree of a job, built from pid/ppid and start times.

Exec chains: when a process calls exec, the library reports the new image as a new
process with the same pid (and ppid) on the same host. Consecutive records of one
(host, pid, ppid) whose earlier image has no exit status (exec never returns one) are
therefore one process that changed image: shown as `a → b → c`.

A chain's parent is the chain holding, on the same host, the latest process with
pid == its ppid that started no later than it. Chains whose parent is not in the job
(the batch shell, srun) are roots.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

ARROW = " → "


@dataclass
class Chain:
    """One OS process over its exec'd images (at least one)."""

    images: list[dict[str, Any]]
    children: list["Chain"] = field(default_factory=list)

    @property
    def first(self) -> dict[str, Any]:
        return self.images[0]

    @property
    def last(self) -> dict[str, Any]:
        return self.images[-1]

    @property
    def label(self) -> str:
        return ARROW.join(_image_name(i) for i in self.images)

    @property
    def start_time(self) -> str | None:
        return self.first.get("start_time")

    @property
    def end_time(self) -> str | None:
        return self.last.get("end_time")

    @property
    def duration(self) -> float | None:
        """Seconds from the first image's start to the last image's end, when known."""
        from datetime import datetime

        start, end = self.start_time, self.end_time
        if start and end:
            try:
                a = datetime.fromisoformat(start.replace("Z", "+00:00"))
                b = datetime.fromisoformat(end.replace("Z", "+00:00"))
                return round((b - a).total_seconds(), 6)
            except ValueError:
                pass
        if len(self.images) == 1:
            return self.last.get("duration")
        return None

    @property
    def exit_status(self) -> int | None:
        return self.last.get("exit_status")


def _image_name(image: dict[str, Any]) -> str:
    exe = image.get("exe")
    if not exe:
        return "(start not recorded)"
    return os.path.basename(exe.rstrip("/")) or exe


def _sort_key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (row.get("host") or "", row.get("start_time") or "", row.get("pid") or 0)


def build_chains(rows: list[dict[str, Any]]) -> list[Chain]:
    """Group a job's processes into exec chains (in start order)."""
    chains: list[Chain] = []
    open_by_pid: dict[tuple[str, int], Chain] = {}
    for row in sorted(rows, key=_sort_key):
        key = (row.get("host") or "", row.get("pid") or 0)
        prev = open_by_pid.get(key)
        if (
            prev is not None
            and prev.last.get("ppid") == row.get("ppid")
            and prev.last.get("exit_status") is None
            and (prev.last.get("end_time") is None
                 or row.get("start_time") is None
                 or prev.last["end_time"] <= row["start_time"])
        ):
            prev.images.append(row)
            continue
        chain = Chain([row])
        chains.append(chain)
        open_by_pid[key] = chain
    return chains


def build_tree(rows: list[dict[str, Any]]) -> list[Chain]:
    """Roots of the job's process forest; children in start order."""
    chains = build_chains(rows)
    # (host, pid) -> chains that ever had that pid, in start order
    by_pid: dict[tuple[str, int], list[Chain]] = {}
    for chain in chains:
        by_pid.setdefault((chain.first.get("host") or "", chain.first.get("pid") or 0), []).append(chain)
    roots: list[Chain] = []
    for chain in chains:
        host = chain.first.get("host") or ""
        start = chain.start_time or ""
        parent = None
        for candidate in by_pid.get((host, chain.first.get("ppid") or -1), []):
            if candidate is not chain and (candidate.start_time or "") <= start:
                parent = candidate  # the latest one that started before this chain
        if parent is None:
            roots.append(chain)
        else:
            parent.children.append(chain)
    return roots


def group_roots(roots: list[Chain]) -> list[Chain]:
    """The roots grouped by node, then by job step and rank (tasks of `srun` under the
    step's slurmstepd have no recorded parent: each is a root), then in start order."""
    def key(chain: Chain) -> tuple[str, int, str, int, str]:
        step = chain.first.get("step_id")
        rank = chain.first.get("rank")
        return (chain.first.get("host") or "", 0 if step is None else 1, str(step or ""),
                -1 if rank is None else rank, chain.start_time or "")
    return sorted(roots, key=key)


def walk(roots: list[Chain]) -> list[tuple[Chain, int, str]]:
    """Depth-first (chain, depth, tree prefix like `│  ├─ `) for printing."""
    out: list[tuple[Chain, int, str]] = []

    def visit(chain: Chain, depth: int, lead: str, is_last: bool, is_root: bool) -> None:
        prefix = "" if is_root else lead + ("└─ " if is_last else "├─ ")
        out.append((chain, depth, prefix))
        child_lead = "" if is_root else lead + ("   " if is_last else "│  ")
        for i, child in enumerate(chain.children):
            visit(child, depth + 1, child_lead, i == len(chain.children) - 1, False)

    for root in roots:
        visit(root, 0, "", True, True)
    return out


def chain_dict(chain: Chain) -> dict[str, Any]:
    """Nested JSON form: the chain's summary, its images and its children."""
    return {
        "command": chain.label,
        "host": chain.first.get("host"),
        "pid": chain.first.get("pid"),
        "ppid": chain.first.get("ppid"),
        "user": chain.first.get("user"),
        "step_id": chain.first.get("step_id"),
        "rank": chain.first.get("rank"),
        "start_time": chain.start_time,
        "end_time": chain.end_time,
        "duration": chain.duration,
        "exit_status": chain.exit_status,
        "images": [
            {k: img.get(k) for k in ("uuid", "exe", "package", "signature", "args", "start_time", "end_time",
                                     "duration", "exit_status", "utime", "stime", "rank")}
            for img in chain.images
        ],
        "children": [chain_dict(c) for c in chain.children],
    }
