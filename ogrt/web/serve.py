"""Run the dashboard on uvicorn: `ogrt web` (the CLI entry is ogrt/cli.py)."""
from __future__ import annotations

import ipaddress
import logging
import sys

from ogrt.config import Config
from ogrt.report.db import ReportError, db_target, open_target


def check_exposure(config: Config) -> str | None:
    """Why this [web] table must not be served, or None: no auth only on a loopback address."""
    host = config.web.address[0]
    if config.web.auth == "none" and not ipaddress.ip_address(host).is_loopback:
        return (f"web.auth: \"none\" on {host} would show every user's records to the network; "
                "use auth = \"basic\" or \"proxy\", or a loopback address")
    if config.web.auth == "basic" and not config.web.users:
        return "web.users: auth = \"basic\" needs at least one user (NAME = \"HASH\")"
    if config.web.auth == "proxy" and not config.web.proxies:
        return "web.proxies: auth = \"proxy\" needs the proxy addresses to trust"
    return None


def run(config: Config, db: str | None = None, output: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from ogrt.web.app import create_app

    why = check_exposure(config)
    if why:
        print(f"ogrt web: config error: {why}", file=sys.stderr)
        return 2
    config_path = str(config.path) if config.path else None
    try:
        target = db_target(db, config_path, output or config.web.output)
        open_target(target).close()  # fail now, not on the first page
    except ReportError as exc:
        print(f"ogrt web: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, bind_port = config.web.address
    app = create_app(config.web, target)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port if port is not None else bind_port, log_level="info",
        access_log=False, proxy_headers=False, server_header=False, date_header=False,
        lifespan="off"))
    server.run()
    return 0
