"""Process trees and exec chains from pid/ppid and start times (ogrt.report.jobtree)."""
from __future__ import annotations

from typing import Any

from ogrt.report.jobtree import build_tree, walk


def proc(host: str, pid: int, ppid: int, exe: str, start: str, end: str | None = None,
         status: int | None = 0) -> dict[str, Any]:
    return {"host": host, "pid": pid, "ppid": ppid, "exe": exe, "uuid": f"{host}-{pid}-{start}",
            "start_time": f"2026-11-25T10:00:{start}Z", "exit_status": status,
            "end_time": f"2026-11-25T10:00:{end}Z" if end else None}


def labels(rows: list[dict[str, Any]]) -> list[str]:
    return [prefix + chain.label for chain, _, prefix in walk(build_tree(rows))]


def test_mpi_job_on_two_hosts_has_a_tree_per_host() -> None:
    rows = [
        proc("n2", 10, 1, "/usr/sbin/slurmstepd", "00.000000"),
        proc("n1", 10, 1, "/usr/sbin/slurmstepd", "00.000000"),
        proc("n1", 11, 10, "/apps/bin/solver", "01.000000", "09.000000"),
        proc("n2", 11, 10, "/apps/bin/solver", "01.000000", "09.000000"),
    ]
    assert labels(rows) == ["slurmstepd", "└─ solver", "slurmstepd", "└─ solver"]
    roots = build_tree(rows)
    assert [r.first["host"] for r in roots] == ["n1", "n2"]


def test_exec_chain_and_the_end_record_of_an_exec() -> None:
    # the replaced image may carry an end time (sent at exec) but never an exit status
    rows = [
        proc("n1", 20, 1, "/bin/bash", "00.000000"),
        proc("n1", 21, 20, "/usr/bin/env", "01.000000", "01.000500", status=None),
        proc("n1", 21, 20, "/usr/bin/python3", "01.001000", "03.000000", status=3),
    ]
    [root] = build_tree(rows)
    [chain] = root.children
    assert chain.label == "env → python3" and chain.exit_status == 3
    assert chain.duration == 2.0


def test_pid_reuse_after_exit_or_with_another_parent_is_not_a_chain() -> None:
    rows = [
        proc("n1", 30, 1, "/bin/sh", "00.000000"),
        proc("n1", 31, 30, "/bin/true", "01.000000", "01.100000", status=0),
        proc("n1", 31, 30, "/bin/false", "02.000000", "02.100000", status=1),  # exited before: reuse
        proc("n1", 40, 1, "/bin/sh", "03.000000"),
        proc("n1", 41, 30, "/bin/a", "04.000000", status=None, end=None),
        proc("n1", 41, 40, "/bin/b", "05.000000"),  # other parent: reuse too
    ]
    assert labels(rows) == ["sh", "├─ true", "├─ false", "└─ a", "sh", "└─ b"]


def test_child_attaches_to_the_latest_parent_with_that_pid() -> None:
    rows = [
        proc("n1", 50, 1, "/bin/first", "00.000000", "00.500000", status=0),
        proc("n1", 50, 1, "/bin/second", "01.000000", "09.000000", status=0),
        proc("n1", 51, 50, "/bin/child", "02.000000", "03.000000", status=0),
    ]
    assert labels(rows) == ["first", "second", "└─ child"]
