"""OutputRunner: one thread per output that batches records, writes them, and spools.

The asyncio event loop calls `submit()`, which only appends to a bounded in-memory queue
(or, when that is full, appends the queue and the new records to the on-disk spool, in
order) and never waits for the backend. The runner's thread takes batches of up to
`batch_records` records (or whatever is there after `flush_interval` seconds), writes them,
and on an OutputError moves the batch and everything queued to the spool, then retries the
backend with exponential back-off (0.1 s doubling up to `reconnect_max_seconds`). While the
spool holds anything, its batches are written first, oldest first, so records keep their order.
When the spool would exceed its size limit the batch is dropped: counted in `dropped`
and logged at ERROR (at most once per 10 s). A record the backend refuses by itself
(any error other than OutputError, found by splitting the batch) is counted in `rejected`
and logged, so it cannot block the output.

Acknowledgements: records submitted as an `Acked` list (the relay listener's batches) are
settled once their fate is known: `on_settled(True)` once the backend persisted (or refused)
them or they are in the spool (fsynced), `on_settled(False)` when the spool was full and they
were dropped. Each list is settled once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.spool import Spool
from ogrt.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

BACKOFF_MIN = 0.1

Item = tuple[float, list[dict[str, Any]]]  # (submit time, records)


class Acked(list):  # type: ignore[type-arg]
    """Records whose settlement someone waits for (see the module docstring)."""

    __slots__ = ("on_settled", "settled")

    def __init__(self, records: list[dict[str, Any]], on_settled: Any) -> None:
        super().__init__(records)
        self.on_settled = on_settled
        self.settled = False


def settle(items: list[Item], ok: bool) -> None:
    for _, recs in items:
        if type(recs) is Acked and not recs.settled:
            recs.settled = True
            recs.on_settled(ok)


class OutputRunner:
    def __init__(self, output: Output, spool_dir: Path | str, spool_max_bytes: int) -> None:
        self.output = output
        self.name = output.name
        opts = output.options  # validated: every key of options.COMMON is there
        self.batch_records: int = opts["batch_records"]
        self.flush_interval: float = opts["flush_interval"]
        self.queue_limit: int = opts["queue_records"] or 4 * self.batch_records
        self.backoff_max: float = opts["reconnect_max_seconds"]
        self.spool_dir = Path(spool_dir)
        self.spool_max_bytes = int(spool_max_bytes)
        self.spool: Spool | None = None
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the writer waits here for records
        self._room = threading.Condition(lock)  # wait_room() callers wait here for queue space
        self._queue: deque[Item] = deque()
        self._queued = 0
        self._stopping = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._opened = False
        self._healthy = True
        self._backoff = BACKOFF_MIN
        self._ratelog = RateLimitedLog(log, interval=10.0, burst=1)  # per kind of message
        self._inflight: list[Item] | None = None  # the queue batch being written now
        self._abandoned = False  # stop() gave up waiting for the writer thread
        self.rejected = 0
        self.persisted = 0
        self.spooled_total = 0
        self.dropped = 0
        self.write_errors = 0
        self.latency_sum = 0.0
        self.latency_count = 0

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self.spool = Spool(self.spool_dir, self.spool_max_bytes)
        if self.spool.depth:
            log.warning("output %s: replaying %d spooled records from %s",
                        self.name, self.spool.depth, self.spool_dir)
        self._thread = threading.Thread(target=self._run, name=f"output-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write out (else spool) every submitted record, close the output, join the thread."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._cond.notify_all()
            self._room.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                log.error("output %s: writer still busy after %.1f s; spooling what is queued "
                          "and the batch being written (it may be written twice)", self.name, timeout)
                with self._cond:
                    inflight, self._inflight = self._inflight, None
                    if inflight:
                        self._queue.extendleft(reversed(inflight))
                    self._spill_locked([])
                    self._abandoned = True
        if self.spool is not None:
            self.spool.close()

    # -- the event loop side -------------------------------------------------------
    def submit(self, records: list[dict[str, Any]]) -> None:
        """Hand records to this output. Thread-safe; never waits for the backend."""
        if not records:
            return
        item = (time.time(), records)
        with self._cond:
            if self._stopping:  # too late for the writer: keep them for the next start
                self._spill_locked([item])
                return
            if self._queued + len(records) > self.queue_limit:
                self._spill_locked([item])
                return
            was_empty = not self._queue
            self._queue.append(item)
            self._queued += len(records)
            # wake the writer: a full batch is ready, or the flush_interval clock starts now
            if was_empty or self._queued >= self.batch_records:
                self._cond.notify()

    def wait_room(self, n: int, timeout: float) -> bool:
        """Block up to `timeout` s until `n` more records fit in the queue without a spill.

        For a receiver that has its own buffer to lean on (the UDP thread: the kernel's
        receive buffer): waiting costs nothing, while a spill costs a write and a re-read
        of every record. Returns at once (False) when the output is failing, stopping or
        replaying its spool; True when there is room.
        """
        deadline = time.monotonic() + timeout
        with self._room:
            while self._queued and self._queued + n > self.queue_limit:
                if not self._healthy or self._stopping or (self.spool is not None and self.spool.depth):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._room.wait(left)
            return True

    def _spill_locked(self, extra: list[Item]) -> None:
        """Move the whole queue, then `extra`, to the spool tail (caller holds _cond)."""
        items = list(self._queue) + extra
        self._queue.clear()
        self._queued = 0
        self._room.notify_all()
        results = [(self._to_spool(recs, t, sync=False), t, recs) for t, recs in items]
        if any(type(recs) is Acked for _, _, recs in results):
            self._sync_spool()
        for ok, t, recs in results:
            settle([(t, recs)], ok)
        self._cond.notify_all()  # a writer waiting for a batch must replay the spool now

    def _sync_spool(self) -> None:
        assert self.spool is not None
        try:
            self.spool.sync()
        except OSError as e:
            log.error("output %s: cannot fsync the spool %s: %s", self.name, self.spool_dir, e)

    def _to_spool(self, records: list[dict[str, Any]], t: float, sync: bool = True) -> bool:
        """Append to the spool; False when the records were dropped (full, or a disk error)."""
        assert self.spool is not None
        try:
            ok = self.spool.append(records, t, sync=sync)
        except OSError as e:
            ok = False
            log.error("output %s: cannot write the spool %s: %s", self.name, self.spool_dir, e)
        if ok:
            self.spooled_total += len(records)
        else:
            self.dropped += len(records)
            self._ratelog.log(logging.ERROR, "dropped records",
                              "output %s: SPOOL FULL (%d of %d bytes in %s): DROPPED %d records "
                              "(%d dropped in total)", self.name, self.spool.bytes,
                              self.spool_max_bytes, self.spool_dir, len(records), self.dropped)
        return ok

    # -- the writer thread ---------------------------------------------------------
    def _take_batch(self) -> list[Item] | None:
        """Wait for a full batch, the flush interval, or stop; None when stopping with nothing,
        [] when the spool must be replayed first."""
        assert self.spool is not None
        with self._cond:
            first_seen: float | None = None
            while True:
                if self.spool.depth:  # a spill happened: older records wait in the spool
                    return []
                if self._queued >= self.batch_records or (self._stopping and self._queue):
                    break
                if self._stopping:
                    return None
                if self._queue:
                    now = time.monotonic()
                    if first_seen is None:
                        first_seen = now
                    left = self.flush_interval - (now - first_seen)
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    first_seen = None
                    self._cond.wait()
            items: list[Item] = []
            n = 0
            while self._queue and n < self.batch_records:
                item = self._queue.popleft()
                items.append(item)
                n += len(item[1])
            self._queued -= n
            self._room.notify_all()
            return items

    def _write(self, items: list[Item]) -> list[dict[str, Any]]:
        """Write a batch; return the records still to be written (spooled by the caller).

        OutputError (backend unavailable): the whole batch is returned. Any other exception
        means the backend refused something in the batch (or a bug): the batch is split in
        halves until the records it refuses one at a time are found; those are rejected
        (counted, logged with their id) so one bad record cannot block an output forever.
        """
        records = items[0][1] if len(items) == 1 else [r for _, recs in items for r in recs]
        try:
            if not self._opened:
                self.output.open()
                self._opened = True
            self.output.write(records)
        except OutputError as e:
            self._failed(e)
            return records
        except Exception as e:
            log.warning("output %s: batch of %d records refused (%s: %s); isolating the "
                        "records it refuses", self.name, len(records), type(e).__name__, e)
            return self._write_isolating(records, items[0][0])
        self._succeeded(items, len(records))
        return []

    def _succeeded(self, items: list[Item], n: int) -> None:
        now = time.time()
        self.persisted += n
        for t, recs in items:
            self.latency_sum += (now - t) * len(recs)
        self.latency_count += n
        self._backoff = BACKOFF_MIN

    def _write_isolating(self, records: list[dict[str, Any]], t: float) -> list[dict[str, Any]]:
        stack = [records]
        while stack:
            part = stack.pop()
            try:
                self.output.write(part)
            except OutputError as e:
                self._failed(e)
                return part + [r for p in reversed(stack) for r in p]
            except Exception as e:
                if len(part) > 1:
                    mid = len(part) // 2
                    stack.append(part[mid:])
                    stack.append(part[:mid])
                    continue
                self.rejected += 1
                self._ratelog.log(logging.ERROR, "rejected records",
                                  "output %s: REJECTED record %s (%s: %s); %d rejected in total",
                                  self.name, part[0].get("id"), type(e).__name__, e, self.rejected)
                continue
            self._succeeded([(t, part)], len(part))
        return []

    def _failed(self, e: BaseException) -> None:
        self.write_errors += 1
        self._healthy = False
        self._ratelog.log(logging.ERROR, "backend failures",
                          "output %s: backend unavailable (%s); spooling to %s, retrying in %.1f s",
                          self.name, e, self.spool_dir, self._backoff)

    def _run(self) -> None:
        try:
            while True:
                try:
                    self._loop()
                    return
                except Exception:  # e.g. the spool's disk failing: keep the output alive
                    log.exception("output %s: writer failed; spooling what is queued and "
                                  "restarting in 1 s", self.name)
                    with self._cond:
                        self._spill_locked([])
                        if self._stopping:
                            return
                        self._cond.wait(1.0)
        finally:
            try:
                if self._opened:
                    self.output.close()
            except Exception:
                log.exception("output %s: error while closing", self.name)

    def _loop(self) -> None:
        assert self.spool is not None
        spool = self.spool
        while True:
            if not self._healthy:
                with self._cond:
                    self._spill_locked([])
                    retry_at = time.monotonic() + self._backoff
                    while not self._stopping:  # submits wake us: keep waiting out the back-off
                        left = retry_at - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    self._backoff = min(self._backoff * 2, self.backoff_max)
                    if self._stopping:
                        self._spill_locked([])
                        break
                self._healthy = True
                continue
            if spool.depth:
                if self._stopping and time.monotonic() >= self._deadline:
                    with self._cond:
                        self._spill_locked([])
                    break
                head = spool.peek()
                if head is None:
                    continue
                records, t = head
                if not self._write([(t, records)]):
                    spool.pop()
                continue
            items = self._take_batch()
            if items is None:
                break
            if not items:
                continue
            if self._stopping and time.monotonic() >= self._deadline:
                for t, recs in items:
                    settle([(t, recs)], self._to_spool(recs, t))
                with self._cond:
                    self._spill_locked([])
                break
            self._inflight = items
            rest = self._write(items)
            with self._cond:
                self._inflight = None
                ok = True
                if rest and not self._abandoned:
                    ok = self._to_spool(rest, items[0][0])
                if not self._abandoned:
                    settle(items, ok)

    # -- metrics -------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        spool = self.spool
        return {
            "persisted": float(self.persisted),
            "spooled_total": float(self.spooled_total),
            "spool_depth": float(spool.depth if spool else 0),
            "spool_bytes": float(spool.bytes if spool else 0),
            "dropped": float(self.dropped),
            "write_errors": float(self.write_errors),
            "rejected": float(self.rejected),
            "latency_seconds_sum": self.latency_sum,
            "latency_seconds_count": float(self.latency_count),
            "queue_depth": float(self._queued),
        }
