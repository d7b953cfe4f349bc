"""Spack: every install prefix (a directory holding `.spack/spec.json`) under an install tree
root, or the prefixes `spack find` lists. A package's paths: its prefix."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from typing import Any

from ogrt.census.model import CensusError, Entry, Package, stat_digest

SPEC = os.path.join(".spack", "spec.json")


def prefixes(root: str) -> Iterator[str]:
    """The install prefixes under `root` (not below one: a prefix holds no other prefix)."""
    if not os.path.isdir(root):
        raise CensusError(f"--spack-root {root}: not a directory")
    stack = [root]
    while stack:
        top = stack.pop()
        if os.path.isfile(os.path.join(top, SPEC)):
            yield top
            continue
        try:
            with os.scandir(top) as it:
                subdirs = [e.path for e in it
                           if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
        except OSError:
            continue  # unreadable: its packages stay unknown
        stack.extend(sorted(subdirs, reverse=True))


def _compiler(node: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> str:
    comp = node.get("compiler")
    if isinstance(comp, dict) and comp.get("name"):  # spack < 1.0
        return f"{comp['name']}@{comp.get('version', '')}".rstrip("@")
    for dep in node.get("dependencies") or []:  # spack >= 1.0: the compiler is a dependency
        virtuals = (dep.get("parameters") or {}).get("virtuals") or []
        if any(v in ("c", "cxx", "fortran") for v in virtuals):
            d = nodes.get(dep.get("hash", ""), {})
            return f"{dep.get('name', '')}@{d.get('version', '')}".rstrip("@")
    return ""


def read_prefix(prefix: str) -> Package | None:
    """The package installed at `prefix` from its spec.json (None when unreadable)."""
    try:
        with open(os.path.join(prefix, SPEC), encoding="utf-8") as fh:
            data = json.load(fh)
        nodes = data["spec"]["nodes"]
        root = nodes[0]
        name, version, hash_ = str(root["name"]), str(root.get("version", "")), str(root["hash"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    by_hash = {n.get("hash", ""): n for n in nodes if isinstance(n, dict)}
    params = root.get("parameters") or {}
    variants = {k: v for k, v in params.items()
                if k not in ("cflags", "cxxflags", "fflags", "cppflags", "ldflags", "ldlibs",
                             "patches", "dev_path") and v not in ([], None, "")}
    arch = root.get("arch") or {}
    target = arch.get("target")
    target = target.get("name") if isinstance(target, dict) else target
    details = {"compiler": _compiler(root, by_hash), "variants": variants,
               "arch": "-".join(str(x) for x in (arch.get("platform"), arch.get("platform_os"), target) if x),
               "namespace": root.get("namespace", "")}
    return Package("spack", prefix, name, version, hash_, details, prefix, [(prefix, False)])


def _entries(found: Iterable[str]) -> Iterator[Entry]:
    for prefix in found:
        try:
            digest = prefix + "|" + stat_digest(os.path.join(prefix, SPEC))
        except OSError:
            continue
        yield Entry("spack", prefix, digest, lambda p=prefix: read_prefix(p))


def entries(root: str) -> Iterator[Entry]:
    """The prefixes under an install tree root."""
    return _entries(prefixes(root))


def roots_from_command(spack: str = "spack") -> list[str]:
    """The install prefixes of the packages `spack find` lists (`--format {prefix}`: one a
    line; its --json holds no prefix). `spack`: a command line, split like a shell's, e.g.
    `spack -C /site/scope` or a wrapper script."""
    argv = shlex.split(spack)
    try:
        out = subprocess.run([*argv, "find", "--format", "{prefix}"], capture_output=True, text=True,
                             timeout=600, check=True).stdout
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise CensusError(f"--spack: `{spack} find --format {{prefix}}` failed: {exc}") from exc
    return [line.strip() for line in out.splitlines() if line.strip().startswith("/")]


def command_entries(spack: str = "spack") -> Iterator[Entry]:
    """The prefixes `spack find` lists (each read from its own spec.json)."""
    return _entries(roots_from_command(spack))
