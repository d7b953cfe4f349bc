"""The `ogrt` command: a thin argparse layer over the package."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ogrt import __version__
from ogrt.errors import ConfigError

__all__ = ["main", "build_parser"]


T = TypeVar("T")


def _load(loader: Callable[[Any], T], path: str | None, prefix: str) -> T | None:
    """`loader(path)`: the validated config, or None after printing ``PREFIX: dotted.key: why``
    (``PATH: why`` when the file itself is the problem and PREFIX is its path: named once)."""
    try:
        return loader(path)
    except ConfigError as e:
        print(str(e) if e.key == prefix else f"{prefix}: {e}", file=sys.stderr)
        return None


def _cmd_server(args: argparse.Namespace) -> int:
    from ogrt.config import load_config
    from ogrt.server import run

    config = _load(load_config, args.config, "ogrt server: config error")
    if config is None:
        return 2
    if args.port is not None:
        from dataclasses import replace
        config = replace(config, server=replace(config.server, port=args.port))
    return run(config, args.worker_index, args.control_fd)


def _cmd_relay(args: argparse.Namespace) -> int:
    from ogrt.config import load_config
    from ogrt.relay import run

    config = _load(load_config, args.config, "ogrt relay: config error")
    return 2 if config is None else run(config)


def _cmd_sink(args: argparse.Namespace) -> int:
    from ogrt.sink import run
    from ogrt.sink.config import load_sink_config

    config = _load(load_sink_config, args.config, "ogrt sink: config error")
    return 2 if config is None else run(config)


def _is_sink_file(path: str) -> bool:
    from ogrt.config import read_toml
    from ogrt.sink.config import is_sink_config

    try:
        return is_sink_config(read_toml(path))
    except ConfigError:
        return False  # the server config loader names the problem


def _cmd_check_config(args: argparse.Namespace) -> int:
    from ogrt.config import load_config
    from ogrt.sink.config import load_sink_config

    if _is_sink_file(args.path):
        sink = _load(load_sink_config, args.path, args.path)
        if sink is None:
            return 1
        src = sink.source
        print(f"{args.path}: OK — sink: stream {src['stream']} (durable {src['durable']}) on "
              f"{', '.join(src['servers'])}, outputs: " + ", ".join(f"{o.name} ({o.type})" for o in sink.outputs))
        return 0
    config = _load(load_config, args.path, args.path)
    if config is None:
        return 1
    s = config.server
    print(f"{args.path}: OK — {'+'.join(s.transports)} on {s.address}:{s.port}, {s.workers} worker(s), "
          f"state_dir {s.state_dir}, allowed_networks "
          + (", ".join(map(str, s.allowed_networks)) if s.allowed_networks is not None else "all")
          + ", outputs: "
          + ", ".join(f"{o.name} ({o.type})" for o in config.outputs))
    return 0


def _cmd_purge(args: argparse.Namespace) -> int:
    from ogrt.age import parse_age
    from ogrt.config import load_config
    from ogrt.retention import purge_outputs

    try:
        age = parse_age(args.older_than)
    except ValueError as e:
        print(f"ogrt purge: --older-than: {e}", file=sys.stderr)
        return 2
    if args.batch_rows < 1 or not args.pause >= 0:
        print("ogrt purge: --batch-rows must be >= 1 and --pause >= 0", file=sys.stderr)
        return 2
    config = _load(load_config, args.config, "ogrt purge: config error")
    if config is None:
        return 2
    return purge_outputs(config, args.output, age, dry_run=args.dry_run, batch_rows=args.batch_rows,
                         pause=args.pause)


def _cmd_unescape(args: argparse.Namespace) -> int:
    from ogrt.textenc import unescape

    try:
        data = unescape(args.text)
    except ValueError as e:
        print(f"ogrt unescape: {e}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(data + (b"" if args.n else b"\n"))
    return 0


def _cmd_web(args: argparse.Namespace) -> int:
    from ogrt.config import load_config

    try:
        from ogrt.web.serve import run
    except ImportError as e:
        print(f"ogrt web: needs the web extra (pip install 'ogrt[web]'): {e}", file=sys.stderr)
        return 2
    config = _load(load_config, args.config, "ogrt web: config error")
    if config is None:
        return 2
    return run(config, db=args.db, output=args.output, port=args.port)


def _cmd_hash_password(args: argparse.Namespace) -> int:
    from ogrt.web.passwords import MAX_PASSWORD, hash_password

    password = sys.stdin.readline().rstrip("\r\n")
    if not password or len(password.encode()) > MAX_PASSWORD:
        print(f"ogrt web hash-password: give a password of 1..{MAX_PASSWORD} bytes on stdin", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _cmd_job_event(args: argparse.Namespace) -> int:
    import os

    from ogrt.jobevent import run

    return run(args.event, os.environ, args.collector or os.environ.get("OGRT_COLLECTOR", ""), args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogrt", description="OGRT: track which programs and shared libraries HPC jobs really run.")
    parser.add_argument("--version", action="version", version=f"ogrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("server", help="run the ingest daemon in the foreground",
                       description="Receive process records over TCP and UDP and write them to the "
                                   "configured outputs. Logs to stderr; SIGTERM/SIGINT drain and exit 0.")
    p.add_argument("--config", "-c", metavar="PATH",
                   help="ogrt.conf (TOML); without it: port 7971 TCP+UDP into SQLite in the state dir")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--control-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_server)

    p = sub.add_parser("relay", help="run the node-local relay in the foreground",
                       description="Receive records from the libraries of this node on the [relay] socket "
                                   "(the kernel vouches for each sender's pid/uid/gid) and forward them in "
                                   "batches to the [relay] upstream collectors over a MUNGE-authenticated "
                                   "connection, spooling when none answers. SIGTERM/SIGINT drain and exit 0.")
    p.add_argument("--config", "-c", metavar="PATH", required=True, help="ogrt.conf (TOML) with a [relay] table")
    p.set_defaults(func=_cmd_relay)

    p = sub.add_parser("sink", help="consume records from NATS JetStream into the outputs",
                       description="Fetch records from the [source] stream (a durable pull consumer "
                                   "shared by every sink with the same `durable`), write them to every "
                                   "[outputs.NAME] and ack them once all persisted them. Logs to stderr; "
                                   "SIGTERM/SIGINT finish the batch in hand and exit 0.")
    p.add_argument("--config", "-c", metavar="PATH", required=True, help="sink.conf (TOML)")
    p.set_defaults(func=_cmd_sink)

    p = sub.add_parser("check-config", help="validate a config file",
                       description="Validate ogrt.conf (or a sink's config: one with [source]); "
                                   "exit 1 with a message naming the bad key.")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=_cmd_check_config)

    from ogrt.retention import BATCH_ROWS, PAUSE
    p = sub.add_parser("purge", help="delete records older than an age from the SQL outputs",
                       description="Delete the processes that ended (or, without an end, started) "
                                   "before now minus AGE, then the executables, libraries, modules "
                                   "and their sets no kept process uses; print what was removed and "
                                   "kept. In batches of short transactions: the daemon keeps writing.")
    p.add_argument("--config", "-c", metavar="PATH", required=True, help="ogrt.conf of the daemon")
    p.add_argument("--older-than", metavar="AGE", required=True,
                   help='e.g. 400d, 8w, 18m, 2y (d days, w weeks, m months, y years)')
    p.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    p.add_argument("--output", metavar="NAME", help="only this sqlite/postgresql output (default: all)")
    p.add_argument("--batch-rows", type=int, default=BATCH_ROWS, metavar="N",
                   help=f"rows per transaction ({BATCH_ROWS})")
    p.add_argument("--pause", type=float, default=PAUSE, metavar="F",
                   help=f"after each batch sleep F times as long as it took ({PAUSE})")
    p.set_defaults(func=_cmd_purge)

    p = sub.add_parser("unescape", help="turn escaped record text back into the original bytes",
                       description="Write the bytes an escaped text value stands for "
                                   "(\\\\ → \\, \\xHH → that byte) to stdout.")
    p.add_argument("text")
    p.add_argument("-n", action="store_true", help="no trailing newline")
    p.set_defaults(func=_cmd_unescape)

    p = sub.add_parser("web", help="serve the read-only web dashboard",
                       description="Serve the dashboard over the database `ogrt report` reads "
                                   "([web] in ogrt.conf: address, auth, base_path, show_args).")
    p.add_argument("--config", "-c", metavar="PATH", help="ogrt.conf: its [web] table and SQL output")
    p.add_argument("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (instead of the config's output)")
    p.add_argument("--output", metavar="NAME", help="the sqlite/postgresql output to read (default: the first)")
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_web)
    web_sub = p.add_subparsers(dest="web_command", metavar="hash-password")
    h = web_sub.add_parser("hash-password", help="read a password on stdin, print its hash for [web.users]",
                           description="Read one line (the password) on stdin; print its scrypt hash.")
    h.set_defaults(func=_cmd_hash_password)

    from ogrt.jobevent import DEFAULT_TIMEOUT

    p = sub.add_parser("job-event", help="send a Slurm job's start or end record (controller hooks)",
                       description="Build a JobStart/JobEnd record from the environment of Slurm's "
                                   "PrologSlurmctld/EpilogSlurmctld or jobcomp/script and send it to the "
                                   "collector. Always exits 0: a hook must never fail a job.")
    p.add_argument("event", choices=("start", "end"))
    p.add_argument("--collector", metavar="HOST:PORT[,HOST:PORT...]",
                   help="collectors to try in order (default: $OGRT_COLLECTOR)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"connect and send timeout per collector (default {DEFAULT_TIMEOUT:g})")
    p.set_defaults(func=_cmd_job_event)

    from ogrt.report import cli as report_cli
    report_cli.add_parser(sub)
    from ogrt.census import cli as census_cli
    census_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
