"""`ogrt census update`: index the sources asked for, then attribute the recorded paths."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ogrt.census import dpkg, lmod, python, spack
from ogrt.census.attribution import AttributionCount, attribute
from ogrt.census.model import CensusError, Entry
from ogrt.census.store import SyncCount, sync
from ogrt.census.usage import roll_up
from ogrt.report.db import WriteDB


@dataclass
class Plan:
    """What to index (each list: the trees of one source)."""

    spack_roots: list[str] = field(default_factory=list)
    spack_command: str | None = None  # `spack find` of this command line
    modulepath: str | None = None  # Lmod: spider over this MODULEPATH
    spider: str | None = None
    python_prefixes: list[str] = field(default_factory=list)
    dpkg_admindir: str | None = None

    def sources(self) -> list[tuple[str, str, Callable[[], Iterable[Entry]]]]:
        """(source, origin, entries) in a fixed order."""
        out: list[tuple[str, str, Callable[[], Iterable[Entry]]]] = []
        for root in self.spack_roots:
            r = os.path.abspath(root)
            out.append(("spack", r, lambda r=r: spack.entries(r)))
        if self.spack_command:
            out.append(("spack", f"spack find ({self.spack_command})",
                        lambda: spack.command_entries(self.spack_command or "spack")))
        if self.modulepath is not None:
            if not self.modulepath:
                raise CensusError("--lmod: MODULEPATH is empty (load Lmod, or give --modulepath)")
            out.append(("lmod", self.modulepath, lambda: lmod.entries(self.modulepath or "", self.spider)))
        for prefix in self.python_prefixes:
            p = os.path.abspath(prefix)
            out.append(("python", p, lambda p=p: python.entries(p)))
        if self.dpkg_admindir:
            out.append(("dpkg", self.dpkg_admindir, lambda: dpkg.entries(self.dpkg_admindir or "")))
        return out


@dataclass
class UpdateResult:
    sources: list[tuple[str, str, SyncCount]]
    attribution: AttributionCount
    seconds: float
    rolled_up: int = 0  # process ids added to the usage roll-ups


def update(db: WriteDB, plan: Plan) -> UpdateResult:
    t0 = time.monotonic()
    results: list[tuple[str, str, SyncCount]] = []
    changed = False
    for source, origin, entries in plan.sources():
        count = sync(db, source, origin, entries())
        results.append((source, origin, count))
        changed = changed or count.touched
    counts = attribute(db, changed)
    # attribution redone (index changed, purge): the roll-ups are rebuilt with it
    first, last = roll_up(db, counts.full)
    return UpdateResult(results, counts, time.monotonic() - t0, last - first)


def summary(result: UpdateResult) -> list[str]:
    lines = []
    for source, origin, c in result.sources:
        lines.append(f"{source} {origin}: {c.added} added, {c.changed} changed, {c.removed} removed, "
                     f"{c.unchanged} unchanged, {c.unreadable} unreadable ({c.paths} paths written)")
    a = result.attribution
    lines.append(f"attribution ({'all' if a.full else 'new'} paths): executables "
                 f"{a.executables_attributed}/{a.executables}, libraries "
                 f"{a.libraries_attributed}/{a.libraries} attributed")
    lines.append(f"usage roll-up: {result.rolled_up} process ids added")
    lines.append(f"done in {result.seconds:.1f} s")
    return lines
