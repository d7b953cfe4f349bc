"""`jsonl` output: one JSON object per line, appended to a file, one write() per batch.

Durability: with `fsync = "batch"` (default) the file is fsync()ed after every batch, so a
batch the runner counts as persisted survives a power loss. With `fsync = "never"` the
data is in the page cache when counted and reaches the disk when the kernel writes it back
(a crash of the daemon loses nothing; a crash of the machine may lose the last ~30 s).

Several processes (daemon workers) may append to the same path: every batch is written
under an exclusive flock on `PATH.lock`, which also serializes rotation. Each writer notices
a rotation done by another one (the inode of PATH changed) and reopens.

Rotation (`rotate_bytes` > 0): when PATH reaches that size after a batch, it is renamed to
`PATH.YYYYmmddTHHMMSS` (UTC; `.1`, `.2`, ... appended if that name exists) in the same
directory, and a new PATH is started. Lines are never split across files.

Files are created 0640 (a rotation keeps its file's mode), directories 0750 (ogrt/filemodes.py).
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ogrt.filemodes import FILE_MODE, make_dirs
from ogrt.outputs import options as opt
from ogrt.outputs.base import Output, OutputError

__all__ = ["JsonlOutput", "record_json", "json_lines"]


def record_json(record: dict[str, Any]) -> bytes:
    """One record as compact JSON (no newline): what the `nats` output publishes."""
    return orjson.dumps(record)


def json_lines(records: Sequence[dict[str, Any]]) -> bytes:
    """Records as newline-delimited JSON, one line each (jsonl files, json_tcp streams)."""
    dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return b"".join([dumps(r, option=nl) for r in records])


class JsonlOutput(Output):
    type_name = "jsonl"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.path: str = self.options["path"]
        self.rotate_bytes: int = self.options["rotate_bytes"]
        self.fsync: bool = self.options["fsync"] == "batch"
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._ino: tuple[int, int] | None = None

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        return opt.check(name, options, {
            "path": opt.Key((str,), check=opt.non_empty),
            "rotate_bytes": opt.Key((int,), 0, opt.non_negative),
            "fsync": opt.Key((str,), "batch", opt.one_of("batch", "never")),
        })

    # -- file handling -------------------------------------------------------------
    def open(self) -> None:
        try:
            d = os.path.dirname(os.path.abspath(self.path))
            make_dirs(d)
            if self._lock_fd is None:
                self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                        FILE_MODE)
            self._reopen()
        except OSError as e:
            raise OutputError(f"jsonl {self.path}: {e}") from e

    def _reopen(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        st = os.fstat(fd)
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)

    def _current(self) -> None:
        """Reopen when another writer rotated (or someone removed) the file."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._ino and self._fd is not None:
                return
        except FileNotFoundError:
            pass
        self._reopen()

    def _rotate(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target, n = f"{self.path}.{stamp}", 0
        while os.path.exists(target):
            n += 1
            target = f"{self.path}.{stamp}.{n}"
        os.rename(self.path, target)
        self._reopen()

    # -- writing -------------------------------------------------------------------
    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        data = json_lines(records)
        try:
            if self._lock_fd is None:
                self.open()
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._current()
                assert self._fd is not None
                self._append(data)
                if self.fsync:
                    os.fsync(self._fd)
                if self.rotate_bytes and os.fstat(self._fd).st_size >= self.rotate_bytes:
                    self._rotate()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except OSError as e:
            # e.g. disk full: the runner spools the batch and retries it later
            raise OutputError(f"jsonl {self.path}: {e}") from e

    def _append(self, data: bytes) -> None:
        """Append all of `data`; on failure cut the file back so no torn line stays."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            try:
                os.ftruncate(self._fd, size)  # we hold the lock: nobody appended since
            except OSError:
                pass
            raise

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._lock_fd = None
