"""The `ogrt` command: a thin argparse layer over the package."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ogrt import __version__
from ogrt.errors import ConfigError

if TYPE_CHECKING:
    from ogrt.config import Config

__all__ = ["main", "build_parser"]


def _load(path: str | None, prefix: str) -> Config | None:
    """The validated config, or None after printing ``PREFIX: dotted.key: why`` on stderr."""
    from ogrt.config import load_config

    try:
        return load_config(path)
    except ConfigError as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        return None


def _cmd_server(args: argparse.Namespace) -> int:
    from ogrt.server import run

    config = _load(args.config, "ogrt server: config error")
    if config is None:
        return 2
    if args.port is not None:
        from dataclasses import replace
        config = replace(config, server=replace(config.server, port=args.port))
    return run(config, args.worker_index, args.control_fd)


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.path, args.path)
    if config is None:
        return 1
    s = config.server
    print(f"{args.path}: OK — {'+'.join(s.transports)} on {s.address}:{s.port}, {s.workers} worker(s), "
          f"state_dir {s.state_dir}, allowed_networks "
          + (", ".join(map(str, s.allowed_networks)) if s.allowed_networks is not None else "all")
          + ", outputs: "
          + ", ".join(f"{o.name} ({o.type})" for o in config.outputs))
    return 0


def _cmd_unescape(args: argparse.Namespace) -> int:
    from ogrt.textenc import unescape

    try:
        data = unescape(args.text)
    except ValueError as e:
        print(f"ogrt unescape: {e}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(data + (b"" if args.n else b"\n"))
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

    p = sub.add_parser("check-config", help="validate a config file",
                       description="Validate ogrt.conf; exit 1 with a message naming the bad key.")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("unescape", help="turn escaped record text back into the original bytes",
                       description="Write the bytes an escaped text value stands for "
                                   "(\\\\ → \\, \\xHH → that byte) to stdout.")
    p.add_argument("text")
    p.add_argument("-n", action="store_true", help="no trailing newline")
    p.set_defaults(func=_cmd_unescape)

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
