"""ogrt.conf (TOML) → one validated, frozen Config.

Every key is optional and declared once, with its type, default and check, as a field of
its section's dataclass below; ogrt/keys.py checks every table against those declarations.
Any bad key raises ConfigError naming its dotted key and why, e.g.
``outputs.x.type: unknown output type "foo" (known: jsonl, null, ...)``.
Output-specific keys are checked by the output class (``OUTPUT_TYPES[type].validate``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ogrt.age import Age, parse_age
from ogrt.allowlist import Network, parse_networks
from ogrt.errors import ConfigError
from ogrt.keys import (Key, at_least, between, check_table, host_port, ip_address, keys_of, non_empty,
                       one_of, option)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Config", "ServerConfig", "MetricsConfig", "SpoolConfig", "WebConfig", "RetentionConfig", "RelayConfig",
           "OutputConfig", "load_config", "parse_config", "parse_outputs", "read_toml", "ConfigError",
           "DEFAULT_STATE_DIR", "default_state_dir", "log_level"]

DEFAULT_STATE_DIR = Path("/var/lib/ogrt")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRANSPORTS = ("tcp", "udp")
# outputs writing a file: without `path` they write <state_dir>/<NAME>.<suffix>
# (`[outputs.default]`: <state_dir>/ogrt.<suffix>)
FILE_OUTPUTS = {"sqlite": "sqlite", "jsonl": "jsonl"}


def default_state_dir() -> Path:
    """/var/lib/ogrt when usable, else $XDG_STATE_HOME/ogrt (~/.local/state/ogrt)."""
    d = DEFAULT_STATE_DIR
    probe = d if d.exists() else d.parent
    if os.access(probe, os.W_OK | os.X_OK):
        return d
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(xdg) / "ogrt"


def _transports(value: list[Any]) -> tuple[str, ...]:
    for item in value:
        if item not in TRANSPORTS:
            raise ValueError(f"unknown transport {item!r} (known: {', '.join(TRANSPORTS)})")
    if not value:
        raise ValueError(f"must name at least one transport ({', '.join(TRANSPORTS)})")
    return tuple(dict.fromkeys(value))


def _upstream(value: list[Any]) -> tuple[tuple[str, int], ...]:
    if not value:
        raise ValueError('must name at least one collector ("host:port")')
    out = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a \"host:port\" string")
        out.append(host_port(item))
    return tuple(out)


def _user_names(value: list[Any]) -> tuple[str, ...]:
    for item in value:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{item!r} is not a user name")
    return tuple(value)


def log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value.lower()


@dataclass(frozen=True)
class ServerConfig:
    """`[server]`."""

    address: str = option((str,), "0.0.0.0", ip_address)
    port: int = option((int,), 7971, between(0, 65535))
    transports: tuple[str, ...] = option((list,), TRANSPORTS, convert=_transports)
    workers: int = option((int,), 1, between(1, 256))
    max_frame_bytes: int = option((int,), 4 << 20, between(1024, 1 << 30))
    idle_timeout: float = option((int, float), 60.0, at_least(0.1))
    max_connections: int = option((int,), 4096, at_least(1))
    max_connections_per_peer: int = option((int,), 0, at_least(0))  # 0: see connections_per_peer
    state_dir: Path = option((str,), check=non_empty, convert=Path, factory=default_state_dir)
    log_level: str = option((str,), "info", convert=log_level)
    udp_rcvbuf: int = option((int,), 32 << 20, at_least(0))
    fragment_timeout: float = option((int, float), 10.0, at_least(0.1))
    fragment_max_bytes: int = option((int,), 64 << 20, at_least(0))
    max_buffered_bytes: int = option((int,), 256 << 20, at_least(1024))
    shutdown_timeout: float = option((int, float), 60.0, at_least(0.1))
    #: senders records are taken from (CIDR list); absent: every address
    allowed_networks: tuple[Network, ...] | None = option((list,), None, convert=parse_networks)
    #: the relay listener (ogrt/protocols/relay.py, protocol/relay.md); absent: none
    relay_port: int | None = option((int,), None, between(0, 65535))
    #: users besides root whose MUNGE credential a relay connection may carry
    relay_users: tuple[str, ...] = option((list,), (), convert=_user_names)
    munge_socket: str = option((str,), "/run/munge/munge.socket.2", non_empty)
    #: "reject": process records straight from libraries (TCP/UDP) are refused and counted
    direct: str = option((str,), "accept", one_of("accept", "reject"))

    @property
    def connections_per_peer(self) -> int:
        """TCP connections allowed from one IP address: `max_connections_per_peer`, 0 = a quarter
        of `max_connections`."""
        return self.max_connections_per_peer or max(1, self.max_connections // 4)


@dataclass(frozen=True)
class MetricsConfig:
    """`[metrics]`: `address = "host:port"` serves /metrics there; absent, no metrics."""

    address: tuple[str, int] | None = option((str,), None, convert=host_port)


@dataclass(frozen=True)
class SpoolConfig:
    """`[spool]`."""

    max_bytes: int = option((int,), 1 << 30, at_least(0))  # per output and worker


def _base_path(value: str) -> str:
    if value and (not value.startswith("/") or value.endswith("/") or "//" in value
                  or not all(c.isalnum() or c in "/-._~" for c in value)):
        raise ValueError('must be "" or a URL path like "/ogrt" (no trailing "/")')
    return value


def _proxies(value: list[Any]) -> tuple[str, ...]:
    for item in value:
        if not isinstance(item, str) or ip_address(item):
            raise ValueError(f"{item!r} is not an IP address")
    return tuple(value)


def _web_users(value: Mapping[str, Any]) -> Mapping[str, str]:
    from ogrt.web.passwords import is_hash  # late: ogrt.web needs the web extra, this does not

    for name, digest in value.items():
        if not isinstance(digest, str) or not is_hash(digest):
            raise ValueError(f"user {name!r}: not a password hash from `ogrt web hash-password` "
                             "(plain-text passwords are not accepted)")
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class WebConfig:
    """`[web]`: the `ogrt web` dashboard; `[web.users]` NAME = "HASH" for `auth = "basic"`."""

    address: tuple[str, int] = option((str,), ("127.0.0.1", 8971), convert=host_port)
    auth: str = option((str,), "none", one_of("none", "basic", "proxy"))
    users: Mapping[str, str] = option((Mapping,), convert=_web_users, factory=lambda: MappingProxyType({}),
                                     secret=True)
    proxy_header: str = option((str,), "X-Remote-User", non_empty)
    proxies: tuple[str, ...] = option((list,), (), convert=_proxies)
    base_path: str = option((str,), "", convert=_base_path)
    show_args: bool = option((bool,), False)
    output: str | None = option((str,), None, non_empty)  # the SQL output to read (default: the first)
    cache_seconds: float = option((int, float), 60.0, between(0, 86400))  # a page's data is reused this long


@dataclass(frozen=True)
class RetentionConfig:
    """`[retention]`: `max_age = "400d"` purges the SQL outputs once a day (ogrt/retention.py)."""

    max_age: Age | None = option((str,), None, convert=parse_age)


@dataclass(frozen=True)
class RelayConfig:
    """`[relay]`: `ogrt relay`, the node-local relay (ogrt/relay/)."""

    socket: str = option((str,), "/run/ogrt/relay.sock", non_empty)
    upstream: tuple[tuple[str, int], ...] = option((list,), (("127.0.0.1", 7972),), convert=_upstream)
    spool_dir: Path = option((str,), Path("/var/spool/ogrt-relay"), non_empty, convert=Path)
    spool_max_bytes: int = option((int,), 1 << 30, at_least(1 << 16))
    munge_socket: str = option((str,), "/run/munge/munge.socket.2", non_empty)
    batch_records: int = option((int,), 500, between(1, 100_000))
    batch_bytes: int = option((int,), 1 << 20, between(1024, 64 << 20))
    flush_interval: float = option((int, float), 0.05, between(0.001, 60))
    max_memory_bytes: int = option((int,), 64 << 20, at_least(1 << 16))  # unacked + queued batches
    ack_timeout: float = option((int, float), 10.0, at_least(0.1))
    connect_timeout: float = option((int, float), 3.0, at_least(0.05))
    drain_timeout: float = option((int, float), 10.0, at_least(0.0))
    max_frame_bytes: int = option((int,), 4 << 20, between(1024, 1 << 30))
    fragment_timeout: float = option((int, float), 10.0, at_least(0.1))
    fragment_max_bytes: int = option((int,), 64 << 20, at_least(0))
    rcvbuf: int = option((int,), 8 << 20, at_least(0))
    #: datagrams the socket may queue (see ogrt/relay/receive.py); 0: net.unix.max_dgram_qlen
    queue_length: int = option((int,), 4096, between(0, 1 << 20))
    metrics: tuple[str, int] | None = option((str,), None, convert=host_port)
    log_level: str = option((str,), "info", convert=log_level)


@dataclass(frozen=True)
class OutputConfig:
    name: str
    type: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    web: WebConfig = field(default_factory=WebConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    outputs: tuple[OutputConfig, ...] = ()
    path: Path | None = None


_SECTIONS = {"server": ServerConfig, "metrics": MetricsConfig, "spool": SpoolConfig, "web": WebConfig,
             "retention": RetentionConfig, "relay": RelayConfig}
_TOP = {name: Key((Mapping,), {}) for name in (*_SECTIONS, "outputs")}


def parse_outputs(t: Mapping[str, Any], state_dir: Path) -> tuple[OutputConfig, ...]:
    """`[outputs.NAME]` tables, each checked by its type's class (empty: SQLite in state_dir)."""
    from ogrt.outputs import OUTPUT_TYPES  # late: the outputs import their backends

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
    tables = check_table("", data, _TOP)
    sections = {name: cls(**check_table(name, tables[name], keys_of(cls))) for name, cls in _SECTIONS.items()}
    outputs = parse_outputs(tables["outputs"], sections["server"].state_dir)
    return Config(**sections, outputs=outputs, path=path)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a file; None gives the defaults (port 7971, SQLite in state_dir)."""
    if path is None:
        return parse_config({})
    return parse_config(read_toml(path), Path(path).resolve())


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML file's tables; ConfigError naming the file when it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(str(path), f"cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"not valid TOML: {e}") from None
