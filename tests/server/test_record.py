"""Protobuf → record dict: exact README keys, types, escaping (in-process)."""
from __future__ import annotations

import json

import pytest

from ogrt.proto import ogrt_pb2
from ogrt.record import Decoder, RecordError, rfc3339_us

START_KEYS = ["event", "id", "time", "host", "peer", "job_id", "pid", "ppid", "uid", "gid", "user", "exe",
              "args", "cwd", "env", "modules", "rank", "libs", "signature", "step_id", "verified"]
JOB_KEYS = ["event", "time", "peer", "job_id", "array_job_id", "array_task_id", "user", "uid", "account",
            "partition", "name", "nodelist", "num_nodes", "num_tasks", "num_cpus", "submit_time",
            "start_time", "end_time", "work_dir", "state", "exit_code", "exit_signal", "cluster"]
END_KEYS = ["event", "id", "time", "host", "peer", "job_id", "pid", "uid", "user", "libs", "start_time",
            "exit_status", "duration", "utime", "stime", "maxrss_kb", "minflt", "majflt", "inblock", "oublock",
            "nvcsw", "nivcsw", "verified"]
UUID = bytes(range(16))


def _users(uid: int) -> str | None:
    return {0: "root"}.get(uid)


def test_start_record() -> None:
    msg = ogrt_pb2.ProcessStart(
        uuid=UUID, time_us=1_795_000_000_000_001, exe=b"/opt/a b/\xff\nx", pid=7, ppid=1, uid=4711, gid=100,
        user=b"hint", hostname=b"n1", job_id=b"", args=[b"x", b"back\\slash"], cwd=b"/tmp",
        env=[b"A=1=2", b"NOEQ"], modules=[b"gcc/12"], rank=0,
        libs=[ogrt_pb2.SharedObject(path=b"/lib/l.so", signature=b"sig-1"), ogrt_pb2.SharedObject(path=b"/lib/m.so")],
        signature=b"")
    rec = Decoder(_users).decode(12, msg.SerializeToString(), "10.1.2.3")
    assert list(rec) == START_KEYS
    assert rec["id"] == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert rec["time"] == "2026-11-18T11:06:40.000001Z"
    assert rec["exe"] == "/opt/a b/\\xff\nx"
    assert rec["args"] == ["x", "back\\\\slash"]
    assert rec["env"] == {"A": "1=2", "NOEQ": ""}
    assert rec["job_id"] is None and rec["signature"] is None
    assert rec["user"] == "hint"  # uid 4711 unknown on this host: the client's hint
    assert rec["rank"] == 0 and rec["peer"] == "10.1.2.3" and rec["step_id"] is None
    assert rec["libs"] == [{"path": "/lib/l.so", "signature": "sig-1"}, {"path": "/lib/m.so", "signature": None}]
    json.dumps(rec)


def test_end_record_and_absent_optionals() -> None:
    msg = ogrt_pb2.ProcessEnd(uuid=UUID, time_us=3_500_000, start_time_us=1_000_000, pid=7, uid=0,
                              hostname=b"n1", job_id=b"j9", utime_us=1_250_000, stime_us=2, maxrss_kb=10)
    rec = Decoder(_users).decode(13, msg.SerializeToString(), "::1")
    assert list(rec) == END_KEYS
    assert rec["exit_status"] is None and rec["user"] == "root" and rec["job_id"] == "j9"
    assert rec["duration"] == 2.5 and rec["utime"] == 1.25 and rec["stime"] == 2e-6
    assert rec["start_time"] == "1970-01-01T00:00:01.000000Z"
    start = ogrt_pb2.ProcessStart(uuid=UUID)
    assert Decoder(_users).decode(12, start.SerializeToString(), "p")["rank"] is None


@pytest.mark.parametrize("mtype, payload, reason", [
    (12, ogrt_pb2.ProcessStart(uuid=b"short").SerializeToString(), "bad_uuid"),
    (12, b"\xff\xff\xff", "bad_payload"),
    (13, ogrt_pb2.ProcessEnd(uuid=UUID, time_us=-5).SerializeToString(), "bad_time"),
    (10, b"", "bad_job"),  # a JobStart without job id
    (11, ogrt_pb2.JobEnd(job=ogrt_pb2.JobInfo(job_id=b"1", end_time=-1)).SerializeToString(), "bad_time"),
    (11, b"\xff\xff", "bad_payload"),
    (9, b"", "unknown_type"),
    (99, b"", "unknown_type"),
])
def test_rejections(mtype: int, payload: bytes, reason: str) -> None:
    with pytest.raises(RecordError) as ei:
        Decoder(_users).decode(mtype, payload, "p")
    assert ei.value.reason == reason


def test_step_id_is_text() -> None:
    msg = ogrt_pb2.ProcessStart(uuid=UUID, step_id=b"0")
    assert Decoder(_users).decode(12, msg.SerializeToString(), "p")["step_id"] == "0"


def test_job_records_carry_what_was_sent_and_null_for_the_rest() -> None:
    info = ogrt_pb2.JobInfo(job_id=b"17", user=b"ogrtuser", uid=1001, partition=b"debug",
                            nodelist=b"node[1-2]", num_nodes=2, start_time=1_795_000_000,
                            end_time=1_795_000_010, state=b"FAILED", exit_code=3, exit_signal=0,
                            time_us=1_795_000_010_000_001)
    end = Decoder(_users).decode(11, ogrt_pb2.JobEnd(job=info).SerializeToString(), "10.77.0.1")
    assert list(end) == JOB_KEYS
    assert end["event"] == "job_end" and end["peer"] == "10.77.0.1" and end["job_id"] == "17"
    assert end["start_time"] == "2026-11-18T11:06:40Z" and end["end_time"] == "2026-11-18T11:06:50Z"
    assert (end["state"], end["exit_code"], end["exit_signal"], end["num_nodes"]) == ("FAILED", 3, 0, 2)
    assert end["time"] == "2026-11-18T11:06:50.000001Z"
    for key in ("array_job_id", "array_task_id", "account", "name", "num_tasks", "num_cpus",
                "submit_time", "work_dir", "cluster"):
        assert end[key] is None, key
    start = Decoder(_users).decode(10, ogrt_pb2.JobStart(job=ogrt_pb2.JobInfo(job_id=b"17")).SerializeToString(), "p")
    assert start["event"] == "job_start" and start["time"] is None and start["exit_code"] is None
    json.dumps(end)


def test_time_format_edges() -> None:
    assert rfc3339_us(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339_us(253402300799_999999) == "9999-12-31T23:59:59.999999Z"
    with pytest.raises(RecordError):
        rfc3339_us(253402300800_000000)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ogrt.textenc import unescape  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(exe=st.binary(max_size=60), args=st.lists(st.binary(max_size=30), max_size=5),
       libs=st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=8)), max_size=5),
       host=st.binary(max_size=20), t=st.integers(0, 253402300799_999999))
def test_any_bytes_round_trip_through_a_record(exe, args, libs, host, t) -> None:  # type: ignore[no-untyped-def]
    msg = ogrt_pb2.ProcessStart(uuid=UUID, time_us=t, exe=exe, args=args, hostname=host,
                                libs=[ogrt_pb2.SharedObject(path=p, signature=s) for p, s in libs])
    rec = json.loads(json.dumps(Decoder(_users).decode(12, msg.SerializeToString(), "p")))
    assert unescape(rec["exe"]) == exe and [unescape(a) for a in rec["args"]] == args
    assert unescape(rec["host"]) == host
    assert [(unescape(lib["path"]), unescape(lib["signature"]) if lib["signature"] else b"")
            for lib in rec["libs"]] == libs


def test_reused_messages_keep_no_state_between_records() -> None:
    """The decoder parses into the same messages again (REUSE_PARSES): nothing of one
    record may show in the next, also across a payload that does not parse."""
    from ogrt.record import REUSE_PARSES
    d = Decoder(_users)
    full = ogrt_pb2.ProcessStart(uuid=UUID, rank=3, job_id=b"j1", signature=b"s", args=[b"a"], env=[b"X=1"],
                                 modules=[b"m/1"], libs=[ogrt_pb2.SharedObject(path=b"/l.so")]).SerializeToString()
    bare = ogrt_pb2.ProcessStart(uuid=UUID).SerializeToString()
    end_full = ogrt_pb2.ProcessEnd(uuid=UUID, exit_status=2, libs=[ogrt_pb2.SharedObject(path=b"/x.so")]).SerializeToString()
    end_bare = ogrt_pb2.ProcessEnd(uuid=UUID).SerializeToString()
    for i in range(2 * REUSE_PARSES + 3):
        assert d.decode(12, full, "p")["rank"] == 3
        with pytest.raises(RecordError):
            d.decode(12, b"\xff\xff\xff", "p")
        rec = d.decode(12, bare, "p")
        assert (rec["rank"], rec["job_id"], rec["signature"], rec["args"], rec["env"], rec["modules"],
                rec["libs"]) == (None, None, None, [], {}, [], []), i
        assert d.decode(13, end_full, "p")["exit_status"] == 2
        end = d.decode(13, end_bare, "p")
        assert end["exit_status"] is None and end["libs"] == []


def test_library_lists_are_shared_keyed_and_bounded() -> None:
    from ogrt import record
    from ogrt.record import libs_key
    d = Decoder(_users)
    libs = [ogrt_pb2.SharedObject(path=b"/lib/a.so"), ogrt_pb2.SharedObject(path=b"/lib/\xff.so", signature=b"s")]
    payload = ogrt_pb2.ProcessEnd(uuid=UUID, libs=libs).SerializeToString()
    a, b = d.decode(13, payload, "p")["libs"], d.decode(13, payload, "p")["libs"]
    assert a is b and a == [{"path": "/lib/a.so", "signature": None}, {"path": "/lib/\\xff.so", "signature": "s"}]
    assert libs_key(a) == (("/lib/a.so", "/lib/\\xff.so"), (None, "s")) == libs_key([dict(x) for x in a])
    # untrusted input: large unique library entries never hold more than the bound
    big = b"/" + b"x" * 200_000
    for i in range(100):
        p = ogrt_pb2.ProcessEnd(uuid=UUID, libs=[ogrt_pb2.SharedObject(path=big + str(i).encode())])
        d.decode(13, p.SerializeToString(), "p")
        assert record._LIB_CACHE.bytes <= record.CACHE_MAX_BYTES and record._LIST_CACHE.bytes <= record.CACHE_MAX_BYTES
        assert sum(map(len, record._LIB_CACHE)) <= record.CACHE_MAX_BYTES
