"""Typed keys of ogrt.conf, each declared once, and the one checker every table goes through.

A `Key` declares one key: its TOML type(s), its default (none: required), a check and an
optional conversion. `check_table()` rejects unknown keys, missing required keys, wrong
types and failed checks with ``ConfigError("WHERE.KEY", why)`` and returns the table with
every default filled in. `[server]`, `[metrics]` and `[spool]` declare their keys as fields
of their dataclass (`option()`, read back by `keys_of()`); `[outputs.NAME]` tables declare
theirs as a dict of Keys (ogrt/outputs/options.py).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ogrt.errors import ConfigError

__all__ = ["Key", "option", "keys_of", "check_table", "positive", "non_negative", "non_empty",
           "one_of", "port", "between", "at_least", "ip_address", "host_port"]

MISSING: Any = object()

Check = Callable[[Any], str | None]  # returns why the value is bad, or None


@dataclass(frozen=True)
class Key:
    """One key: its type(s), its default (omit for required), a check and a conversion.

    `convert` runs after the check (it may raise ValueError saying why); `factory`
    computes the default when the key is absent and the default depends on the machine.
    """

    types: tuple[type, ...]
    default: Any = MISSING
    check: Check | None = None
    convert: Callable[[Any], Any] | None = None
    factory: Callable[[], Any] | None = None
    secret: bool = False  # its value (password hashes, passwords) is never echoed in messages

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.factory is None


def option(types: tuple[type, ...], default: Any = MISSING, check: Check | None = None, *,
           convert: Callable[[Any], Any] | None = None, factory: Callable[[], Any] | None = None,
           secret: bool = False) -> Any:
    """A dataclass field that is also a config key; its default is the field's default.
    `secret`: error messages name the key and why, never its value."""
    key = Key(types, default, check, convert, factory, secret)
    if factory is not None:
        return field(default_factory=factory, metadata={"key": key})
    return field(default=default, metadata={"key": key})


def keys_of(cls: type) -> dict[str, Key]:
    """The keys a dataclass declares with `option()`."""
    return {f.name: f.metadata["key"] for f in fields(cls) if "key" in f.metadata}


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "a list",
               Mapping: "a table"}


def check_table(where: str, table: Mapping[str, Any], keys: Mapping[str, Key]) -> dict[str, Any]:
    """Validate `table` (the TOML table at dotted `where`, "" for the top) against `keys`."""
    prefix = f"{where}." if where else ""
    for name in table:
        if name not in keys:
            raise ConfigError(f"{prefix}{name}", f"unknown key (known: {', '.join(sorted(keys))})")
    out: dict[str, Any] = {}
    for name, k in keys.items():
        dotted = f"{prefix}{name}"
        if name not in table:
            if k.required:
                raise ConfigError(dotted, "required key is missing")
            out[name] = k.factory() if k.factory is not None else k.default
            continue
        value = table[name]
        # bool is an int subclass: accept it only where bool is declared
        if isinstance(value, bool) and bool not in k.types or not isinstance(value, k.types):
            kinds = (float,) if float in k.types else k.types  # an int is a number too
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in kinds)
            shown = "" if k.secret else f" {value!r}"
            raise ConfigError(dotted, f"must be {want}, got {type(value).__name__}{shown}")
        why = k.check(value) if k.check is not None else None
        if k.convert is not None and not why:
            try:
                value = k.convert(value)
            except ValueError as e:
                why = str(e)
        if why:
            raise ConfigError(dotted, why if k.secret else f"{why}, got {table[name]!r}")
        if float in k.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


# -- checks ------------------------------------------------------------------------------------
def positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def non_empty(v: Any) -> str | None:
    return None if v else "must not be empty"


def one_of(*choices: str) -> Check:
    def _check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}"
    return _check


def port(v: Any) -> str | None:
    return None if 1 <= v <= 65535 else "must be a port number 1..65535"


def between(lo: float, hi: float) -> Check:
    def _check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"
    return _check


def at_least(lo: float) -> Check:
    def _check(v: Any) -> str | None:
        return None if v >= lo else f"must be >= {lo}"
    return _check


def ip_address(v: str) -> str | None:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return "must be an IP address such as 0.0.0.0, 127.0.0.1 or ::"
    return None


def host_port(value: str) -> tuple[str, int]:
    """"host:port" (IPv6 in brackets) → (host, port); ValueError says why not."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError('must be "host:port" (e.g. "127.0.0.1:9971")')
    if ip_address(host):
        raise ValueError(f"host must be an IP address, not {host!r}")
    return host, int(port_text)
