"""Outputs: where the daemon writes records. `OUTPUT_TYPES` maps a config `type` to its class."""
from __future__ import annotations

from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.json_tcp import JsonTcpOutput
from ogrt.outputs.jsonl import JsonlOutput
from ogrt.outputs.nats import NatsOutput
from ogrt.outputs.null import NullOutput
from ogrt.outputs.postgresql import PostgresOutput
from ogrt.outputs.sqlite import SqliteOutput

OUTPUT_TYPES: dict[str, type[Output]] = {
    "jsonl": JsonlOutput,
    "json_tcp": JsonTcpOutput,
    "nats": NatsOutput,
    "null": NullOutput,
    "postgresql": PostgresOutput,
    "sqlite": SqliteOutput,
}

__all__ = ["OUTPUT_TYPES", "Output", "OutputError"]
