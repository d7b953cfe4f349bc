"""`ogrt job-event start|end`: the environments Slurm 22.05 gives its controller hooks (as
dumped in the cluster of demo/cluster.sh) → JobInfo; a real `ogrt job-event` process sending
to a real `ogrt server`; and the promise that it never hurts the job (exit 0 always)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ogrt.jobevent import parse_env

# PrologSlurmctld of `sbatch -N2 -n4 -A acct1 j.sh` (EpilogSlurmctld: the same plus the exit codes)
PROLOG = {
    "SLURM_CLUSTER_NAME": "ogrt", "SLURM_JOBID": "6", "SLURM_JOB_ACCOUNT": "acct1",
    "SLURM_JOB_CPUS_PER_NODE": "2(x2)", "SLURM_JOB_GID": "1001", "SLURM_JOB_GROUP": "ogrtuser",
    "SLURM_JOB_ID": "6", "SLURM_JOB_NAME": "j.sh", "SLURM_JOB_NODELIST": "node[1-2]",
    "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_PARTITION": "debug", "SLURM_JOB_RESTART_COUNT": "0",
    "SLURM_JOB_UID": "1001", "SLURM_JOB_USER": "ogrtuser", "SLURM_JOB_WORK_DIR": "/w",
    "SLURM_SCRIPT_CONTEXT": "prolog_slurmctld",
}
EPILOG = {**PROLOG, "SLURM_JOB_DERIVED_EC": "0", "SLURM_JOB_EXIT_CODE2": "3:0", "SLURM_JOB_EXIT_CODE": "768",
          "SLURM_SCRIPT_CONTEXT": "epilog_slurmctld"}
# jobcomp/script of a cancelled array task
JOBCOMP = {
    "ACCOUNT": "", "ARRAYJOBID": "11", "ARRAYTASKID": "2", "BATCH": "yes", "CLUSTER": "",
    "DERIVED_EC": "0:0", "END": "1796041738", "EXITCODE": "0:15", "GID": "1001", "JOBID": "12",
    "JOBNAME": "wrap", "JOBSTATE": "CANCELLED", "NODECNT": "1", "NODES": "node1", "PARTITION": "debug",
    "PROCS": "1", "START": "1796041733", "SUBMIT": "1796041730", "UID": "1001", "USERNAME": "ogrtuser",
    "WORK_DIR": "/w",
}


def test_prolog_environment() -> None:
    p = parse_env(PROLOG, now_us=5)
    i = p.info
    assert p.source == "slurm" and p.missing == [] and p.malformed == []
    assert (i.job_id, i.user, i.uid, i.account, i.partition, i.name) == (
        b"6", b"ogrtuser", 1001, b"acct1", b"debug", b"j.sh")
    assert (i.nodelist, i.num_nodes, i.num_cpus, i.work_dir, i.cluster, i.time_us) == (
        b"node[1-2]", 2, 4, b"/w", b"ogrt", 5)
    # what the prolog does not get stays unset: never guessed
    assert i.state == b""
    for field in ("exit_code", "exit_signal", "submit_time", "start_time", "end_time",
                  "num_tasks", "array_task_id"):
        assert not i.HasField(field), field
    assert i.array_job_id == b""


def test_epilog_environment_has_the_exit_code() -> None:
    i = parse_env(EPILOG).info
    assert (i.exit_code, i.exit_signal) == (3, 0) and i.state == b""


def test_jobcomp_environment_has_state_and_times() -> None:
    p = parse_env(JOBCOMP)
    i = p.info
    assert p.source == "jobcomp" and p.malformed == []
    assert (i.job_id, i.array_job_id, i.array_task_id, i.state) == (b"12", b"11", 2, b"CANCELLED")
    assert (i.submit_time, i.start_time, i.end_time) == (1796041730, 1796041733, 1796041738)
    assert (i.exit_code, i.exit_signal, i.num_nodes, i.num_cpus) == (0, 15, 1, 1)
    assert i.account == b"" and i.cluster == b""  # empty: not set
    plain = parse_env({**JOBCOMP, "ARRAYJOBID": "0", "ARRAYTASKID": "4294967294"}).info
    assert plain.array_job_id == b"" and not plain.HasField("array_task_id")


def test_malformed_and_missing_are_named_and_left_out() -> None:
    env = {**EPILOG, "SLURM_JOB_UID": "x", "SLURM_JOB_CPUS_PER_NODE": "2(y3)",
           "SLURM_JOB_EXIT_CODE2": "3", "SLURM_JOB_ACCOUNT": "(null)"}
    del env["SLURM_JOB_NAME"]
    p = parse_env(env)
    assert p.missing == ["SLURM_JOB_NAME"]
    assert [m.split("=")[0] for m in p.malformed] == ["SLURM_JOB_UID", "SLURM_JOB_CPUS_PER_NODE",
                                                      "SLURM_JOB_EXIT_CODE2"]
    i = p.info
    assert not i.HasField("uid") and not i.HasField("num_cpus") and not i.HasField("exit_code")
    assert i.account == b"" and i.job_id == b"6"
    assert parse_env({**PROLOG, "SLURM_JOB_ID": "6; rm"}).info.job_id == b""


def _job_event(event: str, env: dict[str, str], collector: str, timeout: float = 2
               ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run([sys.executable, "-m", "ogrt", "job-event", event, "--collector", collector,
                           "--timeout", str(timeout)], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


def test_start_and_end_reach_the_collector_and_the_database(ogrt_server, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "jobs.sqlite"
    srv = ogrt_server(extra_outputs=f'[outputs.db]\ntype = "sqlite"\npath = "{db}"')
    addr = f"127.0.0.1:{srv.port}"
    for event, env in (("end", EPILOG), ("start", PROLOG), ("end", {**JOBCOMP, "JOBID": "6",
                                                                   "ARRAYJOBID": "0",
                                                                   "ARRAYTASKID": "4294967294",
                                                                   "EXITCODE": "3:0", "NODECNT": "2",
                                                                   "JOBSTATE": "FAILED"})):
        proc = _job_event(event, env, addr)
        assert proc.returncode == 0 and proc.stdout == "", proc
        assert proc.stderr.count("\n") == 1 and f"job 6 sent to {addr}" in proc.stderr, proc.stderr
    recs = srv.records(3)
    assert [r["event"] for r in recs] == ["job_end", "job_start", "job_end"]
    assert recs[1]["nodelist"] == "node[1-2]" and recs[1]["state"] is None and recs[1]["peer"] == "127.0.0.1"
    assert srv.stop() == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT job_id, username, account, num_nodes, state, exit_code, exit_signal,"
                            " start_time, end_time, started_event IS NOT NULL, ended_event IS NOT NULL"
                            " FROM jobs").fetchall()
    conn.close()
    assert rows == [("6", "ogrtuser", "acct1", 2, "FAILED", 3, 0, "2026-11-30T12:28:53Z",
                     "2026-11-30T12:28:58Z", 1, 1)]


def test_collector_down_or_bad_environment_exits_0_with_one_line(tmp_path: Path) -> None:
    from tests.fixtures.server import free_port

    port = free_port()  # nothing listens there
    proc = _job_event("start", PROLOG, f"127.0.0.1:{port},[::1]:{port}", timeout=1)
    assert proc.returncode == 0 and proc.stderr.count("\n") == 1
    assert "not sent: no collector reachable" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    proc = _job_event("start", {}, f"127.0.0.1:{port}")
    assert proc.returncode == 0 and "no job id" in proc.stderr and "SLURM_JOB_ID" in proc.stderr
    proc = _job_event("end", EPILOG, "nonsense")
    assert proc.returncode == 0 and "nothing sent" in proc.stderr and "'nonsense'" in proc.stderr
    # no network at all (a network namespace with lo down): still 0, within the timeout
    if os.geteuid() == 0:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        proc = subprocess.run(["unshare", "--net", sys.executable, "-m", "ogrt", "job-event", "start",
                               "--collector", "10.77.0.1:7971", "--timeout", "1"],
                              env={**clean, **PROLOG}, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "no collector reachable" in proc.stderr, proc
