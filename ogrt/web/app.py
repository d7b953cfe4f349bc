"""The Starlette application: one route per page of ogrt/web/pages.py, static files, errors.

Each request opens the report database read-only (SQLite mode=ro, a read-only PostgreSQL
session), runs its page function in a worker thread and renders HTML, JSON or CSV.
"""
from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ogrt.config import WebConfig
from ogrt.report.db import ReportError, open_target
from ogrt.report.render import cell_text, render_csv
from ogrt.web import pages
from ogrt.web.params import FILTERS, BadRequest, Params, page_number, parse
from ogrt.web.security import Guard

log = logging.getLogger("ogrt.web")
HERE = Path(__file__).parent

NAV = [("/", "Overview"), ("/executables", "Executables"), ("/libraries", "Libraries"),
       ("/modules", "Modules"), ("/users", "Users"), ("/jobs", "Jobs"), ("/signatures", "Signatures"),
       ("/software", "Software")]


def _display(value: Any) -> str:
    """A cell as the page shows it: the CSV text, times to the second."""
    text = cell_text(value)
    if isinstance(value, str) and len(text) == 27 and text[10] == "T" and text.endswith("Z"):
        return f"{text[:10]} {text[11:19]}"
    return text


class PageCache:
    """Recent pages' data for `seconds` (a shared link opened by several people, the CSV and
    JSON of the page just viewed: one set of queries). Bounded; 0 seconds: off."""

    def __init__(self, seconds: float, size: int = 256) -> None:
        self.seconds = seconds
        self.size = size
        self._pages: OrderedDict[Any, tuple[float, pages.Page]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> pages.Page | None:
        with self._lock:
            hit = self._pages.get(key)
            if hit is None or time.monotonic() - hit[0] > self.seconds:
                return None
            self._pages.move_to_end(key)
            return hit[1]

    def put(self, key: Any, page: pages.Page) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            self._pages[key] = (time.monotonic(), page)
            self._pages.move_to_end(key)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)


class Dashboard:
    def __init__(self, config: WebConfig, target: tuple[str, str]) -> None:
        self.config = config
        self.target = target
        self.base = config.base_path
        self.cache = PageCache(config.cache_seconds)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                                 autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates = Jinja2Templates(env=env)
        env.globals.update(base=self.base, nav=NAV, filters=FILTERS, display=_display, link=self.link, dict=dict)

    def link(self, key: str, value: Any, p: Params) -> str | None:
        """The page a cell links to (filters kept), or None."""
        if value in (None, "", []):
            return None
        fq = p.filter_query()
        tail = f"&{fq}" if fq else ""
        if key == "executable":
            return f"{self.base}/executable?path={quote(str(value), safe='')}{tail}"
        if key == "job":
            rest = "&".join(x for x in fq.split("&") if x and not x.startswith("job="))
            return f"{self.base}/jobs/{quote(str(value), safe='')}" + (f"?{rest}" if rest else "")
        if key == "library":
            return f"{self.base}/libraries?q={quote(str(value), safe='')}{tail}"
        if key == "user" and not isinstance(value, list):
            return f"{self.base}/jobs?user={quote(str(value), safe='')}"
        return None

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [Route(path, self._page_endpoint(spec)) for path, spec in pages.PAGES.items()]
        routes.append(Route("/jobs/{job_id:path}", self._job))
        routes.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))
        return routes

    def _page_endpoint(self, spec: pages.Spec) -> Any:
        async def endpoint(request: Request) -> Response:
            return await self.serve(request, spec)
        return endpoint

    async def _job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if not job_id or len(job_id) > 256 or not job_id.isprintable():
            return self.bad(request, "job: not a job id")
        return await self.serve(request, pages.JOB, job_id=job_id)

    def bad(self, request: Request, message: str) -> Response:
        log.warning("400 %s: %s", request.url.path, message)
        return PlainTextResponse(f"400 Bad Request: {message}\n", status_code=400)

    async def serve(self, request: Request, spec: pages.Spec, **kwargs: Any) -> Response:
        try:
            return await self._serve(request, spec, kwargs)
        except Exception as exc:  # one line in the log, no stack trace to the client
            log.error("500 %s: %s: %s", request.url.path, type(exc).__name__, exc)
            return PlainTextResponse("500 Internal Server Error\n", status_code=500)

    async def _serve(self, request: Request, spec: pages.Spec, kwargs: dict[str, Any]) -> Response:
        try:
            params = parse(request.query_params.multi_items(), spec.allowed, spec.default_top, spec.choices)
            page = await run_in_threadpool(self._run, spec, params, kwargs)
            if params.format == "json":
                body = json.dumps(page.json_data(), indent=2, ensure_ascii=False) + "\n"
                return Response(body, media_type="application/json",
                                headers={"content-disposition": f'inline; filename="{self._name(request)}.json"'})
            if params.format == "csv":
                out = io.StringIO()
                render_csv(page.table(params.table), out)
                return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                                headers={"content-disposition": f'attachment; filename="{self._name(request)}.csv"'})
        except BadRequest as exc:
            return self.bad(request, str(exc))
        except ReportError as exc:
            log.error("database error on %s: %s", request.url.path, exc)
            return PlainTextResponse("503 Service Unavailable: the database cannot be read now\n", status_code=503)
        plots = [{"id": pl.id, "data": pl.data()} for pl in page.plots]
        context = {"page": page, "p": params, "plots": plots, "path": request.url.path,
                   "page_number": page_number(params) if "page" in spec.allowed else None,
                   "show_args": self.config.show_args, "user": request.scope.get("state", {}).get("user", "")}
        return self.templates.TemplateResponse(request, "job.html" if spec is pages.JOB else "page.html", context)

    def _name(self, request: Request) -> str:
        tail = request.url.path[len(self.base):].strip("/") or "overview"
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in tail)[:80]

    def _run(self, spec: pages.Spec, params: Params, kwargs: dict[str, Any]) -> pages.Page:
        key = (spec.func.__name__, tuple(sorted(kv for kv in params.raw if kv[0] != "table")),
               tuple(sorted(kwargs.items())))
        page = self.cache.get(key)
        if page is None:
            with open_target(self.target) as db:
                page = spec.func(db, params, self.config.show_args, **kwargs)
            self.cache.put(key, page)
        return page


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return PlainTextResponse(f"{status}: {getattr(exc, 'detail', 'not found')}\n", status_code=status)


def create_app(config: WebConfig, target: tuple[str, str]) -> Any:
    """The ASGI application: the Guard (auth, headers) around the dashboard's routes."""
    dash = Dashboard(config, target)
    routes = dash.routes()
    if config.base_path:
        routes = [Mount(config.base_path, routes=routes)]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found})
    return Guard(app, config)
