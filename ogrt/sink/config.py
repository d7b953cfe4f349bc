"""sink.conf (TOML) → one validated, frozen SinkConfig.

    [sink]     state_dir, log_level, retry_max_seconds
    [source]   type = "nats", the connection keys of ogrt/natsclient.py (servers, stream, ...),
               durable, batch, fetch_timeout, ack_wait, max_ack_pending
    [metrics]  address = "host:port"          (as in ogrt.conf)
    [outputs.NAME]  any output type of ogrt.conf except nats (at least one)

Every table goes through ogrt/keys.py's checker; a bad key raises ConfigError naming it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ogrt import natsclient
from ogrt.config import MetricsConfig, OutputConfig, default_state_dir, log_level, parse_outputs, read_toml
from ogrt.errors import ConfigError
from ogrt.keys import Key, at_least, between, check_table, keys_of, non_empty, one_of, option, positive

__all__ = ["SinkConfig", "SinkSection", "SOURCE_KEYS", "is_sink_config", "load_sink_config",
           "parse_sink_config"]


@dataclass(frozen=True)
class SinkSection:
    """`[sink]`."""

    state_dir: Path = option((str,), check=non_empty, convert=Path, factory=default_state_dir)
    log_level: str = option((str,), "info", convert=log_level)
    retry_max_seconds: float = option((int, float), 30.0, positive)  # back-off cap when an output fails


#: `[source]` keys (type = "nats" is the only source so far)
SOURCE_KEYS: dict[str, Key] = {
    "type": Key((str,), check=one_of("nats")),
    **natsclient.KEYS,
    "durable": Key((str,), "ogrt-sink", natsclient.KEYS["stream"].check),
    "batch": Key((int,), 500, between(1, 100_000)),
    "fetch_timeout": Key((int, float), 1.0, between(0.05, 60)),
    "ack_wait": Key((int, float), 60.0, at_least(1)),
    "max_ack_pending": Key((int,), 20_000, at_least(1)),
}


@dataclass(frozen=True)
class SinkConfig:
    sink: SinkSection = field(default_factory=SinkSection)
    source: Mapping[str, Any] = field(default_factory=dict)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    outputs: tuple[OutputConfig, ...] = ()
    path: Path | None = None


_TOP = {"sink": Key((Mapping,), {}), "source": Key((Mapping,)), "metrics": Key((Mapping,), {}),
        "outputs": Key((Mapping,))}


def is_sink_config(data: Mapping[str, Any]) -> bool:
    """A `[source]` table makes a file a sink's config."""
    return "source" in data


def parse_sink_config(data: Mapping[str, Any], path: Path | None = None) -> SinkConfig:
    tables = check_table("", data, _TOP)
    sink = SinkSection(**check_table("sink", tables["sink"], keys_of(SinkSection)))
    source = check_table("source", tables["source"], SOURCE_KEYS)
    natsclient.check_auth("source", source)
    if not tables["outputs"]:
        raise ConfigError("outputs", "a sink needs at least one [outputs.NAME]")
    outputs = parse_outputs(tables["outputs"], sink.state_dir)
    for oc in outputs:
        if oc.type == "nats":
            raise ConfigError(f"outputs.{oc.name}.type", "a sink writes to stores, not back to NATS")
    metrics = MetricsConfig(**check_table("metrics", tables["metrics"], keys_of(MetricsConfig)))
    return SinkConfig(sink, MappingProxyType(source), metrics, outputs, path)


def load_sink_config(path: str | os.PathLike[str]) -> SinkConfig:
    return parse_sink_config(read_toml(path), Path(path).resolve())
