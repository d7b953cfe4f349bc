"""`ogrt census update`: the thin command-line layer over ogrt.census.update."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ogrt.census.dpkg import DEFAULT_ADMINDIR
from ogrt.census.model import CensusError
from ogrt.census.update import Plan, summary, update
from ogrt.report.db import ReportError, db_target, open_writable


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    census = subparsers.add_parser(
        "census", help="index installed software (Spack, Lmod, Python, dpkg) for the software report",
        description="The software census: where installed software comes from, stored in the "
                    "database the reports read, and the recorded executables and libraries "
                    "attributed to it.")
    sub = census.add_subparsers(dest="census_command", metavar="update", required=True)
    p = sub.add_parser(
        "update", help="index the given sources and attribute the recorded paths",
        description="Index the given sources (again: changed entries are rewritten, vanished ones "
                    "removed, unchanged ones left alone), then attribute the executables and "
                    "libraries recorded since the last run (all of them when the index changed).")
    g = p.add_argument_group("database (as for `ogrt report`; written to)")
    g.add_argument("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL")
    g.add_argument("--config", metavar="PATH", help="ogrt.conf: the SQL output the daemon writes")
    g.add_argument("--output", metavar="NAME", help="the sqlite/postgresql output (default: the first)")
    s = p.add_argument_group("sources")
    s.add_argument("--spack-root", metavar="DIR", action="append", default=[],
                   help="a Spack install tree (e.g. $SPACK_ROOT/opt/spack); repeatable")
    s.add_argument("--spack", metavar="COMMAND", nargs="?", const="spack", default=None,
                   help="the prefixes `spack find` lists (COMMAND: default spack; a command line, "
                        "e.g. 'spack -C /site/scope', or a wrapper script)")
    s.add_argument("--lmod", action="store_true",
                   help="Lmod's spider reverse map over MODULEPATH (or --modulepath)")
    s.add_argument("--modulepath", metavar="DIRS", help="for --lmod: instead of $MODULEPATH")
    s.add_argument("--spider", metavar="PATH", help="for --lmod: Lmod's spider (default: found)")
    s.add_argument("--python", metavar="PREFIX", action="append", default=[],
                   help="a venv, conda env or system prefix: its *.dist-info/RECORD; repeatable")
    s.add_argument("--dpkg", action="store_true", help="the Debian packages installed on this machine")
    s.add_argument("--dpkg-admindir", metavar="DIR", default=DEFAULT_ADMINDIR,
                   help=f"for --dpkg: dpkg's database (default {DEFAULT_ADMINDIR})")
    p.set_defaults(func=run)
    return census


def plan(args: argparse.Namespace) -> Plan:
    return Plan(spack_roots=args.spack_root, spack_command=args.spack,
                modulepath=(args.modulepath if args.modulepath is not None else os.environ.get("MODULEPATH", ""))
                if args.lmod else None,
                spider=args.spider, python_prefixes=args.python,
                dpkg_admindir=args.dpkg_admindir if args.dpkg else None)


def run(args: argparse.Namespace) -> int:
    try:
        with open_writable(db_target(args.db, args.config, args.output)) as db:
            result = update(db, plan(args))  # type: ignore[arg-type]
    except (ReportError, CensusError) as exc:
        print(f"ogrt census: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary(result)))
    return 0
