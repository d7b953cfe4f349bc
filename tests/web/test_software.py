"""The dashboard's software page and the overview's top packages, over a database the real
daemon filled from real programs and `ogrt census update --dpkg` indexed (SQLite and
PostgreSQL): the page, its filters in the URL and its downloads show the software report."""
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
def test_software_page_and_downloads(web_data: Any, start_web: Callable[..., Any], kind: str) -> None:
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
