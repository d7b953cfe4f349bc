"""What every census source yields: entries that name a package cheaply (ident, digest) and
read its paths only when the stored copy is missing or out of date."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

SOURCES = ("spack", "lmod", "python", "dpkg")


class CensusError(Exception):
    """A source cannot be read (no such directory, spider failed, bad option). Exit code 2."""


@dataclass
class Package:
    """One package of a source with its paths: (path, exact) — exact: this file; else every
    path under this directory."""

    source: str
    ident: str  # unique in its source
    name: str
    version: str = ""
    hash: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    prefix: str | None = None
    paths: list[tuple[str, bool]] = field(default_factory=list)


@dataclass
class Entry:
    """A package found by a source: `digest` changes whenever the package does; `load()`
    reads it (with its paths) and is only called when the stored digest differs."""

    source: str
    ident: str
    digest: str
    load: Callable[[], Package | None]


def stat_digest(path: str) -> str:
    """Size and modification time of a file: a changed file changes it."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def usr_merge_aliases() -> Callable[[str], Iterator[str]]:
    """On a merged-/usr system (/bin -> usr/bin, /lib -> usr/lib, ...) a file has two names:
    the function returns a path's other names, so either one a program reports matches."""
    pairs: list[tuple[str, str]] = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        try:
            target = os.readlink(top)
        except OSError:
            continue
        if target.lstrip("/") in (f"usr{top}",):
            pairs.append((top + "/", f"/usr{top}/"))

    def aliases(path: str) -> Iterator[str]:
        for short, long in pairs:
            if path.startswith(short):
                yield long + path[len(short):]
            elif path.startswith(long):
                yield short + path[len(long):]
    return aliases
