"""Protobuf messages → record dicts (README, "Record format").

Built field by field, not with json_format.MessageToDict (about ten times the cost).
Every text value is escaped with ogrt.textenc, so records are JSON-ready.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ogrt.proto import ogrt_pb2
from ogrt.proto.ogrt_pb2 import JOB_END, JOB_START, PROCESS_END, PROCESS_START
from ogrt.textenc import escape

__all__ = ["RecordError", "LibList", "libs_key", "uuid_text", "rfc3339_us", "start_record", "end_record",
           "job_record", "JOB_FIELDS", "Decoder"]

# accepted time range: 1970-01-01 .. 9999-12-31 (what RFC 3339 can write)
_MAX_TIME_US = 253402300799_999999


class RecordError(ValueError):
    """A payload that parses but cannot become a record; `reason` names it for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def uuid_text(raw: bytes) -> str:
    if len(raw) != 16:
        raise RecordError("bad_uuid", f"uuid has {len(raw)} bytes, not 16")
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# (epoch second, its text), one object so threads never see half; starts with a second no
# valid time has, and only validated seconds are cached
_second: tuple[int, str] = (-(1 << 62), "")


def rfc3339_us(time_us: int) -> str:
    """Microseconds since the epoch → ``2026-11-25T12:00:00.000001Z``."""
    global _second
    sec, us = divmod(time_us, 1_000_000)
    cached = _second
    if cached[0] != sec:
        if time_us < 0 or time_us > _MAX_TIME_US:
            raise RecordError("bad_time", f"time {time_us} µs is out of range")
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{cached[1]}.{us:06d}Z"


# Shared objects repeat across records (the same programs load the same libraries). The
# decoder parses with "view" classes of ProcessStart/ProcessEnd in which `libs` is
# `repeated bytes` (same wire format: length-delimited), so each library arrives as its
# raw SharedObject bytes; those key a cache of finished dicts, shared between records
# (read-only by contract). Only a cache miss parses the SharedObject.
def _view_classes() -> tuple[Any, Any]:
    fdp = descriptor_pb2.FileDescriptorProto()
    ogrt_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = "ogrt_libs_as_bytes.proto"
    fdp.package = "ogrt_libs_as_bytes"
    for msg in fdp.message_type:
        for f in msg.field:
            if f.name == "libs":
                f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                f.ClearField("type_name")
            elif f.type_name.startswith(".ogrt."):  # other messages (JobInfo): in the copy
                f.type_name = ".ogrt_libs_as_bytes." + f.type_name[len(".ogrt."):]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("ogrt_libs_as_bytes.ProcessStart")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("ogrt_libs_as_bytes.ProcessEnd")))


ProcessStartView, ProcessEndView = _view_classes()


class LibList(list):  # type: ignore[type-arg]
    """A record's "libs": one list object shared by the records that name the same
    libraries (read-only, like the dicts in it), with ``key`` = (paths, signatures),
    from which the SQL outputs find the library set without walking the list again."""

    __slots__ = ("key",)
    key: tuple[tuple[str, ...], tuple[str | None, ...]]


class _BoundedCache(dict):  # type: ignore[type-arg]
    """A dict bounded by a count of bytes, not entries (a payload is untrusted: one library
    entry may be as large as a frame), emptied when an entry would take it past
    CACHE_MAX_BYTES. `bytes` is approximate when two receiving threads put at once."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def put(self, key: Any, value: Any, cost: int) -> None:
        if self.bytes + cost > CACHE_MAX_BYTES:
            self.clear()
            self.bytes = 0
        self[key] = value
        self.bytes += cost


CACHE_MAX_BYTES = 8 << 20  # per cache
#: SharedObject bytes -> its dict; counted as twice its bytes plus 256 (the dict, two strings)
_LIB_CACHE = _BoundedCache()
#: all of a record's SharedObject bytes -> its LibList; counted as the bytes of its entries
_LIST_CACHE = _BoundedCache()


def _lib(raw: bytes) -> dict[str, str | None]:
    lib = ogrt_pb2.SharedObject()
    try:
        lib.ParseFromString(raw)
    except Exception as exc:
        raise RecordError("bad_payload", f"a library entry does not parse: {exc}") from None
    d = {"path": escape(lib.path), "signature": escape(lib.signature) if lib.signature else None}
    _LIB_CACHE.put(raw, d, 2 * len(raw) + 256)
    return d


_path, _signature = itemgetter("path"), itemgetter("signature")


def libs_key(libs: Any) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """(paths, signatures) of a list of library dicts: a LibList's own key, else built."""
    key = getattr(libs, "key", None)
    if key is not None:
        return key  # type: ignore[no-any-return]
    try:
        return tuple(map(_path, libs)), tuple(map(_signature, libs))
    except KeyError:  # a record without "signature" keys (hand-written, or from elsewhere)
        return tuple(lib["path"] for lib in libs), tuple(lib.get("signature") for lib in libs)


def _libs(libs: Any) -> LibList:
    raws = tuple(libs[:])  # one call into upb for the whole list, not one per item
    found = _LIST_CACHE.get(raws)
    if found is not None:
        return found
    out = list(map(_LIB_CACHE.get, raws))
    if None in out:
        out = [d or _lib(raw) for d, raw in zip(out, raws)]
    lst = LibList(out)
    lst.key = libs_key(out)
    _LIST_CACHE.put(raws, lst, sum(map(len, raws)))
    return lst


_decode = bytes.decode


def _texts(items: Any) -> list[str]:
    """A repeated bytes field → escaped texts; clean ASCII (the common case) at C speed."""
    lst = items[:]
    if not lst:
        return lst  # type: ignore[no-any-return]
    joined = b"".join(lst)
    if joined.isascii() and b"\\" not in joined and b"\0" not in joined:
        return list(map(_decode, lst))
    return list(map(escape, lst))


def _env(env: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env[:]:
        name, _, value = item.partition(b"=")
        out[escape(name)] = escape(value)
    return out


UserResolver = Callable[[int], "str | None"]


def start_record(msg: Any, peer: str, resolve_user: UserResolver) -> dict[str, Any]:
    uid = msg.uid
    user = resolve_user(uid)
    if user is None and msg.user:
        user = escape(msg.user)
    job_id = msg.job_id
    signature = msg.signature
    return {
        "event": "start",
        "id": uuid_text(msg.uuid),
        "time": rfc3339_us(msg.time_us),
        "host": escape(msg.hostname),
        "peer": peer,
        "job_id": escape(job_id) if job_id else None,
        "pid": msg.pid,
        "ppid": msg.ppid,
        "uid": uid,
        "gid": msg.gid,
        "user": user,
        "exe": escape(msg.exe),
        "args": _texts(msg.args),
        "cwd": escape(msg.cwd),
        "env": _env(msg.env),
        "modules": _texts(msg.modules),
        "rank": msg.rank if msg.HasField("rank") else None,
        "libs": _libs(msg.libs),
        "signature": escape(signature) if signature else None,
        "step_id": escape(msg.step_id) if msg.step_id else None,
        "verified": False,  # True: pid/uid/gid checked by a node relay (ogrt/protocols/relay.py)
    }


def end_record(msg: Any, peer: str, resolve_user: UserResolver) -> dict[str, Any]:
    uid = msg.uid
    job_id = msg.job_id
    time_us = msg.time_us
    start_us = msg.start_time_us
    return {
        "event": "end",
        "id": uuid_text(msg.uuid),
        "time": rfc3339_us(time_us),
        "host": escape(msg.hostname),
        "peer": peer,
        "job_id": escape(job_id) if job_id else None,
        "pid": msg.pid,
        "uid": uid,
        "user": resolve_user(uid),
        "libs": _libs(msg.libs),
        "start_time": rfc3339_us(start_us),
        "exit_status": msg.exit_status if msg.HasField("exit_status") else None,
        "duration": (time_us - start_us) / 1e6,
        "utime": msg.utime_us / 1e6,
        "stime": msg.stime_us / 1e6,
        "maxrss_kb": msg.maxrss_kb,
        "minflt": msg.minflt,
        "majflt": msg.majflt,
        "inblock": msg.inblock,
        "oublock": msg.oublock,
        "nvcsw": msg.nvcsw,
        "nivcsw": msg.nivcsw,
        "verified": False,
    }


#: the job record's keys after "event": (key, JobInfo field, kind); kind "text" is escaped bytes
#: (null when empty), "int" an optional number (null when unset), "time" epoch seconds as
#: RFC 3339 text (null when unset)
JOB_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("job_id", "job_id", "text"), ("array_job_id", "array_job_id", "text"),
    ("array_task_id", "array_task_id", "int"), ("user", "user", "text"), ("uid", "uid", "int"),
    ("account", "account", "text"), ("partition", "partition", "text"), ("name", "name", "text"),
    ("nodelist", "nodelist", "text"), ("num_nodes", "num_nodes", "int"),
    ("num_tasks", "num_tasks", "int"), ("num_cpus", "num_cpus", "int"),
    ("submit_time", "submit_time", "time"), ("start_time", "start_time", "time"),
    ("end_time", "end_time", "time"), ("work_dir", "work_dir", "text"), ("state", "state", "text"),
    ("exit_code", "exit_code", "int"), ("exit_signal", "exit_signal", "int"),
    ("cluster", "cluster", "text"),
)
_MAX_TIME_S = _MAX_TIME_US // 1_000_000


def job_record(msg: Any, event: str, peer: str) -> dict[str, Any]:
    """A JobStart/JobEnd message → {"event": "job_start"|"job_end", "time", "peer", job keys}."""
    job = msg.job
    if not job.job_id:
        raise RecordError("bad_job", "job record without job_id")
    rec: dict[str, Any] = {"event": event,
                           "time": rfc3339_us(job.time_us) if job.HasField("time_us") else None,
                           "peer": peer}
    for key, field, kind in JOB_FIELDS:
        if kind == "text":
            raw = getattr(job, field)
            rec[key] = escape(raw) if raw else None
        elif not job.HasField(field):
            rec[key] = None
        elif kind == "int":
            rec[key] = getattr(job, field)
        else:
            sec = getattr(job, field)
            if not 0 <= sec <= _MAX_TIME_S:
                raise RecordError("bad_time", f"{field} {sec} s is out of range")
            rec[key] = rfc3339_us(sec * 1_000_000)[:-8] + "Z"
    return rec


#: parses into one message before it is replaced (its arena grows with each parse)
REUSE_PARSES = 64


class Decoder:
    """Payload of a ProcessStart/ProcessEnd/JobStart/JobEnd frame → record dict; RecordError (with a reason) otherwise.

    Not thread-safe (one per receiving thread). Each message is parsed into up to
    REUSE_PARSES times: re-parsing into one upb message grows its arena (bounded by that
    count), while a new message per record costs an arena per record, and upb calls
    malloc_trim() every 10,000 arena frees: the pages it gives back are faulted in again.
    """

    def __init__(self, resolve_user: UserResolver) -> None:
        self._resolve_user = resolve_user
        self._start: Any = ProcessStartView()
        self._end: Any = ProcessEndView()
        self._uses = 0

    def decode(self, mtype: int, payload: bytes, peer: str) -> dict[str, Any]:
        self._uses += 1
        if self._uses > REUSE_PARSES:
            self._start, self._end, self._uses = ProcessStartView(), ProcessEndView(), 1
        if mtype == PROCESS_START:
            msg: Any = self._start
            build: Any = start_record
        elif mtype == PROCESS_END:
            msg = self._end
            build = end_record
        elif mtype == JOB_START or mtype == JOB_END:
            job: Any = ogrt_pb2.JobStart() if mtype == JOB_START else ogrt_pb2.JobEnd()
            try:
                job.ParseFromString(payload)
            except Exception as exc:
                raise RecordError("bad_payload", f"type {mtype} payload does not parse: {exc}") from None
            return job_record(job, "job_start" if mtype == JOB_START else "job_end", peer)
        else:
            raise RecordError("unknown_type", f"unknown message type {mtype}")
        try:
            msg.ParseFromString(payload)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            raise RecordError("bad_payload", f"type {mtype} payload does not parse: {exc}") from None
        return build(msg, peer, self._resolve_user)
