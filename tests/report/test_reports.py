"""Every report over records written by the real SQLite and PostgreSQL outputs."""
from __future__ import annotations

import csv
import io

import pytest

from tests.report.helpers import report, report_json
from tests.report.records import (LIBSSL, MKL, MKL_THREAD, NON_UTF8_EXE, SSL_EXT, STAMP_EXE,
                                  STAMP_LIB)


def by(rows: list[dict], key: str) -> dict:
    return {r[key]: r for r in rows}


def test_executables_counts_runs_users_hosts_cpu(report_db: str) -> None:
    rows = report_json("executables", "--db", report_db)
    exes = by(rows, "executable")
    solver = exes["/opt/app/bin/solver"]
    assert rows[0]["executable"] == "/opt/app/bin/solver"  # most runs first
    assert (solver["runs"], solver["users"], solver["hosts"], solver["jobs"]) == (4, 1, 2, 2)
    assert solver["cpu_seconds"] == pytest.approx(3 * 12.0 + 55.0)
    assert exes["/usr/bin/false"]["failed"] == 1
    assert exes[NON_UTF8_EXE]["failed"] == 1  # escaped non-UTF-8 path comes back as written
    assert exes["/usr/bin/python3.11"]["cpu_seconds"] == pytest.approx(1.75)
    assert "/usr/bin/true" not in exes  # its start (and so its executable) never arrived
    assert exes["/usr/bin/vim"]["jobs"] == 0


def test_executables_top_and_filters(report_db: str) -> None:
    assert len(report_json("executables", "--db", report_db, "--top", "3")) == 3
    assert len(report_json("executables", "--db", report_db, "--top", "0")) == 13
    bob = report_json("executables", "--db", report_db, "--user", "bob")
    assert {r["executable"] for r in bob} == {"/opt/app/bin/solver", "/usr/bin/hostname",
                                             "/usr/bin/date", NON_UTF8_EXE}
    assert report_json("executables", "--db", report_db, "--user", "1002") == bob  # uid works too
    node01 = by(report_json("executables", "--db", report_db, "--host", "node01"), "executable")
    assert node01["/opt/app/bin/solver"]["runs"] == 1
    job2 = by(report_json("executables", "--db", report_db, "--job", "job-2"), "executable")
    assert job2["/opt/app/bin/solver"]["runs"] == 3 and "/usr/bin/bash" not in job2
    # --since inclusive, --until exclusive, on the start time
    window = report_json("executables", "--db", report_db, "--since", "2026-11-24T09:01:00Z",
                         "--until", "2026-11-24T09:05:00")
    assert by(window, "executable")["/opt/app/bin/solver"]["runs"] == 2 and len(window) == 1
    later = report_json("executables", "--db", report_db, "--since", "2026-11-25")
    assert [r["executable"] for r in later] == ["/usr/bin/vim"]
    offset = report_json("executables", "--db", report_db, "--since", "2026-11-25T09:00:00+01:00")
    assert offset == later
    assert report_json("executables", "--db", report_db, "--user", "nobody-here") == []
    usr = report_json("executables", "--db", report_db, "--path", "/USR/bin/", "--user", "alice")
    assert {r["executable"] for r in usr} == {"/usr/bin/bash", "/usr/bin/cat", "/usr/bin/sort",
                                             "/usr/bin/python3.11", "/usr/bin/dash", "/usr/bin/env",
                                             "/usr/bin/false", "/usr/bin/vim"}
    assert [r["executable"] for r in report_json("executables", "--db", report_db, "--path", "*/s?lver")] == [
        "/opt/app/bin/solver"]


def test_libraries_most_loaded(report_db: str) -> None:
    rows = report_json("libraries", "--db", report_db)
    libs = by(rows, "library")
    assert rows[0]["library"].endswith("/libc.so.6") and rows[0]["processes"] == 16
    assert libs[MKL]["processes"] == 4 and libs[MKL_THREAD]["processes"] == 3
    assert libs[SSL_EXT]["processes"] == 1  # dlopen'ed (end record) libraries count too
    assert libs["/opt/app/lib/libsolverplug.so"]["stamped"] == 1
    filtered = by(report_json("libraries", "--db", report_db, "--user", "alice"), "library")
    assert MKL not in filtered and filtered[LIBSSL]["processes"] == 1


def test_libraries_path_who_loads_it(report_db: str) -> None:
    rows = report_json("libraries", "--db", report_db, "--path", "libmkl")
    assert {(r["library"], r["executable"], r["processes"]) for r in rows} == {
        (MKL, "/opt/app/bin/solver", 4), (MKL_THREAD, "/opt/app/bin/solver", 3)}
    assert all(r["users"] == ["bob"] for r in rows)
    core = by(rows, "library")[MKL]
    assert core["jobs"] == 2 and core["dlopened"] == 0
    jobs = report_json("libraries", "--db", report_db, "--path", "*/libmkl_core.so*", "--by", "job")
    assert {(r["job"], r["processes"]) for r in jobs} == {("job-2", 3), ("job-3", 1)}
    # case-insensitive, and the C extension loaded late by python is found with its job and user
    ssl = report_json("libraries", "--db", report_db, "--path", "_SSL.cpython", "--by", "user")
    assert [(r["library"], r["user"], r["dlopened"]) for r in ssl] == [(SSL_EXT, "alice", 1)]
    # LIKE wildcards in the pattern are literal: '_' must not match any character
    assert report_json("libraries", "--db", report_db, "--path", "libmkl_core%") == []
    hosts = report_json("libraries", "--db", report_db, "--path", "libmkl_core", "--by", "host")
    assert {(r["host"], r["processes"]) for r in hosts} == {("node02", 3), ("node01", 1)}


def test_modules(report_db: str) -> None:
    rows = by(report_json("modules", "--db", report_db), "module")
    assert rows["gcc/12.2.0"]["processes"] == 8 and rows["gcc/12.2.0"]["jobs"] == 1
    assert rows["mkl/2024"]["processes"] == 4 and rows["mkl/2024"]["jobs"] == 2
    assert set(by(report_json("modules", "--db", report_db, "--job", "job-3"), "module")) == {
        "intel/2024", "mkl/2024"}


def test_users(report_db: str) -> None:
    rows = by(report_json("users", "--db", report_db), "user")
    assert rows["alice"]["uid"] == 1001 and rows["alice"]["processes"] == 9
    assert rows["alice"]["hosts"] == 2 and rows["alice"]["jobs"] == 1
    assert rows["bob"]["processes"] == 8 and rows["bob"]["cpu_seconds"] == pytest.approx(91.0)
    assert rows["bob"]["failed"] == 1


def test_signatures(report_db: str) -> None:
    rows = report_json("signatures", "--db", report_db)
    sigs = by(rows, "signature")
    assert set(sigs) == {STAMP_EXE, STAMP_LIB}
    exe = sigs[STAMP_EXE]
    assert (exe["kind"], exe["path"], exe["runs"], exe["users"], exe["hosts"], exe["jobs"]) == (
        "executable", "/home/alice/bin/hello", 1, ["alice"], ["node01"], 1)
    lib = sigs[STAMP_LIB]
    assert (lib["kind"], lib["path"], lib["users"]) == ("library", "/opt/app/lib/libsolverplug.so", ["bob"])
    only = report_json("signatures", "--db", report_db, "--signature", STAMP_LIB)
    assert [r["signature"] for r in only] == [STAMP_LIB]
    assert report_json("signatures", "--db", report_db, "--user", "bob", "--signature", STAMP_EXE) == []


def test_jobs(report_db: str) -> None:
    rows = report_json("jobs", "--db", report_db)
    assert [r["job"] for r in rows] == ["job-3", "job-2", "job-1", "job-9"]  # most recent first
    assert by(rows, "job")["job-1"]["processes"] == 8 and by(rows, "job")["job-2"]["failed"] == 1
    two, one, nine = by(rows, "job")["job-2"], by(rows, "job")["job-1"], by(rows, "job")["job-9"]
    assert (two["user"], two["account"], two["partition"], two["nodes"], two["state"], two["exit_code"],
            two["elapsed"]) == ("bob", "proj1", "batch", "node02", "FAILED", 1, 400.0)
    assert (one["user"], one["state"], one["elapsed"], one["account"]) == ("alice", None, None, None)
    # a job record without any recorded process is listed, with 0 processes
    assert (nine["processes"], nine["state"], nine["user"], nine["elapsed"]) == (0, "COMPLETED", "carol", 30.0)
    assert [r["job"] for r in report_json("jobs", "--db", report_db, "--user", "carol")] == ["job-9"]
    assert "job-9" not in [r["job"] for r in report_json("jobs", "--db", report_db, "--host", "node02")]
    assert [r["job"] for r in report_json("jobs", "--db", report_db, "--since", "2026-11-24")] == [
        "job-3", "job-2"]


def test_job_tree_with_exec_chain(report_db: str) -> None:
    data = report_json("job", "job-1", "--db", report_db)
    assert data["job"] == "job-1" and data["processes"] == 8
    [root] = data["tree"]
    assert root["command"] == "bash" and root["pid"] == 100 and root["exit_status"] == 0
    children = [c["command"] for c in root["children"]]
    assert children == ["cat", "sort", "python3.11", "env → hello", "false"]
    kids = by(root["children"], "command")
    assert [c["command"] for c in kids["python3.11"]["children"]] == ["dash"]
    chain = kids["env → hello"]
    assert [i["exe"] for i in chain["images"]] == ["/usr/bin/env", "/home/alice/bin/hello"]
    assert chain["images"][1]["signature"] == STAMP_EXE
    assert chain["duration"] == pytest.approx(2.002) and chain["exit_status"] == 0
    assert kids["false"]["exit_status"] == 1
    assert root["duration"] == pytest.approx(20.0)
    assert root["images"][0]["args"] == ["bash", "job.sh"]


def test_job_header_from_the_job_record(report_db: str) -> None:
    code, text = report("job", "job-2", "--db", report_db)
    assert code == 0
    assert text.splitlines()[0].startswith("Job job-2: 7 processes; user bob, account proj1, partition batch,"
                                           " nodes node02, node count 1, state FAILED, exit 1, signal 0,"
                                           " elapsed s 400")
    data = report_json("job", "job-2", "--db", report_db)
    assert data["record"]["state"] == "FAILED" and data["record"]["elapsed"] == 400.0
    assert report_json("job", "job-1", "--db", report_db)["record"] is None
    # a job with a record and no process: the header, no rows
    nine = report("job", "job-9", "--db", report_db)[1]
    assert "state COMPLETED" in nine and nine.endswith("(no matching records)\n")


def test_job_tree_pid_reuse_is_not_an_exec_chain(report_db: str) -> None:
    data = report_json("job", "job-2", "--db", report_db)
    commands = [c["command"] for c in data["tree"]]
    assert "hostname" in commands and "date" in commands
    assert not any("→" in c for c in commands)
    assert "(start not recorded)" in commands  # only its end record arrived
    assert len(data["tree"]) == data["processes"] == 7


def test_job_plain_text_tree(report_db: str) -> None:
    code, text = report("job", "job-1", "--db", report_db)
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "Job job-1: 8 processes (no job record)"
    tree = [line.split(" node01 ")[0].rstrip() for line in lines[3:]]
    assert tree == ["bash", "├─ cat", "├─ sort", "├─ python3.11", "│  └─ dash", "├─ env → hello",
                    "└─ false"]
    assert report("job", "no-such-job", "--db", report_db)[1].endswith("(no matching records)\n")


def test_csv_and_plain_formats(report_db: str) -> None:
    code, text = report("executables", "--db", report_db, "--format", "csv", "--top", "2")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["executable"] == "/opt/app/bin/solver" and rows[0]["runs"] == "4"
    assert len(rows) == 2
    code, text = report("signatures", "--db", report_db)
    header = text.splitlines()[1]
    assert header.split()[:4] == ["Signature", "Kind", "Path", "Runs"]
    assert STAMP_EXE in text
    code, text = report("job", "job-1", "--db", report_db, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["depth"] for r in rows] == ["0", "1", "1", "1", "2", "1", "1"]
