"""ogrt.conf (TOML) → one validated, frozen Config.

Every key is optional. Any bad key raises ConfigError naming its dotted key and why,
e.g. ``outputs.x.type: unknown output type "foo" (known: jsonl, null, ...)``.
Output-specific keys are checked by the output class (``OUTPUT_TYPES[type].validate``).
"""
from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ogrt.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Config", "ServerConfig", "MetricsConfig", "OutputConfig", "load_config", "parse_config",
           "ConfigError", "DEFAULT_STATE_DIR", "default_state_dir"]

DEFAULT_STATE_DIR = Path("/var/lib/ogrt")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRANSPORTS = ("tcp", "udp")
# outputs writing a file: without `path` they write <state_dir>/<NAME>.<suffix>
# (`[outputs.default]`: <state_dir>/ogrt.<suffix>)
FILE_OUTPUTS = {"sqlite": "sqlite", "jsonl": "jsonl"}


@dataclass(frozen=True)
class ServerConfig:
    address: str = "0.0.0.0"
    port: int = 7971
    transports: tuple[str, ...] = TRANSPORTS
    workers: int = 1
    max_frame_bytes: int = 4 << 20
    idle_timeout: float = 60.0
    max_connections: int = 4096
    max_connections_per_peer: int = 0  # 0: max_connections / 4
    state_dir: Path = DEFAULT_STATE_DIR
    log_level: str = "info"
    # extensions (documented in the README section of the daemon)
    udp_rcvbuf: int = 32 << 20
    fragment_timeout: float = 10.0
    fragment_max_bytes: int = 64 << 20
    max_buffered_bytes: int = 256 << 20
    shutdown_timeout: float = 60.0


@dataclass(frozen=True)
class MetricsConfig:
    address: tuple[str, int] | None = None


@dataclass(frozen=True)
class OutputConfig:
    name: str
    type: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    spool_max_bytes: int = 1 << 30
    outputs: tuple[OutputConfig, ...] = ()
    path: Path | None = None


def default_state_dir() -> Path:
    """/var/lib/ogrt when usable, else $XDG_STATE_HOME/ogrt (~/.local/state/ogrt)."""
    d = DEFAULT_STATE_DIR
    probe = d if d.exists() else d.parent
    if os.access(probe, os.W_OK | os.X_OK):
        return d
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(xdg) / "ogrt"


# -- small typed getters ---------------------------------------------------------------
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "a list"}


def _get(table: Mapping[str, Any], key: str, where: str, types: tuple[type, ...], default: Any,
         check: Callable[[Any], str | None] | None = None) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise ConfigError(f"{where}.{key}", f"must be {want}, got {type(value).__name__} {value!r}")
    if check is not None:
        why = check(value)
        if why:
            raise ConfigError(f"{where}.{key}", f"{why}, got {value!r}")
    if float in types and isinstance(value, int):
        value = float(value)
    return value


def _unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{prefix}{key}", f"unknown key (known: {', '.join(sorted(known))})")


def _range(lo: float, hi: float | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v < lo or (hi is not None and v > hi):
            return f"must be between {lo} and {hi}" if hi is not None else f"must be >= {lo}"
        return None
    return check


def _address(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return "must be an IP address such as 0.0.0.0, 127.0.0.1 or ::"
    return None


def _host_port(value: Any, key: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ConfigError(key, f'must be a string "host:port", got {type(value).__name__} {value!r}')
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(key, f'must be "host:port" (e.g. "127.0.0.1:9971"), got {value!r}')
    if _address(host):
        raise ConfigError(key, f"host must be an IP address, got {host!r}")
    return host, int(port_text)


# -- sections ----------------------------------------------------------------------------
_SERVER_KEYS = {f for f in ServerConfig.__dataclass_fields__}


def _server(t: Mapping[str, Any]) -> ServerConfig:
    w = "server"
    _unknown(t, _SERVER_KEYS, w)
    d = ServerConfig()
    transports = _get(t, "transports", w, (list,), list(d.transports))
    for item in transports:
        if item not in TRANSPORTS:
            raise ConfigError("server.transports", f"unknown transport {item!r} (known: tcp, udp)")
    if not transports:
        raise ConfigError("server.transports", "must name at least one transport (tcp, udp)")
    state_dir = _get(t, "state_dir", w, (str,), None, lambda v: None if v else "must not be empty")
    return ServerConfig(
        address=_get(t, "address", w, (str,), d.address, _address),
        port=_get(t, "port", w, (int,), d.port, _range(0, 65535)),
        transports=tuple(dict.fromkeys(transports)),
        workers=_get(t, "workers", w, (int,), d.workers, _range(1, 256)),
        max_frame_bytes=_get(t, "max_frame_bytes", w, (int,), d.max_frame_bytes, _range(1024, 1 << 30)),
        idle_timeout=_get(t, "idle_timeout", w, (int, float), d.idle_timeout, _range(0.1)),
        max_connections=_get(t, "max_connections", w, (int,), d.max_connections, _range(1)),
        max_connections_per_peer=_get(t, "max_connections_per_peer", w, (int,), d.max_connections_per_peer,
                                      _range(0)),
        state_dir=Path(state_dir) if state_dir else default_state_dir(),
        log_level=_get(t, "log_level", w, (str,), d.log_level,
                       lambda v: None if v.lower() in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"
                       ).lower(),
        udp_rcvbuf=_get(t, "udp_rcvbuf", w, (int,), d.udp_rcvbuf, _range(0)),
        fragment_timeout=_get(t, "fragment_timeout", w, (int, float), d.fragment_timeout, _range(0.1)),
        fragment_max_bytes=_get(t, "fragment_max_bytes", w, (int,), d.fragment_max_bytes, _range(0)),
        max_buffered_bytes=_get(t, "max_buffered_bytes", w, (int,), d.max_buffered_bytes, _range(1024)),
        shutdown_timeout=_get(t, "shutdown_timeout", w, (int, float), d.shutdown_timeout, _range(0.1)),
    )


def _outputs(t: Any, state_dir: Path) -> tuple[OutputConfig, ...]:
    from ogrt.outputs import OUTPUT_TYPES  # late: the outputs import their backends

    if not isinstance(t, Mapping):
        raise ConfigError("outputs", "must be a table of [outputs.NAME] tables")
    if not t:  # the embedded default
        t = {"default": {"type": "sqlite", "path": str(state_dir / "ogrt.sqlite")}}
    out = []
    for name, options in t.items():
        where = f"outputs.{name}"
        if not isinstance(options, Mapping):
            raise ConfigError(where, f"must be a table ([{where}]), got {type(options).__name__}")
        if "/" in name or name in (".", "..") or not name.isprintable():
            raise ConfigError(where, "output names must be printable and contain no '/'")
        type_name = options.get("type")
        if type_name is None:
            raise ConfigError(f"{where}.type", f"required key is missing (one of: {', '.join(sorted(OUTPUT_TYPES))})")
        if not isinstance(type_name, str) or type_name not in OUTPUT_TYPES:
            raise ConfigError(f"{where}.type",
                              f'unknown output type "{type_name}" (known: {", ".join(sorted(OUTPUT_TYPES))})')
        if type_name in FILE_OUTPUTS and "path" not in options:  # a file in state_dir
            stem = "ogrt" if name == "default" else name
            options = {**options, "path": str(state_dir / f"{stem}.{FILE_OUTPUTS[type_name]}")}
        validated = OUTPUT_TYPES[type_name].validate(name, options)
        out.append(OutputConfig(name, type_name, MappingProxyType(dict(validated))))
    return tuple(out)


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> Config:
    _unknown(data, {"server", "metrics", "spool", "outputs"}, "")
    for section in ("server", "metrics", "spool"):
        if section in data and not isinstance(data[section], Mapping):
            raise ConfigError(section, f"must be a table ([{section}])")
    server = _server(data.get("server", {}))
    m = data.get("metrics", {})
    _unknown(m, {"address"}, "metrics")
    metrics = MetricsConfig(_host_port(m["address"], "metrics.address") if "address" in m else None)
    s = data.get("spool", {})
    _unknown(s, {"max_bytes"}, "spool")
    spool_max = _get(s, "max_bytes", "spool", (int,), Config.spool_max_bytes, _range(0))
    outputs = _outputs(data.get("outputs", {}), server.state_dir)
    return Config(server, metrics, spool_max, outputs, path)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a file; None gives the defaults (port 7971, SQLite in state_dir)."""
    if path is None:
        return parse_config({})
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(str(p), f"cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), f"not valid TOML: {e}") from None
    return parse_config(data, p.resolve())
