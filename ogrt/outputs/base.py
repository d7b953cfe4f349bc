"""The interface every output implements.

An output is one configured destination (`[outputs.NAME]` in ogrt.conf). The daemon
hands it batches of records; the output runner (ogrt/outputs/runner.py) wraps it with
batching, the on-disk spool and metrics, so an output itself only knows its backend.

Records are plain dicts with the keys documented in README.md ("Record format"):
times are RFC 3339 UTC text with microseconds, text is escaped per ogrt/textenc.py,
so every value is JSON-ready.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class OutputError(Exception):
    """The backend is unavailable or refused a batch; the runner spools and retries it."""


class Output(abc.ABC):
    """One destination. All methods run in the output's own thread and may block."""

    #: the `type = "..."` value in ogrt.conf
    type_name: ClassVar[str]

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        self.name = name
        self.options = dict(options)
        self.worker_index = worker_index

    @classmethod
    @abc.abstractmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check this type's keys; return them with defaults filled in.

        Raises ogrt.config.ConfigError naming the key (`outputs.NAME.KEY`) and why.
        """

    @abc.abstractmethod
    def open(self) -> None:
        """Connect / create files or schema. Raise OutputError if the backend is down."""

    @abc.abstractmethod
    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Persist a batch. On return the batch is as durable as the output documents.

        Raise OutputError when the backend is unavailable: the whole batch is then
        spooled and written again later, in order (so writes must be idempotent per
        record id where the backend allows: SQL outputs upsert by uuid).
        """

    def close(self) -> None:
        """Flush and release the backend. Called once at shutdown."""
