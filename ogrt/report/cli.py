"""`ogrt report ...`: the thin command-line layer over queries, jobtree and render."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ogrt.report import jobtree, queries
from ogrt.config import default_state_dir
from ogrt.report.db import ReportDB, ReportError, open_db
from ogrt.report.render import render
from ogrt.report.timespec import TimeSpecError, parse_time

DEFAULT_TOP = 20

_EPILOG = """\
times: --since/--until take 90s, 30m, 12h, 7d, 2w (ago) or ISO 2026-11-25[T12:00[:00]][Z|+01:00];
times without an offset are UTC; --until is exclusive. Both apply to the process start time.
database: --db PATH (SQLite) or --db postgresql://...; else the output the daemon writes with
--config FILE: its first sqlite/postgresql output, or --output NAME; without --config, the
daemon's default SQLite output in its state directory ({default})."""


def _add_common(p: argparse.ArgumentParser, top: bool = True, suppress: bool = False) -> None:
    """The options every report takes. With `suppress`, unset options leave the namespace
    alone, so they may be given before the report name (`ogrt report --db X users`) or after it."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = p.add_argument_group("database")
    g.add_argument("--db", metavar="PATH|URL", default=d(None), help="SQLite file or postgresql:// URL")
    g.add_argument("--config", metavar="PATH", default=d(None),
                   help="ogrt.conf: report from the SQL output the daemon writes")
    g.add_argument("--output", metavar="NAME", default=d(None),
                   help="the sqlite/postgresql output [outputs.NAME] to report from "
                        "(default: the first)")
    f = p.add_argument_group("filters")
    f.add_argument("--since", metavar="TIME", default=d(None), help="processes started at or after TIME")
    f.add_argument("--until", metavar="TIME", default=d(None), help="processes started before TIME")
    f.add_argument("--user", metavar="NAME|UID", default=d(None), help="only this user (name or numeric uid)")
    f.add_argument("--host", metavar="HOST", default=d(None), help="only this host")
    f.add_argument("--job", metavar="JOBID", default=d(None), help="only this job")
    o = p.add_argument_group("output")
    o.add_argument("--format", choices=("table", "json", "csv"), default=d("table"),
                   help="table (rich on a terminal, plain text otherwise), json or csv")
    if top:
        o.add_argument("--top", type=int, default=d(DEFAULT_TOP), metavar="N",
                       help=f"show the first N rows (default {DEFAULT_TOP}; 0: all)")


def _common(top: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    _add_common(p, top=top, suppress=True)
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `report` and its reports on the `ogrt` command's subparsers."""
    epilog = _EPILOG.format(default=default_state_dir())
    report = subparsers.add_parser(
        "report", help="answer questions from the recorded processes",
        description="Reports over the SQLite (default) or PostgreSQL output of ogrt server.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(report)
    sub = report.add_subparsers(dest="report", metavar="REPORT", required=True)
    common, common_notop = _common(), _common(top=False)

    def add(name: str, help_: str, func: Any, parent: argparse.ArgumentParser = common) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[parent], help=help_, description=help_, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=run, report_func=func)
        return p

    exe = add("executables", "most run executables: runs, users, hosts, jobs, CPU time", _executables)
    exe.add_argument("--path", metavar="PATTERN",
                     help="only executables whose path contains PATTERN (e.g. lammps), or matches a glob (*/bin/vasp_*)")
    lib = add("libraries", "most loaded shared libraries; with --path: who loads a library", _libraries)
    lib.add_argument("--path", metavar="PATTERN",
                     help="library path substring (e.g. libmkl), or a glob over the whole path (*/libmkl_*.so*)")
    lib.add_argument("--by", choices=tuple(queries.LIBRARY_USE_BY), default="executable",
                     help="with --path: one row per library and executable (default), user, job or host")
    add("modules", "most used environment modules (LOADEDMODULES)", _modules)
    add("users", "users: processes, jobs, hosts, CPU time", _users)
    sig = add("signatures", "stamped binaries and libraries: where and by whom they ran", _signatures)
    sig.add_argument("--signature", metavar="UUID", help="only this signature")
    add("jobs", "jobs, most recent first", _jobs)
    sw = add("software", "packages of the census (`ogrt census update`): processes, users, jobs, "
                         "hosts, first and last use; --unused: packages no process used", _software)
    sw.add_argument("--source", choices=queries.CENSUS_SOURCES, help="only packages of this source")
    sw.add_argument("--name", metavar="PATTERN",
                    help="package name substring (e.g. openmpi), or a glob over the whole name")
    sw.add_argument("--unused", action="store_true",
                    help="the indexed packages no process used (in --since/--until, of --user ...)")
    job = add("job", "the process tree of one job, with exec chains (a → b)", _job, common_notop)
    job.add_argument("job_id", metavar="JOBID")
    return report


def _filters(args: argparse.Namespace) -> queries.Filters:
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except TimeSpecError as exc:
        raise ReportError(str(exc)) from None
    if getattr(args, "top", 0) is not None and getattr(args, "top", 0) < 0:
        raise ReportError("--top must be 0 (all) or more")
    return queries.Filters(since=since, until=until, user=args.user, host=args.host, job=args.job)


def _executables(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    render(queries.executables(db, _filters(args), args.top, args.path), args.format, out)


def _libraries(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    f = _filters(args)
    if args.path:
        report = queries.library_users(db, f, args.top, args.path, args.by)
    else:
        report = queries.libraries(db, f, args.top)
    render(report, args.format, out)


def _modules(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    render(queries.modules(db, _filters(args), args.top), args.format, out)


def _users(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    render(queries.users(db, _filters(args), args.top), args.format, out)


def _signatures(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    render(queries.signatures(db, _filters(args), args.top, args.signature), args.format, out)


def _jobs(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    render(queries.jobs(db, _filters(args), args.top), args.format, out)


def _software(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    pf = queries.PackageFilter(source=args.source, name=args.name)
    f = _filters(args)
    if not queries.census_exists(db):
        raise ReportError("no software census in this database: run `ogrt census update` first")
    report = (queries.software_unused if args.unused else queries.software)(db, f, args.top, pf)
    render(report, args.format, out)


def _job_header(job_id: str, n: int, record: dict[str, Any] | None) -> str:
    """The title line: the job's record when there is one."""
    title = f"Job {job_id}: {n} processes"
    if record is None:
        return title + " (no job record)"
    parts = [f"{label} {record[key]}" for key, label in (
        ("username", "user"), ("account", "account"), ("partition", "partition"), ("nodelist", "nodes"),
        ("num_nodes", "node count"), ("state", "state"), ("exit_code", "exit"), ("exit_signal", "signal"),
        ("elapsed", "elapsed s"), ("start_time", "start"), ("name", "name"))
        if record.get(key) is not None]
    return title + ("; " + ", ".join(parts) if parts else "")


def _job(db: ReportDB, args: argparse.Namespace, out: TextIO) -> None:
    rows = queries.job_processes(db, args.job_id, _filters(args))
    record = queries.job_record(db, args.job_id)
    roots = jobtree.group_roots(jobtree.build_tree(rows))
    table_rows = []
    for chain, depth, prefix in jobtree.walk(roots):
        table_rows.append({
            "process": prefix + chain.label,
            "host": chain.first.get("host"),
            "step": chain.first.get("step_id"),
            "rank": chain.first.get("rank"),
            "pid": chain.first.get("pid"),
            "ppid": chain.first.get("ppid"),
            "user": chain.first.get("user"),
            "start_time": chain.start_time,
            "duration": chain.duration,
            "exit_status": chain.exit_status,
            "package": chain.last.get("package"),
            "depth": depth,
            "uuid": chain.last.get("uuid"),
        })
    columns = [("process", "Process"), ("host", "Host"), ("step", "Step"), ("rank", "Rank"), ("pid", "PID"),
               ("ppid", "PPID"), ("package", "Package"), ("start_time", "Start"), ("duration", "Duration s"),
               ("exit_status", "Exit")]
    if args.format == "csv":
        columns += [("user", "User"), ("depth", "Depth"), ("uuid", "UUID")]
    report = queries.Report(_job_header(args.job_id, len(rows), record), columns, table_rows)
    data = {"job": args.job_id, "record": record, "processes": len(rows),
            "tree": [jobtree.chain_dict(r) for r in roots]}
    render(report, args.format, out, json_data=data)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The `func` of every report (`args.func(args)`): open the database, run the
    report chosen by `args.report_func`, print. Returns the exit code."""
    out = out or sys.stdout
    try:
        with open_db(args.db, args.config, args.output) as db:
            args.report_func(db, args, out)
    except ReportError as exc:
        print(f"ogrt report: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ogrt report ... | head`
        return 0
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Stand-alone entry (`python -m ogrt.report ...`), same as `ogrt report ...`."""
    parser = argparse.ArgumentParser(prog="ogrt")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *(argv if argv is not None else sys.argv[1:])])
    return run(args, out)
