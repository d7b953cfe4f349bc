"""Lmod: the directories each module puts on PATH, LD_LIBRARY_PATH, ..., from Lmod's own
spider (`spider -o jsonReverseMapT $MODULEPATH`): a directory -> the module `name/version`."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

from ogrt.census.model import CensusError, Entry, Package

#: where Debian's and the usual source installs of Lmod keep its spider
SPIDER_CANDIDATES = ("/usr/share/lmod/lmod/libexec/spider", "/opt/apps/lmod/lmod/libexec/spider",
                     "/usr/local/lmod/lmod/libexec/spider")


def find_spider() -> str:
    lmod_dir = os.environ.get("LMOD_DIR")  # set by Lmod's init: .../lmod/libexec
    candidates = ([os.path.join(lmod_dir, "spider")] if lmod_dir else []) + list(SPIDER_CANDIDATES)
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    found = shutil.which("spider")
    if found:
        return found
    raise CensusError("--lmod: Lmod's spider not found (set LMOD_DIR to Lmod's libexec)")


def reverse_map(modulepath: str, spider: str | None = None) -> dict[str, object]:
    """Lmod's reverse map of `modulepath` (':'-separated): directory -> module."""
    spider = spider or find_spider()
    try:
        proc = subprocess.run([spider, "-o", "jsonReverseMapT", modulepath], capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CensusError(f"--lmod: {spider} failed: {exc}") from exc
    if proc.returncode != 0:
        raise CensusError(f"--lmod: {spider} exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    try:
        data = json.loads(proc.stdout or "{}")
    except ValueError as exc:
        raise CensusError(f"--lmod: {spider} printed no JSON: {exc}") from exc
    table = data.get("reverseMapT", data) if isinstance(data, dict) else {}
    return table if isinstance(table, dict) else {}


def entries(modulepath: str, spider: str | None = None) -> Iterator[Entry]:
    """One entry per module file: its name/version and the directories it adds."""
    modules: dict[str, tuple[str, set[str]]] = {}  # module file -> (name/version, dirs)
    for directory, value in reverse_map(modulepath, spider).items():
        if isinstance(value, dict):
            full, mfile = value.get("pkg"), value.get("moduleFn") or value.get("pkg")
        else:  # older Lmod: the module's name alone
            full, mfile = value, value
        if not isinstance(full, str) or not isinstance(mfile, str) or not full:
            continue
        modules.setdefault(mfile, (full, set()))[1].add(os.path.normpath(directory))
    for mfile, (full, dirs) in sorted(modules.items()):
        name, _, version = full.rpartition("/") if "/" in full else (full, "", "")
        paths = sorted(dirs)
        digest = hashlib.blake2b("\0".join([full, *paths]).encode(), digest_size=16).hexdigest()
        pkg = Package("lmod", mfile, name, version, "", {"module": full, "modulefile": mfile},
                      mfile, [(d, False) for d in paths])
        yield Entry("lmod", mfile, digest, lambda p=pkg: p)
