"""Retention: delete the records older than a cut-off from an SQL output, in bounded batches.

`purge()` runs the steps of ogrt/sql/retention.py against the database of one sqlite or
postgresql output: old rows (AGE_STEPS), then the shared rows only they used
(SHARED_STEPS), each batch its own short transaction, with a pause after each batch
(`pause` x the time the batch took) so the daemon's writers get the database most of the
time. `dry_run` only counts. `ogrt purge` (the CLI) and the daemon's `[retention]
max_age` (`Retainer`: once a day, in one worker) call it.

Ages (`--older-than`, `max_age`) are ogrt/age.py's: "400d", "2w", "18m" (months), "1y".
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ogrt.age import Age
from ogrt.config import Config, OutputConfig
from ogrt.report.db import Dialect, ReportError, pick_sql_output
from ogrt.sql.retention import (AGE_STEPS, BUMP_EPOCH, PURGE_LOCK, SEED_EPOCH, SHARED_STEPS, AgeStep,
                                SharedStep)
from ogrt.sql.schema import SCHEMA_VERSION, VERSION_QUERY, SchemaVersionError

__all__ = ["purge", "purge_outputs", "PurgeResult", "Retainer", "BATCH_ROWS"]

log = logging.getLogger("ogrt.retention")

BATCH_ROWS = 5000  # rows per transaction
PAUSE = 1.0  # after a batch, sleep this many times as long as it took


@dataclass
class PurgeResult:
    """Rows removed (or, dry run, that would be) and kept, per table."""

    cutoff: datetime
    dry_run: bool
    removed: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"cut-off {self.cutoff.strftime('%Y-%m-%dT%H:%M:%SZ')}"
               + (" (dry run: nothing changed)" if self.dry_run else
                  f", {self.batches} batches in {self.seconds:.1f} s")]
        for table, n in self.removed.items():
            out.append(f"  {table:<13} {verb} {n:>10,}   kept {self.kept.get(table, 0):>10,}")
        return out


class RetentionError(Exception):
    """The database cannot be purged (not an OGRT database)."""


class _Db:
    """One write connection (autocommit; transactions explicit) and its dialect."""

    def __init__(self, output: OutputConfig, busy_timeout: float = 60.0) -> None:
        self.dialect = Dialect(output.type)
        if output.type == "sqlite":
            import sqlite3

            from urllib.parse import quote

            path = quote(os.path.abspath(output.options["path"]), safe="/")
            self.conn: Any = sqlite3.connect(f"file:{path}?mode=rw", uri=True,
                                             isolation_level=None, timeout=busy_timeout)
            self.errors: type[Exception] = sqlite3.Error
        else:
            import psycopg

            self.conn = psycopg.connect(output.options["dsn"], autocommit=True, connect_timeout=10,
                                        application_name="ogrt-purge")
            self.errors = psycopg.Error
        try:
            versions = [v for (v,) in self.conn.execute(VERSION_QUERY).fetchall()]
        except self.errors:
            versions = []
        if versions != [SCHEMA_VERSION]:
            self.conn.close()
            raise SchemaVersionError(max(versions)) if versions else RetentionError(
                "not an OGRT database (no schema_version)")

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self.dialect.sql(sql), tuple(params)).fetchone()[0]

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.conn.execute(self.dialect.sql(sql), tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(self.dialect.sql(sql), tuple(params)).rowcount

    def begin(self, shared_rows: bool) -> None:
        """A write transaction; deleting shared rows, also the purge lock and a new epoch."""
        pg = self.dialect.name == "postgresql"
        self.conn.execute("BEGIN" if pg else "BEGIN IMMEDIATE")
        if shared_rows:
            if pg:
                self.conn.execute(f"SELECT pg_advisory_xact_lock({PURGE_LOCK})")
            if self.run(BUMP_EPOCH) == 0:
                self.run(SEED_EPOCH)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def in_list(self, ids: list[int]) -> tuple[str, list[Any]]:
        """`(?, ?, ...)` for SQLite, `(SELECT unnest(?::bigint[]))` for PostgreSQL."""
        if self.dialect.name == "postgresql":
            return "(SELECT unnest(?::bigint[]))", [ids]
        return f"({', '.join('?' * len(ids))})", list(ids)

    def close(self) -> None:
        self.conn.close()


def purge(output: OutputConfig, age_or_cutoff: Age | datetime, *, dry_run: bool = False,
          batch_rows: int = BATCH_ROWS, pause: float = PAUSE,
          stop: Callable[[], bool] = lambda: False) -> PurgeResult:
    """Delete (count, with `dry_run`) what is older than the cut-off in the database of
    `output` (a validated sqlite or postgresql output). `stop()` is checked between batches."""
    cutoff = age_or_cutoff if isinstance(age_or_cutoff, datetime) else age_or_cutoff.cutoff()
    result = PurgeResult(cutoff, dry_run)
    db = _Db(output)
    cut = db.dialect.time_param(cutoff)
    t0 = time.monotonic()
    try:
        if dry_run:
            for step in AGE_STEPS:
                result.removed[step.table] = db.one(step.count_old(), [cut] * step.count_old().count("?"))
            for shared in SHARED_STEPS:
                sql = shared.count_unreferenced_after_purge()
                result.removed[shared.table] = db.one(sql, [cut] * sql.count("?"))
        else:
            for step in AGE_STEPS:
                result.removed[step.table] = _delete_old(db, step, cut, batch_rows, pause, stop, result)
            for shared in SHARED_STEPS:
                result.removed[shared.table] = _delete_unreferenced(db, shared, batch_rows, pause, stop, result)
        for table in result.removed:
            total = db.one(f"SELECT count(*) FROM {table}")
            result.kept[table] = total - result.removed[table] if dry_run else total
    finally:
        db.close()
    result.seconds = time.monotonic() - t0
    return result


def _pause(started: float, pause: float) -> None:
    if pause > 0:
        time.sleep((time.monotonic() - started) * pause)


def _delete_old(db: _Db, step: AgeStep, cut: Any, n: int, pause: float, stop: Callable[[], bool],
                result: PurgeResult) -> int:
    sql = step.delete_batch(n)
    params = [cut] * sql.count("?")
    removed = 0
    while not stop():
        t = time.monotonic()
        db.begin(shared_rows=False)
        try:
            done = db.run(sql, params)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        removed += done
        result.batches += 1
        if done < n:
            break
        _pause(t, pause)
    return removed


def _delete_unreferenced(db: _Db, step: SharedStep, n: int, pause: float, stop: Callable[[], bool],
                         result: PurgeResult) -> int:
    removed, after = 0, 0
    listing = step.next_batch(n)
    while not stop():
        t = time.monotonic()
        ids = [i for (i,) in db.all(listing, [after])]  # outside the transaction: no lock held
        if not ids:
            break
        after = ids[-1]
        in_sql, in_params = db.in_list(ids)
        db.begin(shared_rows=True)
        try:
            for stmt in step.delete(in_sql):
                done = db.run(stmt, in_params)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        removed += done  # the last statement deletes the rows themselves
        result.batches += 1
        if len(ids) < n:
            break
        _pause(t, pause)
    return removed


class Retainer:
    """`[retention] max_age`: purge every SQL output once a day, in a thread of one worker."""

    INTERVAL = 86400.0

    def __init__(self, age: Age, outputs: Sequence[OutputConfig], first_delay: float = 0.0) -> None:
        self.age = age
        self.outputs = [o for o in outputs if o.type in ("sqlite", "postgresql")]
        self.first_delay = first_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        if not self.outputs:
            return
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = self.first_delay
        while not self._stop.wait(wait):
            for o in self.outputs:
                try:
                    r = purge(o, self.age, stop=self._stop.is_set)
                except Exception as e:  # the database is away: try again tomorrow
                    log.error("retention: purging output %s (older than %s) failed: %s", o.name, self.age.text, e)
                    continue
                log.info("retention: output %s, older than %s: %s", o.name, self.age.text,
                         "; ".join(x.strip() for x in r.lines()))
            self.runs += 1
            wait = self.INTERVAL

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def summary(results: Mapping[str, PurgeResult]) -> list[str]:
    """The lines `ogrt purge` prints: per output, what went and what stayed."""
    out = []
    for name, r in results.items():
        out.append(f"output {name}: " + r.lines()[0])
        out.extend(r.lines()[1:])
    return out


def purge_outputs(config: Config, output: str | None, age: Age, *, dry_run: bool, batch_rows: int,
                  pause: float) -> int:
    """`ogrt purge`: purge the output named `output`, else every SQL output of `config`,
    printing each one's summary; the exit code (2: nothing to purge, 1: an output failed)."""
    where = str(config.path or "the default config")
    try:
        outputs = ([pick_sql_output(config, output, where)] if output else
                   [o for o in config.outputs if o.type in ("sqlite", "postgresql")])
    except ReportError as e:
        print(f"ogrt purge: {e}", file=sys.stderr)
        return 2
    if not outputs:
        print(f"ogrt purge: {where}: no sqlite or postgresql output", file=sys.stderr)
        return 2
    cutoff = age.cutoff()
    code = 0
    for o in outputs:
        try:
            result = purge(o, cutoff, dry_run=dry_run, batch_rows=batch_rows, pause=pause)
        except Exception as e:  # the database's own errors (sqlite3, psycopg), e.g. unreachable
            if type(e).__module__.split(".")[0] not in ("sqlite3", "psycopg") and not isinstance(
                    e, (RetentionError, SchemaVersionError)):
                raise
            print(f"ogrt purge: output {o.name}: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
            continue
        print("\n".join(summary({o.name: result})), flush=True)
    return code
