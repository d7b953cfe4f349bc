"""`ogrt server`: one receiving process (or one worker of several).

Lifecycle: start the output runners, bind TCP and UDP, say "ready" on stderr, serve until
SIGTERM/SIGINT, then stop accepting, read what the open connections and the UDP socket
buffer still hold, hand every decoded record to the runners and stop them (each flushes
to its backend, else to its spool), and exit 0.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ogrt.config import FILE_OUTPUTS, Config
from ogrt.filemodes import make_dirs, report_wide_modes, restrict_umask
from ogrt.lifecycle import READY_LINE, install_stop_signals, setup_logging
from ogrt.memory import tune_allocator
from ogrt.metrics import RUNNER_STATS, merge, sample, serve_metrics
from ogrt.pipeline import Ingest
from ogrt.protocols.relay import RelayReceiver
from ogrt.protocols.tcp import TcpReceiver
from ogrt.protocols.udp import UdpReceiver, kernel_drops
from ogrt.ratelimit import RateLimitedLog
from ogrt.supervisors.workers import run_worker, supervise
from ogrt.users import UserCache

__all__ = ["Server", "serve", "run", "bind_socket"]

log = logging.getLogger("ogrt.server")


def bind_socket(address: str, port: int, kind: int, reuse_port: bool = False) -> socket.socket:
    """A bound socket; "::" listens on IPv6 and IPv4 (dual stack)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(4096)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Server:
    """The whole pipeline of one process: receivers → Ingest → one OutputRunner per output."""

    def __init__(self, config: Config, worker_index: int = 0, reuse_port: bool = False,
                 serve_metrics_here: bool = True) -> None:
        self.config = config
        self.worker_index = worker_index
        self.reuse_port = reuse_port
        self.serve_metrics_here = serve_metrics_here
        self.runners: list[tuple[str, Any]] = []
        self.orphans: list[tuple[str, Any]] = []  # runners replaying spools of former workers
        self.users = UserCache()
        self.ratelog = RateLimitedLog(logging.getLogger("ogrt.input"))
        self.tcp: TcpReceiver | None = None
        self.udp: UdpReceiver | None = None
        self.tcp_ingest: Ingest | None = None
        self.relay: RelayReceiver | None = None
        self._metrics_server: asyncio.base_events.Server | None = None
        self.port = config.server.port
        self.relay_port: int | None = None
        self.failed = False  # a receiver died: stop and exit 1 (a supervisor restarts us)
        self.stop_event: asyncio.Event | None = None
        self.retainer: Any = None  # [retention] max_age: in worker 0 only

    # -- start ---------------------------------------------------------------------------
    def _start_runners(self) -> None:
        from ogrt.outputs import OUTPUT_TYPES
        from ogrt.outputs.runner import OutputRunner

        state_dir = self.config.server.state_dir
        for oc in self.config.outputs:
            output = OUTPUT_TYPES[oc.type](oc.name, oc.options, self.worker_index)
            spool_dir = Path(state_dir) / "spool" / oc.name / str(self.worker_index)
            runner = OutputRunner(output, spool_dir, self.config.spool.max_bytes)
            runner.start()
            self.runners.append((oc.name, runner))
            self._adopt_orphan_spools(oc, OUTPUT_TYPES, OutputRunner)

    def _adopt_orphan_spools(self, oc: Any, types: Any, runner_cls: Any) -> None:
        """Spools left by workers that no longer exist (`workers` was lowered): worker
        index % workers replays each of them with its own runner, stopped once empty."""
        root = Path(self.config.server.state_dir) / "spool" / oc.name
        n = self.config.server.workers
        try:
            entries = [e for e in root.iterdir() if e.is_dir() and e.name.isdigit()]
        except OSError:
            return
        for e in entries:
            index = int(e.name)
            if index >= n and index % n == self.worker_index:
                runner = runner_cls(types[oc.type](oc.name, oc.options, self.worker_index), e,
                                    self.config.spool.max_bytes)
                log.info("output %s: taking over the spool of former worker %d (%s)", oc.name, index, e)
                runner.start()
                self.orphans.append((oc.name, runner))

    async def start(self) -> None:
        sc = self.config.server
        make_dirs(sc.state_dir)
        self._start_runners()
        age = self.config.retention.max_age
        if age is not None and self.worker_index == 0:
            from ogrt.retention import Retainer
            self.retainer = Retainer(age, self.config.outputs)
            self.retainer.start()
        sinks = [r for _, r in self.runners]
        if "tcp" in sc.transports:
            tcp_sock = bind_socket(sc.address, sc.port, socket.SOCK_STREAM, self.reuse_port)
            self.port = tcp_sock.getsockname()[1]
            self.tcp_ingest = Ingest(sinks, self.users, "tcp", self.ratelog, direct=sc.direct)
            self.tcp = TcpReceiver(self.tcp_ingest, sc)
            await self.tcp.start(tcp_sock)
        if "udp" in sc.transports:
            udp_sock = bind_socket(sc.address, self.port, socket.SOCK_DGRAM, self.reuse_port)
            self.port = udp_sock.getsockname()[1]
            loop = asyncio.get_running_loop()

            def crashed(exc: BaseException) -> None:
                self.failed = True
                if self.stop_event is not None:
                    loop.call_soon_threadsafe(self.stop_event.set)

            self.udp = UdpReceiver(udp_sock, Ingest(sinks, self.users, "udp", self.ratelog, direct=sc.direct),
                                   sc, crashed)
            self.udp.start()
        if sc.relay_port is not None:
            relay_sock = bind_socket(sc.address, sc.relay_port, socket.SOCK_STREAM, self.reuse_port)
            self.relay_port = relay_sock.getsockname()[1]
            self.relay = RelayReceiver(sinks, Ingest(sinks, self.users, "relay", self.ratelog), self.users, sc)
            await self.relay.start(relay_sock)
        if self.serve_metrics_here and self.config.metrics.address is not None:
            host, port = self.config.metrics.address
            self._metrics_server = await serve_metrics(host, port, self.collect)
        log.info("listening on %s port %d (%s), outputs: %s", sc.address, self.port,
                 "+".join(sc.transports), ", ".join(f"{oc.name} ({oc.type})" for oc in self.config.outputs))

    # -- metrics ---------------------------------------------------------------------------
    async def collect(self) -> dict[str, float]:
        snaps: list[dict[str, float]] = []
        gauges: dict[str, float] = {}
        if self.tcp is not None and self.tcp_ingest is not None:
            snaps.append(self.tcp_ingest.counters.snapshot())
            gauges["ogrt_connections_open"] = len(self.tcp.connections)
        if self.relay is not None:
            snaps.append(self.relay.ingest.counters.snapshot())
            gauges["ogrt_relay_connections_open"] = len(self.relay.connections)
        if self.udp is not None:
            snaps.append(self.udp.ingest.counters.snapshot())
            gauges["ogrt_fragments_pending"] = len(self.udp.reassembler)
            gauges["ogrt_fragments_pending_bytes"] = self.udp.reassembler.bytes
            drops = kernel_drops(self.udp.sock)
            if drops is not None:
                gauges["ogrt_udp_kernel_drops_total"] = drops
        snaps.append(gauges)
        for name, runner in self.runners + self.orphans:
            stats = runner.stats()
            snaps.append({sample(metric, output=name): stats[key]
                          for key, metric in RUNNER_STATS.items() if key in stats})
        return merge(snaps)

    # -- stop --------------------------------------------------------------------------------
    async def stop(self) -> None:
        sc = self.config.server
        t0 = time.monotonic()
        if self.relay is not None:
            self.relay.pause()
        if self.tcp is not None:
            await self.tcp.stop(grace=sc.shutdown_timeout / 2)
        if self.udp is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.udp.stop, 10.0)
            self.udp.sock.close()
        loop = asyncio.get_running_loop()
        if self.retainer is not None:  # stops between two batches
            await loop.run_in_executor(None, self.retainer.stop)
        remaining = max(1.0, sc.shutdown_timeout - (time.monotonic() - t0))
        await asyncio.gather(*(loop.run_in_executor(None, runner.stop, remaining)
                               for _, runner in self.runners + self.orphans))
        if self.relay is not None:
            await self.relay.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        log.info("stopped after draining in %.2f s", time.monotonic() - t0)


async def serve(config: Config, on_ready: Callable[[Server], None] | None = None, worker_index: int = 0,
                reuse_port: bool = False, serve_metrics_here: bool = True,
                stop: asyncio.Event | None = None) -> int:
    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    tune_allocator()
    server = Server(config, worker_index, reuse_port, serve_metrics_here)
    server.stop_event = stop
    try:
        await server.start()
    except OSError as e:
        log.error("cannot start: %s", e)
        await server.stop()
        return 1
    if on_ready is not None:
        on_ready(server)
    await stop.wait()
    log.info("stopping: no new connections; draining and flushing every accepted record")
    await server.stop()
    return 1 if server.failed else 0


def run(config: Config, worker_index: int | None = None, control_fd: int | None = None) -> int:
    """Run in the foreground until SIGTERM/SIGINT; the exit code (0 after a clean drain).

    With `workers` > 1 this process supervises that many workers; each of them is started
    as ``ogrt server --worker-index I --control-fd FD`` and runs `serve` under
    ogrt/supervisors/workers.py, which is handed `serve` and knows nothing of this module.
    """
    setup_logging(config.server.log_level)
    restrict_umask()  # whatever we were started with: files 0640, directories 0750 at most
    if worker_index is not None:
        return run_worker(serve, config, worker_index, control_fd)
    report_wide_modes(config.server.state_dir,
                      [o.options["path"] for o in config.outputs if o.type in FILE_OUTPUTS])
    if config.server.workers > 1:
        return supervise(config)

    def ready(server: Server) -> None:
        relay = f" relay_port={server.relay_port}" if server.relay_port is not None else ""
        print(f"{READY_LINE} port={server.port}{relay}", file=sys.stderr, flush=True)

    return asyncio.run(serve(config, ready))
