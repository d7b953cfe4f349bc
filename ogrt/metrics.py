"""Counters and the Prometheus text exposition at http://ADDRESS/metrics.

A Counters object belongs to one thread (the event loop, or the UDP receiver), so the
hot path is a plain dict update with no lock; snapshot() copies it atomically (GIL).
Samples are keyed by their exposition name including labels, e.g.
``ogrt_rejected_total{reason="too_large"}``; snapshots of several threads or worker
processes are summed with merge().
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

__all__ = ["Counters", "merge", "render", "parse", "serve_metrics", "METRICS"]

log = logging.getLogger("ogrt.metrics")

# name → (type, help); every sample the daemon exports is declared here
METRICS: dict[str, tuple[str, str]] = {
    "ogrt_received_frames_total": ("counter", "Frames received, by transport."),
    "ogrt_received_bytes_total": ("counter", "Bytes received, by transport."),
    "ogrt_records_total": ("counter", "Valid records decoded and handed to the outputs, by event."),
    "ogrt_rejected_total": ("counter", "Frames, datagrams or connections rejected, by reason."),
    "ogrt_connections_total": ("counter", "TCP connections accepted."),
    "ogrt_connections_open": ("gauge", "TCP connections open now."),
    "ogrt_tcp_read_pauses_total": ("counter", "Times TCP reading paused (<= 0.1 s) for an output's queue to drain."),
    "ogrt_fragments_pending": ("gauge", "Records waiting for more UDP fragments."),
    "ogrt_fragments_pending_bytes": ("gauge", "Bytes of UDP fragments held."),
    "ogrt_output_persisted_total": ("counter", "Records written to the output's backend."),
    "ogrt_output_spooled_total": ("counter", "Records written to the output's on-disk spool."),
    "ogrt_output_spool_depth": ("gauge", "Records in the output's on-disk spool now."),
    "ogrt_output_spool_bytes": ("gauge", "Bytes in the output's on-disk spool now."),
    "ogrt_output_dropped_total": ("counter", "Records dropped because the spool was full."),
    "ogrt_output_write_errors_total": ("counter", "Failed writes to the output's backend."),
    "ogrt_output_rejected_total": ("counter", "Records the output's backend refused (isolated, logged)."),
    "ogrt_output_latency_seconds_sum": ("counter", "Seconds from receipt to persistence, summed."),
    "ogrt_output_latency_seconds_count": ("counter", "Records counted in the latency sum."),
    "ogrt_output_queue_depth": ("gauge", "Records queued in memory for the output now."),
    "ogrt_workers": ("gauge", "Worker processes running."),
    "ogrt_udp_kernel_drops_total": ("counter", "Datagrams the kernel dropped: the UDP receive buffer was full."),
    # relays (the collector's listener; ogrt/protocols/relay.py)
    "ogrt_relay_connections_total": ("counter", "Relay connections accepted (before their MUNGE credential is checked)."),
    "ogrt_relay_connections_open": ("gauge", "Relay connections open now."),
    "ogrt_relay_batches_acked_total": ("counter", "Relay batches acknowledged: every output persisted or spooled them."),
    "ogrt_relay_batches_unacked_total": ("counter", "Relay batches an output dropped (spool full): not acknowledged."),
    "ogrt_relay_duplicates_total": ("counter", "Records a relay sent again that this collector had stored already."),
    # `ogrt relay` (ogrt/relay/)
    "ogrt_relay_datagrams_total": ("counter", "Datagrams received on the relay socket."),
    "ogrt_relay_records_total": ("counter", "Records the relay took (after joining fragments)."),
    "ogrt_relay_identity_corrected_total": ("counter", "Records whose pid/uid/gid claim differed from the kernel's credentials."),
    "ogrt_relay_forwarded_total": ("counter", "Records acknowledged by a collector."),
    "ogrt_relay_spooled_total": ("counter", "Records written to the relay's spool."),
    "ogrt_relay_spool_depth": ("gauge", "Records in the relay's spool now."),
    "ogrt_relay_memory_bytes": ("gauge", "Bytes of batches the relay holds in memory (queued and unacknowledged)."),
    "ogrt_relay_upstream_connected": ("gauge", "1 while the relay has an accepted collector connection."),
    "ogrt_relay_upstream_failures_total": ("counter", "Collector connections that failed, were refused, timed out or dropped, by reason."),
    "ogrt_relay_dropped_total": ("counter", "Records the relay dropped: its spool was full."),
    # `ogrt sink`
    "ogrt_sink_received_total": ("counter", "Messages fetched from the stream."),
    "ogrt_sink_acked_total": ("counter", "Messages acknowledged after every output persisted them."),
    "ogrt_sink_redelivered_total": ("counter", "Messages fetched that had been delivered before."),
    "ogrt_sink_nacked_total": ("counter", "Messages handed back for redelivery (an output was down)."),
    "ogrt_sink_rejected_total": ("counter", "Messages terminated: not a record, or refused by an output."),
    "ogrt_sink_lag": ("gauge", "Messages in the stream not yet delivered to the consumer."),
    "ogrt_sink_ack_pending": ("gauge", "Messages delivered to the consumer's sinks, not yet acked."),
}

# OutputRunner.stats() key → metric name
RUNNER_STATS = {
    "persisted": "ogrt_output_persisted_total",
    "spooled_total": "ogrt_output_spooled_total",
    "spool_depth": "ogrt_output_spool_depth",
    "spool_bytes": "ogrt_output_spool_bytes",
    "dropped": "ogrt_output_dropped_total",
    "rejected": "ogrt_output_rejected_total",
    "write_errors": "ogrt_output_write_errors_total",
    "latency_seconds_sum": "ogrt_output_latency_seconds_sum",
    "latency_seconds_count": "ogrt_output_latency_seconds_count",
    "queue_depth": "ogrt_output_queue_depth",
}


def sample(name: str, **labels: str) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_label_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def _label_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counters:
    """Samples of one thread. inc() is the hot path."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def inc(self, key: str, n: float = 1) -> None:
        values = self.values
        values[key] = values.get(key, 0) + n

    def snapshot(self) -> dict[str, float]:
        return self.values.copy()


def merge(snapshots: Iterable[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for snap in snapshots:
        for key, value in snap.items():
            out[key] = out.get(key, 0) + value
    return out


def render(samples: Mapping[str, float]) -> str:
    """Prometheus text format 0.0.4."""
    by_name: dict[str, list[str]] = {}
    for key in sorted(samples):
        by_name.setdefault(key.partition("{")[0], []).append(key)
    lines: list[str] = []
    for name, keys in by_name.items():
        kind, help_text = METRICS.get(name, ("untyped", ""))
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for key in keys:
            value = samples[key]
            text = str(int(value)) if float(value).is_integer() else repr(float(value))
            lines.append(f"{key} {text}")
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, float]:
    """Prometheus text → {sample name with labels: value} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


async def _handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    collect: Callable[[], Awaitable[Mapping[str, float]]],
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
        request_line = head.split(b"\r\n", 1)[0].split()
        if len(request_line) >= 2 and request_line[0] == b"GET" and request_line[1].split(b"?")[0] == b"/metrics":
            body = render(await collect()).encode()
            status = b"200 OK"
            ctype = b"text/plain; version=0.0.4; charset=utf-8"
        else:
            body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )
        await writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    except Exception:  # a scrape must never take the daemon down
        log.exception("metrics request failed")
    finally:
        writer.close()


async def serve_metrics(
    host: str, port: int, collect: Callable[[], Awaitable[Mapping[str, float]]]
) -> asyncio.base_events.Server:
    return await asyncio.start_server(
        lambda r, w: _handle(r, w, collect), host, port, limit=8192, reuse_address=True
    )
