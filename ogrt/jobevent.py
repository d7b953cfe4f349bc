"""`ogrt job-event start|end`: one JobStart/JobEnd record from a Slurm controller hook.

Slurm runs it once per job on the controller: `start` from PrologSlurmctld, `end` from
EpilogSlurmctld and from the jobcomp/script plugin (JobCompLoc). It takes what the hook's
environment holds and nothing else; what Slurm 22.05 does not give is left out (null in
the job record), never guessed. What each hook gets, as seen in the cluster of
demo/cluster.sh:

- PrologSlurmctld / EpilogSlurmctld: SLURM_JOB_ID, SLURM_ARRAY_JOB_ID/_TASK_ID (array jobs),
  SLURM_JOB_USER/_UID, SLURM_JOB_ACCOUNT ("(null)" when none), SLURM_JOB_PARTITION,
  SLURM_JOB_NAME, SLURM_JOB_NODELIST, SLURM_JOB_NUM_NODES, SLURM_JOB_CPUS_PER_NODE ("2(x2)"),
  SLURM_JOB_WORK_DIR, SLURM_CLUSTER_NAME; the epilog adds SLURM_JOB_EXIT_CODE2 ("3:0").
  No state, no submit/start/end time, no task count (and the epilog still sees the job as
  COMPLETING, so no final state can be asked for either).
- jobcomp/script (after the job has its final state): JOBID, ARRAYJOBID/ARRAYTASKID ("0" and
  4294967294 outside arrays), USERNAME, UID, ACCOUNT, PARTITION, JOBNAME, NODES, NODECNT,
  PROCS (CPUs), SUBMIT, START, END (epoch seconds), WORK_DIR, JOBSTATE, EXITCODE ("3:0").

It must never hurt the job (Slurm drains a node or holds a job when a prolog fails or hangs):
every outcome exits 0; a collector down or unreachable costs at most `timeout` seconds per
collector and one log line; a missing or malformed variable is logged by name and left out.
"""
from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ogrt.framing import encode_frame
from ogrt.keys import host_port
from ogrt.proto import ogrt_pb2

__all__ = ["JobInfoParse", "parse_env", "parse_collectors", "send", "run"]

NO_VAL = 0xFFFFFFFE  # Slurm's "no value" for 32-bit numbers (and NO_VAL+1 = infinite)
DEFAULT_TIMEOUT = 2.0


def _text(v: str) -> bytes | None:
    return None if v in ("", "(null)") else v.encode("utf-8", "surrogateescape")


def _job_id(v: str) -> bytes | None:
    if not v.isdigit():
        raise ValueError("not a job number")
    return v.encode()


def _array_job_id(v: str) -> bytes | None:
    return None if v == "0" else _job_id(v)


def _uint(v: str) -> int | None:
    if not v.isdigit() or int(v) > 0xFFFFFFFF:
        raise ValueError("not a 32-bit unsigned number")
    n = int(v)
    return None if n >= NO_VAL else n


def _epoch(v: str) -> int | None:
    if not v.isdigit() or int(v) > 253402300799:
        raise ValueError("not seconds since the epoch")
    n = int(v)
    return None if n == 0 else n


_CPUS = re.compile(r"(\d+)(?:\(x(\d+)\))?")


def _cpus_per_node(v: str) -> int | None:
    """SLURM_JOB_CPUS_PER_NODE ("2(x2),1") → the sum (5)."""
    total = 0
    for part in v.split(","):
        m = _CPUS.fullmatch(part)
        if m is None:
            raise ValueError('not a list of "N" or "N(xM)"')
        total += int(m[1]) * int(m[2] or 1)
    return total


def _exit(v: str) -> tuple[int, int]:
    """"3:0" (exit code : signal) → (3, 0)."""
    code, sep, sig = v.partition(":")
    if not sep or not code.isdigit() or not sig.isdigit() or int(code) > 255 or int(sig) > 255:
        raise ValueError('not "EXIT:SIGNAL"')
    return int(code), int(sig)


def _state(v: str) -> bytes | None:
    if not re.fullmatch(r"[A-Z_]{1,32}", v):
        raise ValueError("not a Slurm job state name")
    return v.encode()


Parser = Callable[[str], Any]

#: JobInfo field → (variable of the Slurm hooks, variable of jobcomp/script, parser); None:
#: that environment does not give it. exit_code is "exit" (it fills exit_code and exit_signal).
FIELDS: dict[str, tuple[str | None, str | None, Parser]] = {
    "job_id": ("SLURM_JOB_ID", "JOBID", _job_id),
    "array_job_id": ("SLURM_ARRAY_JOB_ID", "ARRAYJOBID", _array_job_id),
    "array_task_id": ("SLURM_ARRAY_TASK_ID", "ARRAYTASKID", _uint),
    "user": ("SLURM_JOB_USER", "USERNAME", _text),
    "uid": ("SLURM_JOB_UID", "UID", _uint),
    "account": ("SLURM_JOB_ACCOUNT", "ACCOUNT", _text),
    "partition": ("SLURM_JOB_PARTITION", "PARTITION", _text),
    "name": ("SLURM_JOB_NAME", "JOBNAME", _text),
    "nodelist": ("SLURM_JOB_NODELIST", "NODES", _text),
    "num_nodes": ("SLURM_JOB_NUM_NODES", "NODECNT", _uint),
    "num_tasks": ("SLURM_NTASKS", None, _uint),
    "num_cpus": ("SLURM_JOB_CPUS_PER_NODE", "PROCS", _cpus_per_node),
    "submit_time": (None, "SUBMIT", _epoch),
    "start_time": ("SLURM_JOB_START_TIME", "START", _epoch),
    "end_time": ("SLURM_JOB_END_TIME", "END", _epoch),
    "work_dir": ("SLURM_JOB_WORK_DIR", "WORK_DIR", _text),
    "state": (None, "JOBSTATE", _state),
    "exit": ("SLURM_JOB_EXIT_CODE2", "EXITCODE", _exit),
    "cluster": ("SLURM_CLUSTER_NAME", "CLUSTER", _text),
}


#: variables a hook gets only sometimes (array jobs; the epilog's exit code; set by newer
#: Slurm versions): not logged as missing
OPTIONAL = frozenset(("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS", "SLURM_JOB_START_TIME",
                      "SLURM_JOB_END_TIME", "SLURM_JOB_EXIT_CODE2", "SLURM_JOB_ACCOUNT", "SLURM_CLUSTER_NAME",
                      "ACCOUNT", "CLUSTER"))


@dataclass
class JobInfoParse:
    """The JobInfo built from an environment, and what was missing or malformed."""

    info: Any  # ogrt_pb2.JobInfo
    source: str  # "slurm" (Prolog/EpilogSlurmctld) or "jobcomp" (jobcomp/script)
    missing: list[str]
    malformed: list[str]


def parse_env(env: Mapping[str, str], now_us: int | None = None) -> JobInfoParse:
    """The JobInfo of the hook environment `env`. Without a valid job id the info has none
    (the caller sends nothing)."""
    source = "slurm" if "SLURM_JOB_ID" in env or "JOBID" not in env else "jobcomp"
    col = 0 if source == "slurm" else 1
    info = ogrt_pb2.JobInfo(time_us=now_us if now_us is not None else time.time_ns() // 1000)
    missing: list[str] = []
    malformed: list[str] = []
    for field, spec in FIELDS.items():
        var = spec[col]
        if var is None:
            continue
        raw = env.get(var)
        if raw is None:
            if var not in OPTIONAL:
                missing.append(var)
            continue
        try:
            value = spec[2](raw)
        except ValueError as e:
            malformed.append(f"{var}={raw[:60]!r} ({e})")
            continue
        if value is None:
            continue
        if field == "exit":
            info.exit_code, info.exit_signal = value
        else:
            setattr(info, field, value)
    return JobInfoParse(info, source, missing, malformed)


def parse_collectors(text: str) -> list[tuple[str, int]]:
    """"host:port[,host:port...]" → [(host, port), ...]; ValueError says which entry is bad."""
    out = []
    for entry in text.split(","):
        entry = entry.strip()
        try:
            out.append(host_port(entry))
        except ValueError as e:
            raise ValueError(f"collector {entry!r}: {e}") from None
    if not out:
        raise ValueError("no collector given")
    return out


def send(frame: bytes, collectors: Sequence[tuple[str, int]], timeout: float) -> tuple[str, int] | None:
    """Send the frame to the first collector that takes it (TCP, `timeout` seconds each for
    connecting and for sending); the collector it went to, or None. Raises nothing."""
    for host, port in collectors:
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(frame)
            return host, port
        except OSError:
            continue
    return None


def run(event: str, env: Mapping[str, str], collectors_text: str, timeout: float,
        log: TextIO = sys.stderr) -> int:
    """Build and send the record; log one line; always 0."""
    def say(msg: str) -> None:
        print(f"ogrt job-event {event}: {msg}", file=log, flush=True)

    try:
        parsed = parse_env(env)
        job = parsed.info.job_id.decode() if parsed.info.job_id else None
        problems = []
        if parsed.missing:
            problems.append("not set: " + ", ".join(parsed.missing))
        if parsed.malformed:
            problems.append("malformed, left out: " + "; ".join(parsed.malformed))
        if job is None:
            say("no job id in the environment, nothing sent" + (f" ({'; '.join(problems)})" if problems else ""))
            return 0
        try:
            collectors = parse_collectors(collectors_text)
        except ValueError as e:
            say(f"job {job}: nothing sent: {e}")
            return 0
        if event == "start":
            frame = encode_frame(ogrt_pb2.JOB_START, ogrt_pb2.JobStart(job=parsed.info).SerializeToString())
        else:
            frame = encode_frame(ogrt_pb2.JOB_END, ogrt_pb2.JobEnd(job=parsed.info).SerializeToString())
        to = send(frame, collectors, timeout)
        where = f"sent to {to[0]}:{to[1]}" if to else (
            "not sent: no collector reachable (" + ", ".join(f"{h}:{p}" for h, p in collectors)
            + f", {timeout:g} s timeout each)")
        note = f" ({parsed.source}; {'; '.join(problems)})" if problems else ""
        say(f"job {job} {where}{note}")
    except Exception as e:  # never fail the hook
        say(f"failed: {type(e).__name__}: {e}")
    return 0
