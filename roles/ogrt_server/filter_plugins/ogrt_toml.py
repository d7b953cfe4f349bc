"""Filter ogrt_toml: a dict of dicts (ogrt_server's merged config) as a TOML document.

Tables (dict values) become [dotted.headers]; dicts inside lists become inline tables.
A key whose value is None (YAML null) is left out, so a site can remove a key that the
role's default config sets. Strings are TOML basic strings: quote, backslash and every
non-printable character (controls, DEL, separators) escaped; other non-ASCII stays as is.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                  "\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise AnsibleFilterError(f"ogrt_toml: {text!r} holds a lone surrogate, which TOML cannot carry")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key:
        raise AnsibleFilterError(f"ogrt_toml: {where}: keys must be non-empty strings, got {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        items = [f"{_key(k, where)} = {_value(v, f'{where}.{k}')}"
                 for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    raise AnsibleFilterError(f"ogrt_toml: {where}: cannot write {type(value).__name__} {value!r} as TOML")


def _table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    where = ".".join(path) or "top level"
    scalars = {k: v for k, v in table.items() if v is not None and not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if path and (scalars or not tables):  # a table of only sub-tables needs no header
        lines += ["", "[" + ".".join(path) + "]"]
    lines += [f"{_key(k, where)} = {_value(v, f'{where}.{k}')}" for k, v in scalars.items()]
    for key, sub in tables.items():
        _table(sub, [*path, _key(key, where)], lines)


def ogrt_toml(config: Mapping[str, Any]) -> str:
    """The TOML text of a dict whose values are tables (e.g. {server: {...}, outputs: {...}})."""
    if not isinstance(config, Mapping):
        raise AnsibleFilterError(f"ogrt_toml: expected a dict, got {type(config).__name__}")
    lines: list[str] = []
    _table(config, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"ogrt_toml": ogrt_toml}
