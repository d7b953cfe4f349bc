"""The keys of `[outputs.NAME]` tables: those every output type accepts, and `check()`.

Each output type declares its own keys as `Key` specs and validates with
``check(name, options, {key: Key(types, default, check)})``: ogrt/keys.py's one checker
over COMMON plus those keys, raising ``ConfigError("outputs.NAME.KEY", why)``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ogrt.errors import ConfigError
from ogrt.keys import Key, check_table, non_empty, non_negative, one_of, port, positive

__all__ = ["COMMON", "check", "Key", "ConfigError", "positive", "non_negative", "non_empty", "one_of", "port"]

#: keys every output type accepts
COMMON: dict[str, Key] = {
    "type": Key((str,), None),
    "batch_records": Key((int,), 1000, positive),
    "flush_interval": Key((int, float), 0.2, positive),
    "queue_records": Key((int,), 0, non_negative),  # 0: 4 x batch_records
    "reconnect_max_seconds": Key((int, float), 30.0, positive),  # retry back-off cap
}


def check(name: str, options: Mapping[str, Any], keys: Mapping[str, Key]) -> dict[str, Any]:
    """Validate `options` of output `name` against COMMON + `keys`; return them with defaults."""
    return check_table(f"outputs.{name}", options, {**COMMON, **keys})
