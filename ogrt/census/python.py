"""Python distributions: every `*.dist-info/RECORD` of a prefix's site-packages (a venv, a
conda env, a system prefix). A distribution's paths: the files of its RECORD the library can
see — shared objects (extension modules, bundled libraries) and programs (bin/, Scripts/).
Pure-Python files are left out: the library sees the interpreter run them, never the file."""
from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterator

from ogrt.census.model import CensusError, Entry, Package, stat_digest


def site_dirs(prefix: str) -> list[str]:
    """The site-packages (or dist-packages) directories of a prefix; the prefix itself when
    it is one."""
    if not os.path.isdir(prefix):
        raise CensusError(f"--python {prefix}: not a directory")
    if glob.glob(os.path.join(glob.escape(prefix), "*.dist-info")):
        return [prefix]
    found: list[str] = []
    esc = glob.escape(prefix)
    for pattern in ("lib/python*/site-packages", "lib64/python*/site-packages",
                    "lib/python*/dist-packages", "local/lib/python*/dist-packages",
                    "lib/python3/dist-packages", "Lib/site-packages"):
        for d in sorted(glob.glob(os.path.join(esc, pattern))):
            real = os.path.realpath(d)
            if os.path.isdir(d) and real not in {os.path.realpath(x) for x in found}:
                found.append(d)
    return found


def _seen_by_library(path: str, prefix_bins: tuple[str, ...]) -> bool:
    base = os.path.basename(path)
    return base.endswith(".so") or ".so." in base or base.endswith(".pyd") or path.startswith(prefix_bins)


def _metadata(dist_info: str) -> tuple[str, str]:
    """Name and Version from METADATA (else from the directory name)."""
    name = version = ""
    try:
        with open(os.path.join(dist_info, "METADATA"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                if key == "Name" and not name:
                    name = value.strip()
                elif key == "Version" and not version:
                    version = value.strip()
    except OSError:
        pass
    if not name:
        stem = os.path.basename(dist_info)[: -len(".dist-info")]
        name, _, version = stem.partition("-")
    return name, version


def read_dist(dist_info: str, site: str, prefix: str) -> Package | None:
    """A distribution and the paths of its RECORD the library can see."""
    name, version = _metadata(dist_info)
    bins = tuple(os.path.join(os.path.normpath(prefix), b) + os.sep for b in ("bin", "Scripts"))
    real_site = os.path.realpath(site)
    paths: set[str] = set()
    try:
        with open(os.path.join(dist_info, "RECORD"), encoding="utf-8", errors="surrogateescape",
                  newline="") as fh:
            for row in csv.reader(fh):
                if not row or not row[0]:
                    continue
                path = os.path.normpath(os.path.join(site, row[0]))
                if not _seen_by_library(path, bins):
                    continue
                paths.add(path)
                if real_site != site:  # a symlinked prefix (lib64 -> lib): both names
                    paths.add(os.path.normpath(os.path.join(real_site, row[0])))
    except (OSError, csv.Error):
        return None  # unreadable or not CSV: counted as unreadable, the others go on
    return Package("python", dist_info, name, version, "", {"site": site}, site,
                   [(p, True) for p in sorted(paths)])


def entries(prefix: str) -> Iterator[Entry]:
    for site in site_dirs(prefix):
        try:
            names = sorted(n for n in os.listdir(site) if n.endswith(".dist-info"))
        except OSError:
            continue
        for n in names:
            dist_info = os.path.join(site, n)
            try:
                digest = stat_digest(os.path.join(dist_info, "RECORD"))
            except OSError:
                continue  # no RECORD (e.g. a distribution installed by a system package)
            yield Entry("python", dist_info, digest,
                        lambda d=dist_info, s=site: read_dist(d, s, prefix))
