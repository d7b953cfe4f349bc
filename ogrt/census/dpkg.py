"""Debian packages: the installed packages of dpkg's status file and the files of their
`info/PACKAGE[:ARCH].list` (directories left out; on a merged-/usr system both names of a
file)."""
from __future__ import annotations

import os
from collections.abc import Iterator

from ogrt.census.model import CensusError, Entry, Package, stat_digest, usr_merge_aliases

DEFAULT_ADMINDIR = "/var/lib/dpkg"


def installed(admindir: str) -> Iterator[dict[str, str]]:
    """The stanzas of the status file whose package is installed (streamed)."""
    status = os.path.join(admindir, "status")
    try:
        fh = open(status, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CensusError(f"--dpkg: cannot read {status}: {exc}") from exc
    with fh:
        stanza: dict[str, str] = {}
        key = ""
        for line in fh:
            if line in ("\n", "\r\n"):
                if stanza.get("Status", "").endswith(" installed"):
                    yield stanza
                stanza, key = {}, ""
            elif line[:1] in (" ", "\t"):
                continue  # a continuation line (descriptions, conffiles): not needed
            else:
                key, _, value = line.partition(":")
                if key in ("Package", "Status", "Version", "Architecture"):
                    stanza[key] = value.strip()
        if stanza.get("Status", "").endswith(" installed"):
            yield stanza


def read_package(stanza: dict[str, str], list_file: str, ident: str) -> Package | None:
    aliases = usr_merge_aliases()
    paths: set[str] = set()
    try:
        with open(list_file, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                path = line.rstrip("\n")
                if not path.startswith("/") or path == "/." or os.path.isdir(path):
                    continue
                paths.add(path)
                paths.update(aliases(path))
    except OSError:
        return None
    return Package("dpkg", ident, stanza["Package"], stanza.get("Version", ""), "",
                   {"architecture": stanza.get("Architecture", "")}, None,
                   [(p, True) for p in sorted(paths)])


def entries(admindir: str = DEFAULT_ADMINDIR) -> Iterator[Entry]:
    info = os.path.join(admindir, "info")
    for stanza in installed(admindir):
        name, arch = stanza.get("Package", ""), stanza.get("Architecture", "")
        if not name:
            continue
        list_file = os.path.join(info, f"{name}:{arch}.list")
        if not os.path.exists(list_file):
            list_file = os.path.join(info, f"{name}.list")
        try:
            digest = stanza.get("Version", "") + "|" + stat_digest(list_file)
        except OSError:
            continue  # installed without a file list
        ident = f"{name}:{arch}" if arch else name
        yield Entry("dpkg", ident, digest,
                    lambda s=stanza, lf=list_file, i=ident: read_package(s, lf, i))
