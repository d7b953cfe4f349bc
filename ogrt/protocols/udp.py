"""UDP receiver: a dedicated thread draining the socket in batches.

The thread polls the socket, then reads datagrams without blocking until the kernel
buffer is empty (up to a batch limit), decodes them and hands the batch to the outputs.
This keeps per-datagram cost to a recvfrom() and the decode, with no event-loop
round trip; a large SO_RCVBUF absorbs bursts.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable

from ogrt.allowlist import PeerFilter
from ogrt.config import ServerConfig
from ogrt.fragments import Reassembler
from ogrt.pipeline import Ingest
from ogrt.protocols.tcp import peer_text

__all__ = ["UdpReceiver", "set_rcvbuf"]

log = logging.getLogger("ogrt.udp")

BATCH = 2048
FEW = 64  # a drain that found fewer datagrams than this ...
GATHER = 0.005  # ... is followed by a pause this long (s) before the next poll
ROOM_WAIT = 0.02  # s at most: rides out a writer's hiccup; a writer that stays behind must spill
# SO_RCVBUFFORCE (Linux: 33; not in Python's socket module) lets a privileged daemon
# exceed net.core.rmem_max
SO_RCVBUFFORCE: int | None = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for `size` bytes of receive buffer (SO_RCVBUFFORCE when privileged); return what we got."""
    if size > 0:
        force = SO_RCVBUFFORCE
        try:
            if force is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except (PermissionError, OSError):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            except OSError:
                pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this socket (full receive buffer), from /proc/net/udp*."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == inode:
                        return int(fields[-1])
        except (OSError, StopIteration, ValueError):
            continue
    return None


class UdpReceiver(threading.Thread):
    """Reads the bound UDP socket `sock` in its own thread; sizes and limits from `[server]`."""

    def __init__(self, sock: socket.socket, ingest: Ingest, config: ServerConfig,
                 on_crash: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(name="ogrt-udp", daemon=True)
        self.on_crash = on_crash
        self.sock = sock
        self.ingest = ingest
        self.max_frame_bytes = config.max_frame_bytes
        self._allowed = PeerFilter(config.allowed_networks).allowed
        self.reassembler = Reassembler(
            config.max_frame_bytes, max_bytes=config.fragment_max_bytes, timeout=config.fragment_timeout,
            on_drop=lambda reason, n: ingest.reject(reason, "-", "incomplete fragmented record dropped", n))
        rcvbuf = set_rcvbuf(sock, config.udp_rcvbuf)
        if rcvbuf < config.udp_rcvbuf:
            log.warning("UDP receive buffer is %d bytes, asked for %d (raise net.core.rmem_max)",
                        rcvbuf, config.udp_rcvbuf)
        # while an output queue is full, wait for room (the kernel buffers datagrams; cheaper
        # than a spill) at most as long as 50,000 datagrams/s of ~3 KB each take to fill half of it
        ingest.room_wait = min(ROOM_WAIT, rcvbuf / 300e6)
        self._stop_flag = threading.Event()
        self._peers: dict[str, str] = {}

    def stop(self, timeout: float = 10.0) -> None:
        """Read what is already in the socket buffer, hand it on, then end the thread."""
        self._stop_flag.set()
        self.join(timeout)

    def run(self) -> None:
        sock = self.sock
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        stopping = self._stop_flag.is_set
        try:
            while True:
                if stopping():
                    self.ingest.room_wait = 0.0  # stop() waits for us: spill rather than wait
                    self._drain(final=True)
                    break
                if not poller.poll(200):
                    self.reassembler.expire()
                    continue
                if self._drain(final=False) < FEW:
                    # a trickle: let datagrams gather in the kernel buffer for a moment
                    # instead of waking (poll, recv, flush, hand-over) for each one
                    time.sleep(GATHER)
        except Exception as e:  # never expected: log loudly and stop the process (exit 1)
            log.exception("UDP receiver failed")
            if self.on_crash is not None:
                self.on_crash(e)
        finally:
            self.ingest.flush()

    def _drain(self, final: bool) -> int:
        """Read up to BATCH datagrams (final: until the buffer is empty, bounded), flush;
        return how many were read."""
        recv = self.sock.recvfrom
        ingest = self.ingest
        handle = self._datagram
        total = 0
        for _ in range(256 if final else 1):
            nbytes = 0
            n = 0
            empty = False
            try:
                while n < BATCH:
                    data, addr = recv(65536)  # cheaper than recvfrom_into + a copy out
                    n += 1
                    nbytes += len(data)
                    handle(data, addr[0])
            except (BlockingIOError, InterruptedError):
                empty = True
            except OSError as e:  # e.g. an ICMP-induced error: count it and carry on
                ingest.reject("socket_error", "-", str(e))
            ingest.received(nbytes, n)
            ingest.flush()
            total += n
            if empty:
                break
        return total

    def _datagram(self, data: bytes, host: str) -> None:
        peer = self._peers.get(host)
        if peer is None:
            if len(self._peers) > 65536:
                self._peers.clear()
            peer = self._peers[host] = peer_text(host)
        if not self._allowed(peer):
            self.ingest.reject("not_allowed", peer, "address outside [server] allowed_networks")
            return
        record = self.reassembler.datagram(data, peer,
                                           lambda reason, detail: self.ingest.reject(reason, peer, detail))
        if record is not None:
            self.ingest.frame(*record, peer)
