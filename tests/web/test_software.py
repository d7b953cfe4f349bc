"""The dashboard's software page and the overview's top packages, over a database the real
daemon filled from real programs and `ogrt census update --dpkg` indexed (SQLite and
PostgreSQL): the page, its filters in the URL (also through its form in Chromium) and its
downloads show the software report."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Callable

import pytest

from tests.census.helpers import census_update, report

pytestmark = pytest.mark.skipif(not os.path.isfile("/var/lib/dpkg/status"), reason="no dpkg database")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_software_page_and_downloads(web_data: Any, start_web: Callable[..., Any], browser: Any,
                                     kind: str) -> None:
    db = web_data.db(kind)
    web = start_web(db)
    status, _, body = web.get("/software")
    assert status == 200 and "ogrt census update" in body  # before the census: says what to run
    census_update(db, "--dpkg")
    expected = report(db, "software", "--source", "dpkg", "--name", "libc6")
    assert [r["package"] for r in expected] == ["libc6"]

    status, _, body = web.get("/software?source=dpkg&name=libc6")
    assert status == 200 and "libc6" in body and 'value="libc6"' in body
    status, _, text = web.get("/software?source=dpkg&name=libc6&format=json")
    assert status == 200 and json.loads(text) == expected  # the same query as the CLI
    status, _, text = web.get("/software?source=dpkg&name=libc6&format=csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["package"], int(r["processes"])) for r in rows] == [("libc6", expected[0]["processes"])]
    status, _, text = web.get("/software?unused=1&source=dpkg&format=json")
    unused = {r["package"] for r in json.loads(text)}
    assert status == 200 and "libc6" not in unused and unused  # most installed packages never ran
    status, _, text = web.get("/?format=json")
    assert status == 200 and "libc6" in {r["package"] for r in json.loads(text)["software"]}
    status, _, _ = web.get("/software?source=rpm")
    assert status == 400

    # in Chromium: the search form puts the filters in the URL, the table shows the report's rows
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        tab.goto(web.url + "/software")
        tab.fill("input[name=name]", "libc6")
        tab.select_option("select[name=source]", "dpkg")
        tab.click("form.search button")
        tab.wait_for_url("**/software?*name=libc6*")
        cells = tab.locator('table[data-table="software"] tbody tr').first.locator("td")
        shown = {cells.nth(j).get_attribute("data-col"): cells.nth(j).inner_text().strip()
                 for j in range(cells.count())}
        assert (shown["package"], shown["processes"]) == ("libc6", str(expected[0]["processes"]))
        assert errors == []
    finally:
        tab.close()
