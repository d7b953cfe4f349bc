"""Job records (job_start/job_end) in both SQL dialects: one `jobs` row per job id, filled by
its records in any order, repeated, in one batch or several, beside process records; JSON
outputs write them as they are."""
from __future__ import annotations

import itertools
import json
import sqlite3

import psycopg
import pytest

from ogrt.outputs import OUTPUT_TYPES
from ogrt.sql.schema import JOB_COLUMNS
from tests.outputs import records as R

START = {"event": "job_start", "time": "2026-11-30T12:00:00.000001Z", "peer": "10.77.0.1", "job_id": "42",
         "array_job_id": None, "array_task_id": None, "user": "ogrtuser", "uid": 1001, "account": "acct1",
         "partition": "debug", "name": "j.sh", "nodelist": "node[1-2]", "num_nodes": 2, "num_tasks": None,
         "num_cpus": 4, "submit_time": None, "start_time": None, "end_time": None, "work_dir": "/w",
         "state": None, "exit_code": None, "exit_signal": None, "cluster": "ogrt"}
EPILOG_END = {**START, "event": "job_end", "time": "2026-11-30T12:00:09.000001Z", "exit_code": 3,
              "exit_signal": 0}
JOBCOMP_END = {**START, "event": "job_end", "time": "2026-11-30T12:00:10.000001Z", "account": None,
               "cluster": None, "submit_time": "2026-11-30T11:59:58Z", "start_time": "2026-11-30T12:00:00Z",
               "end_time": "2026-11-30T12:00:08Z", "state": "FAILED", "exit_code": 3, "exit_signal": 0}
WANT = {"job_id": "42", "username": "ogrtuser", "uid": 1001, "account": "acct1", "partition": "debug",
        "name": "j.sh", "nodelist": "node[1-2]", "num_nodes": 2, "num_tasks": None, "num_cpus": 4,
        "submit_time": "2026-11-30T11:59:58Z", "start_time": "2026-11-30T12:00:00Z",
        "end_time": "2026-11-30T12:00:08Z", "work_dir": "/w", "state": "FAILED", "exit_code": 3,
        "exit_signal": 0, "cluster": "ogrt", "started_event": "2026-11-30T12:00:00.000001Z",
        "array_job_id": None, "array_task_id": None}


def make(type_name: str, **options):
    cls = OUTPUT_TYPES[type_name]
    return cls("t", cls.validate("t", {"type": type_name, **options}))


def _orders():
    """Every order of the three records, as one batch and as one batch per record, and repeated."""
    recs = (START, EPILOG_END, JOBCOMP_END)
    for perm in itertools.permutations(recs):
        yield [list(perm)]
        yield [[r] for r in perm]
    yield [[START, START], [JOBCOMP_END, EPILOG_END, JOBCOMP_END], [START]]


def _check(rows: list[dict]) -> None:
    assert len(rows) == 1
    row = rows[0]
    assert row["ended_event"] is not None
    got = {k: row[k] for k in WANT}
    assert got == WANT


def _sqlite_rows(path) -> list[dict]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM jobs")]
    conn.close()
    return rows


@pytest.mark.parametrize("n", range(len(list(_orders()))))
def test_sqlite_job_upsert_in_any_order(tmp_path, n):
    batches = list(_orders())[n]
    out = make("sqlite", path=str(tmp_path / "j.db"))
    procs = R.pairs(4)
    for i, batch in enumerate(batches):
        out.write(batch + procs[i:i + 1])  # beside process records
    out.close()
    _check(_sqlite_rows(tmp_path / "j.db"))
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] == len(
            {r["id"] for r in procs[:len(batches)]})
    conn.close()


def test_postgresql_job_upsert_in_any_order(postgres):
    for batches in _orders():
        dsn = postgres.new_database()
        out = make("postgresql", dsn=dsn)
        for batch in batches:
            out.write(batch + R.pairs(1))
        out.close()
        with psycopg.connect(dsn) as conn:
            cur = conn.execute("SELECT *, to_char(submit_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                               " AS s, to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                               " AS b, to_char(end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS e,"
                               " to_char(started_event AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                               " AS se FROM jobs")
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        for r in rows:
            r.update(submit_time=r.pop("s"), start_time=r.pop("b"), end_time=r.pop("e"),
                     started_event=r.pop("se"))
        _check(rows)
        assert set(JOB_COLUMNS) <= set(names)


def test_jsonl_writes_job_records_as_they_are(tmp_path):
    out = make("jsonl", path=str(tmp_path / "r.jsonl"))
    out.write([START, JOBCOMP_END])
    out.close()
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [START, JOBCOMP_END]
