"""`workers = N`: N worker processes, each the whole pipeline, sharing the port (SO_REUSEPORT).

The supervisor (the process started as `ogrt server`) binds nothing but the metrics port.
It starts each worker as `python -m ogrt server --worker-index I --control-fd FD` with one
end of a Unix socket pair. Over it the worker says ``ready`` once bound and answers each
``stats`` line with its samples as one JSON line; /metrics is the sum over workers.
A worker that dies is restarted (back-off 1 s); SIGTERM/SIGINT are passed on to every
worker, which drain and flush; the supervisor exits 0 when all of them exited 0.
With SO_REUSEPORT the kernel spreads TCP connections and UDP flows (by address and port)
over the workers, so UDP fragments of one record from one socket reach the same worker.
The worker is handed the function that serves (`ogrt.server.serve`); this module does not
import the server.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from ogrt.config import Config
from ogrt.lifecycle import READY_LINE, install_stop_signals
from ogrt.metrics import merge, serve_metrics

__all__ = ["supervise", "run_worker"]

log = logging.getLogger("ogrt.supervisor")


# -- worker side ------------------------------------------------------------------------------
class Served(Protocol):
    """What a worker reports over the control socket."""

    port: int

    async def collect(self) -> dict[str, float]: ...


#: `serve(config, on_ready, worker_index=, reuse_port=, serve_metrics_here=, stop=)` → exit code
Serve = Callable[..., Awaitable[int]]


async def _worker_main(serve: Serve, config: Config, index: int, control_fd: int | None) -> int:
    stop = asyncio.Event()
    control: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    if control_fd is not None:
        sock = socket.socket(fileno=control_fd)
        control = await asyncio.open_unix_connection(sock=sock)
    tasks: list[asyncio.Task[Any]] = []

    async def answer(server: Served) -> None:
        assert control is not None
        reader, writer = control
        writer.write(f"ready {server.port}\n".encode())
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:  # the supervisor is gone: stop cleanly
                log.warning("worker %d: supervisor went away; stopping", index)
                stop.set()
                return
            if line.strip() == b"stats":
                writer.write(json.dumps(await server.collect()).encode() + b"\n")
                await writer.drain()

    def ready(server: Served) -> None:
        if control is not None:
            tasks.append(asyncio.create_task(answer(server)))

    code = await serve(config, ready, worker_index=index, reuse_port=True, serve_metrics_here=False, stop=stop)
    for t in tasks:
        t.cancel()
    return code


def run_worker(serve: Serve, config: Config, index: int, control_fd: int | None) -> int:
    """Run `serve` as worker `index`, answering the supervisor on `control_fd`."""
    return asyncio.run(_worker_main(serve, config, index, control_fd))


# -- supervisor side --------------------------------------------------------------------------
class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self.ready = asyncio.Event()


class Supervisor:
    def __init__(self, config: Config, port: int) -> None:
        self.config = config
        self.port = port
        self.workers = [_Worker(i) for i in range(config.server.workers)]
        self.stopping = False

    async def _spawn(self, w: _Worker) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [sys.executable, "-m", "ogrt", "server", "--worker-index", str(w.index),
               "--control-fd", str(child_sock.fileno()), "--port", str(self.port)]
        if self.config.path is not None:
            cmd += ["--config", str(self.config.path)]
        w.ready.clear()
        try:
            w.proc = await asyncio.create_subprocess_exec(*cmd, pass_fds=(child_sock.fileno(),),
                                                          stdin=asyncio.subprocess.DEVNULL)
        finally:
            child_sock.close()
        w.reader, w.writer = await asyncio.open_unix_connection(sock=parent_sock)
        try:
            line = await asyncio.wait_for(w.reader.readline(), timeout=120)
        except asyncio.TimeoutError:
            log.error("worker %d did not get ready in 120 s", w.index)
            line = b""
        if line.startswith(b"ready"):
            w.ready.set()

    async def _watch(self, w: _Worker) -> None:
        """Keep worker `w` running until the supervisor stops."""
        while True:
            assert w.proc is not None
            code = await w.proc.wait()
            w.ready.clear()
            if w.writer is not None:
                w.writer.close()
            if self.stopping:
                return
            log.error("worker %d exited with %s; restarting it in 1 s", w.index, code)
            await asyncio.sleep(1.0)
            if self.stopping:
                return
            await self._spawn(w)

    async def _stats(self, w: _Worker) -> dict[str, float]:
        if not w.ready.is_set() or w.reader is None or w.writer is None:
            return {}
        async with w.lock:
            try:
                w.writer.write(b"stats\n")
                await w.writer.drain()
                line = await asyncio.wait_for(w.reader.readline(), timeout=5.0)
                return json.loads(line) if line else {}
            except (OSError, asyncio.TimeoutError, ValueError):
                return {}

    async def collect(self) -> dict[str, float]:
        snaps = await asyncio.gather(*(self._stats(w) for w in self.workers))
        out = merge(snaps)
        out["ogrt_workers"] = sum(1 for w in self.workers
                                  if w.ready.is_set() and w.proc is not None and w.proc.returncode is None)
        return out

    async def run(self) -> int:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        failed = [w.index for w in self.workers if not w.ready.is_set()]
        if failed:
            log.error("workers %s did not start", failed)
            self.stopping = True
            await self._stop_all()
            return 1
        watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]
        metrics_server = None
        if self.config.metrics.address is not None:
            host, mport = self.config.metrics.address
            metrics_server = await serve_metrics(host, mport, self.collect)
        print(f"{READY_LINE} port={self.port} workers={len(self.workers)}", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("stopping %d workers", len(self.workers))
        self.stopping = True
        codes = await self._stop_all()
        for t in watchers:
            t.cancel()
        if metrics_server is not None:
            metrics_server.close()
        return 0 if all(c == 0 for c in codes) else 1

    async def _stop_all(self) -> list[int]:
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                w.proc.send_signal(signal.SIGTERM)
        timeout = self.config.server.shutdown_timeout + 10
        codes = []
        for w in self.workers:
            if w.proc is None:
                codes.append(1)
                continue
            try:
                codes.append(await asyncio.wait_for(w.proc.wait(), timeout))
            except asyncio.TimeoutError:
                log.error("worker %d did not stop in %.0f s; killing it", w.index, timeout)
                w.proc.kill()
                codes.append(await w.proc.wait())
        return codes


def _pick_port(config: Config) -> int:
    """The configured port; for port 0 one free port that every worker then shares."""
    if config.server.port:
        return config.server.port
    family = socket.AF_INET6 if ":" in config.server.address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((config.server.address, 0))
        return s.getsockname()[1]


def supervise(config: Config) -> int:
    port = _pick_port(config)
    config = replace(config, server=replace(config.server, port=port))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(Supervisor(config, port).run())
