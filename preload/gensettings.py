"""Write what follows preload/settings.tsv into package.py and README.md; --check: only compare.

    python3 preload/gensettings.py            rewrite the generated parts
    python3 preload/gensettings.py --check    exit 1 naming every stale file

The generated parts sit between "BEGIN settings" and "END settings" marker lines: in package.py
the tuple of settings its variants are built from (a Spack recipe cannot read files of the
source tarball when its variants are defined, so it carries a copy), in README.md the tables
of make variables and of Spack variants. Only the standard library: any python3 runs it.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = Path("preload/settings.tsv")
COMMAND = "python3 preload/gensettings.py"
KINDS = ("host", "hosts", "uint", "envname", "envnames", "choice", "yesno", "regexps", "path")


@dataclass(frozen=True)
class Setting:
    name: str         # make variable; the Spack variant is its lower-case form
    kind: str
    default: str      # make syntax ("" for empty)
    bounds: str       # "lo..hi", "word|word" or ""
    description: str

    @property
    def variant(self) -> str:
        return self.name.lower()

    def values_text(self, spack: bool) -> str:
        """The accepted values, as the README tables show them."""
        lo, _, hi = self.bounds.partition("..")
        text = {
            "host": f"host name or IP address, {lo}..{hi} characters",
            "hosts": f"comma list of at most 16 `host`, `host:port` or `[v6addr]:port`, {lo}..{hi} characters",
            "uint": f"{lo}..{hi}",
            "envname": "environment variable name",
            "envnames": "comma list of environment variable names",
            "choice": ", ".join(f"`{w}`" for w in self.bounds.split("|")),
            "yesno": "`+` or `~`" if spack else "`yes` or `no`",
            "regexps": "`:`-separated POSIX extended regexes",
            "path": f"absolute path of A-Z a-z 0-9 `._-+/`, {lo}..{hi} characters",
        }[self.kind]
        if spack and self.kind in ("envnames", "regexps"):
            text += ", `none`: none"
        if spack and self.kind == "regexps":
            text += "; no `,` and no `'`"
        return text

    def spack_default(self) -> str:
        if self.kind == "yesno":
            return "+" if self.default == "yes" else "~"
        return self.default or "none"


def read_table(path: Path) -> list[Setting]:
    """Parse settings.tsv the way genconfig.sh's `read -r name kind default bounds desc` does."""
    settings = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 4)
        if len(fields) != 5 or fields[1] not in KINDS:
            raise SystemExit(f"{path}:{number}: expected NAME KIND DEFAULT BOUNDS DESCRIPTION")
        name, kind, default, bounds, description = (f if f != "-" else "" for f in fields)
        if kind in ("host", "hosts", "uint", "path") and not re.fullmatch(r"[0-9]+\.\.[0-9]+", bounds):
            raise SystemExit(f"{path}:{number}: {name}: bounds must be lo..hi")
        settings.append(Setting(name, kind, default, bounds, description.strip()))
    return settings


def package_block(settings: list[Setting]) -> str:
    rows = "".join(f"    {(s.name, s.kind, s.default, s.bounds, s.description)!r},\n"
                   for s in settings)
    return ("# (make variable, kind, default, bounds, description): see preload/settings.tsv\n"
            f"_SETTINGS = (\n{rows})\n")


def readme_tables(settings: list[Setting]) -> tuple[str, str]:
    make = ["| variable | default | values | meaning |", "|---|---|---|---|"]
    spack = ["| variant | default | values | meaning |", "|---|---|---|---|"]
    for s in settings:
        default = f"`{s.default}`" if s.default else "*(empty)*"
        make.append(f"| `{s.name}` | {default} | {s.values_text(False)} | {s.description} |")
        spack.append(f"| `{s.variant}` | `{s.spack_default()}` | {s.values_text(True)} "
                     f"| {s.description} |")
    return "\n".join(make) + "\n", "\n".join(spack) + "\n"


def replace_block(text: str, tag: str, body: str, where: str) -> str:
    """Replace what lies between the lines holding `BEGIN tag` and `END tag`."""
    pattern = re.compile(rf"(^[^\n]*BEGIN {re.escape(tag)}\b[^\n]*\n)(.*?)(^[^\n]*END {re.escape(tag)}\b)",
                         re.M | re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{where}: expected one block marked BEGIN/END {tag}")
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), text)


def generated(root: Path) -> dict[Path, str]:
    """Each generated file's path and the content it should have."""
    settings = read_table(root / TABLE)
    package = root / "package.py"
    readme = root / "README.md"
    make_table, spack_table = readme_tables(settings)
    text = replace_block(readme.read_text(), "settings:make", make_table, str(readme))
    return {
        package: replace_block(package.read_text(), "settings", package_block(settings),
                               str(package)),
        readme: replace_block(text, "settings:spack", spack_table, str(readme)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    files = generated(args.root)
    stale = [path for path, text in files.items() if path.read_text() != text]
    for path in stale:
        if args.check:
            print(f"{path} is stale: it does not follow {TABLE}; run `{COMMAND}`")
        else:
            path.write_text(files[path])
            print(f"updated {path}")
    return 1 if stale and args.check else 0

if __name__ == "__main__":
    sys.exit(main())
