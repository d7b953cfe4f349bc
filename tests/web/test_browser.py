"""The dashboard in real Chromium over a database the real daemon filled from real programs:
pages render with their plots and no console errors, the numbers match `ogrt report`'s JSON,
links lead from an executable to its jobs to a job's timeline. Writes docs/screenshots/."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ogrt.report.render import cell_text
from tests.web.conftest import OGRT, WebData, WebServer

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"


def ogrt_report(db: str, *argv: str) -> Any:
    proc = subprocess.run([str(OGRT), "report", *argv, "--db", db, "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(kind: str, web_data: WebData, start_web: Any) -> WebServer:
    return start_web(web_data.db(kind))


class Page:
    """A browser tab that records console errors and failed page scripts."""

    def __init__(self, context: Any) -> None:
        self.tab = context.new_page()
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str) -> Any:
        resp = self.tab.goto(url)
        assert resp is not None and resp.status == 200, (url, resp and resp.status)
        self.tab.wait_for_load_state("load")
        return resp

    def plots_drawn(self) -> int:
        """Charts uPlot drew (a canvas inside each .chart)."""
        self.tab.wait_for_selector(".chart[data-drawn] canvas", state="attached", timeout=10_000)
        return self.tab.locator(".chart[data-drawn] canvas").count()

    def table(self, name: str) -> list[dict[str, str]]:
        rows = self.tab.locator(f'table[data-table="{name}"] tbody tr')
        out = []
        for i in range(rows.count()):
            cells = rows.nth(i).locator("td")
            out.append({cells.nth(j).get_attribute("data-col"): cells.nth(j).inner_text().strip()
                        for j in range(cells.count())})
        return out

    def shot(self, name: str, kind: str) -> None:
        if kind == "sqlite":  # one set of screenshots for the README
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            self.tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.tab.close()


def _same(shown: list[dict[str, str]], rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """The table shows the report's rows, cell for cell, in the same order."""
    assert len(shown) == len(rows), (shown, rows)
    for got, want in zip(shown, rows):
        for key in keys:
            assert got[key] == cell_text(want[key]), (key, got, want)


def test_overview_plots_and_numbers_match_the_reports(server: WebServer, web_data: WebData, kind: str,
                                                      page: Page) -> None:
    page.open(server.url + "/")
    assert page.plots_drawn() == 2
    db = web_data.db(kind)
    _same(page.table("executables"), ogrt_report(db, "executables", "--top", "10"),
          ("executable", "runs", "cpu_seconds", "failed"))
    _same(page.table("libraries"), ogrt_report(db, "libraries", "--top", "10"),
          ("library", "processes", "stamped"))
    daily = page.table("daily")
    assert sum(int(r["processes"]) for r in daily) == sum(
        r["processes"] for r in ogrt_report(db, "users", "--top", "0"))
    failing = {r["executable"]: r for r in page.table("failing")}
    ls = [r for r in ogrt_report(db, "executables", "--path", "*/ls") if r["failed"]]
    assert ls and failing[ls[0]["executable"]]["failed"] == str(ls[0]["failed"])
    page.shot("overview", kind)
    assert page.errors == []


def test_filters_in_the_url_match_the_reports(server: WebServer, web_data: WebData, kind: str,
                                              page: Page) -> None:
    db = web_data.db(kind)
    page.open(server.url + "/jobs?job=web-job-2")
    _same(page.table("jobs"), ogrt_report(db, "jobs", "--job", "web-job-2"),
          ("job", "processes", "user", "hosts", "failed"))
    page.open(server.url + "/users?since=2000-01-01&until=2000-01-02")
    assert page.tab.locator("table[data-table=users]").count() == 0
    assert "No matching records" in page.tab.inner_text("main")
    assert page.errors == []


def test_library_search_plot_and_rows(server: WebServer, web_data: WebData, kind: str, page: Page) -> None:
    page.open(server.url + "/libraries")
    page.tab.fill("input[name=q]", "libssl")
    page.tab.click("form.search button")
    page.tab.wait_for_url("**/libraries?*q=libssl*")
    assert page.plots_drawn() == 1
    db = web_data.db(kind)
    want = ogrt_report(db, "libraries", "--path", "libssl")
    _same(page.table("uses"), want, ("library", "executable", "processes", "dlopened", "jobs"))
    assert {r["executable"] for r in want} == {web_data.python}
    assert {r["jobs"] for r in want} == {2}
    page.shot("libraries", kind)
    assert page.errors == []


def test_executable_to_job_to_timeline(server: WebServer, web_data: WebData, kind: str, page: Page) -> None:
    page.open(server.url + "/")
    page.tab.locator('table[data-table="executables"] a', has_text="/sleep").first.click()
    page.tab.wait_for_url("**/executable?path=*")
    jobs = page.table("jobs")
    assert [j["job"] for j in jobs] == ["web-job-1"] and jobs[0]["runs"] == "2"
    page.tab.locator('table[data-table="jobs"] a', has_text="web-job-1").click()
    page.tab.wait_for_url("**/jobs/web-job-1*")
    # the timeline: one bar per process, lanes per node and rank (the two sleeps are ranks 0, 1)
    tree = ogrt_report(web_data.db(kind), "job", "web-job-1")

    def count(chains: list[dict[str, Any]]) -> int:
        return sum(len(c["images"]) + count(c["children"]) for c in chains)

    assert page.tab.locator("svg.timeline rect.bar").count() == count(tree["tree"]) == tree["processes"]
    lanes = page.tab.locator("svg.timeline g.lane").evaluate_all("gs => gs.map(g => g.dataset.lane)")
    assert any(lane.endswith("rank 0") for lane in lanes) and any(lane.endswith("rank 1") for lane in lanes)
    assert page.plots_drawn() == 1
    shown = page.table("tree")
    assert [r["process"].lstrip("│├└─ ") for r in shown] == [c["command"] for c in _walk(tree["tree"])]
    assert shown[0]["process"].startswith("bash")
    assert page.tab.inner_text("#job-header [data-col=processes]") == str(tree["processes"])
    page.shot("job", kind)
    assert page.errors == []


def _walk(chains: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in chains:
        out.append(c)
        out.extend(_walk(c["children"]))
    return out


def test_tables_work_without_javascript(server: WebServer, browser: Any) -> None:
    tab = browser.new_page()
    try:
        tab.route("**/*.js", lambda route: route.abort())  # as if scripts were off: no plots
        tab.goto(server.url + "/jobs")
        assert tab.locator('table[data-table="jobs"] tbody tr').count() == 3
        assert tab.locator(".chart canvas").count() == 0
        tab.goto(server.url + "/jobs?user=nobody-here")
        assert "No matching records" in tab.inner_text("main")
    finally:
        tab.close()
