"""Report test fixtures: the records of records.py written by the real SQL outputs.

`report_db` is parametrized over the SQLite output (a temp file) and the PostgreSQL output
(the `postgres` fixture's server, a fresh database); it yields the `--db` value.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from ogrt.outputs.base import Output
from tests.report.records import dataset


def output_class(type_name: str) -> type[Output]:
    """The output registered for `type = type_name` (its module when not registered yet)."""
    from ogrt.outputs import OUTPUT_TYPES

    if type_name in OUTPUT_TYPES:
        return OUTPUT_TYPES[type_name]
    module = importlib.import_module(f"ogrt.outputs.{type_name}")
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Output) and getattr(obj, "type_name", None) == type_name:
            return obj
    raise LookupError(type_name)


def write_records(type_name: str, options: dict[str, Any], records: Sequence[dict[str, Any]],
                  batch: int = 7) -> None:
    """Write records through the real output, in batches (start and end may be split)."""
    cls = output_class(type_name)
    out = cls("reporttest", cls.validate("reporttest", options))
    out.open()
    try:
        for i in range(0, len(records), batch):
            out.write(records[i:i + batch])
    finally:
        out.close()


def pg_options(dsn: str) -> dict[str, Any]:
    """The postgresql output's options for a connection string."""
    return {"type": "postgresql", "dsn": dsn}


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("report") / "ogrt.sqlite")
    write_records("sqlite", {"type": "sqlite", "path": path}, dataset())
    return path


@pytest.fixture(scope="session")
def pg_db(postgres: Any) -> str:
    dsn = postgres.new_database()
    write_records("postgresql", pg_options(dsn), dataset())
    return dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def report_db(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
