"""Validation of `[outputs.NAME]` keys, shared by every output type.

Each output declares its keys as `Key` specs; `check()` fills defaults, rejects unknown
keys and wrong types with `ConfigError("outputs.NAME.KEY", why)`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ogrt.errors import ConfigError

_MISSING = object()


@dataclass(frozen=True)
class Key:
    """One option: its Python type(s), default (omit for required) and an extra check."""

    types: tuple[type, ...]
    default: Any = _MISSING
    check: Callable[[Any], str | None] | None = None  # returns why it is bad, or None

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def non_empty(v: Any) -> str | None:
    return None if v else "must not be empty"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def _check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}"
    return _check


def port(v: Any) -> str | None:
    return None if 1 <= v <= 65535 else "must be a port number 1..65535"


#: keys every output type accepts
COMMON: dict[str, Key] = {
    "type": Key((str,), None),
    "batch_records": Key((int,), 1000, positive),
    "flush_interval": Key((int, float), 0.2, positive),
    "queue_records": Key((int,), 0, non_negative),  # 0: 4 x batch_records
    "reconnect_max_seconds": Key((int, float), 30.0, positive),  # retry back-off cap
}

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}


def check(name: str, options: Mapping[str, Any], keys: Mapping[str, Key]) -> dict[str, Any]:
    """Validate `options` of output `name` against COMMON + `keys`; return them with defaults."""
    spec = {**COMMON, **keys}
    out: dict[str, Any] = {}
    for key in options:
        if key not in spec:
            known = ", ".join(sorted(spec))
            raise ConfigError(f"outputs.{name}.{key}", f"unknown key (known keys: {known})")
    for key, k in spec.items():
        where = f"outputs.{name}.{key}"
        if key not in options:
            if k.required:
                raise ConfigError(where, "required key is missing")
            out[key] = k.default
            continue
        value = options[key]
        # bool is an int subclass: accept it only where bool is declared
        if isinstance(value, bool) and bool not in k.types or not isinstance(value, k.types):
            kinds = (float,) if float in k.types else k.types  # an int is a number too
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in kinds)
            raise ConfigError(where, f"must be {want}, got {type(value).__name__} {value!r}")
        if k.check is not None:
            why = k.check(value)
            if why:
                raise ConfigError(where, f"{why}, got {value!r}")
        if float in k.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key] = value
    return out
