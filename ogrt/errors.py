"""Exceptions shared across the daemon's parts."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value, naming the dotted key (e.g. `outputs.db.path`) and why."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why
