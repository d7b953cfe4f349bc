"""The relay's Unix datagram socket: datagrams with the kernel's sender credentials.

Each datagram is one frame, exactly what the library's UDP transport sends (ProcessStart,
ProcessEnd, or a Fragment of one). SO_PASSCRED makes the kernel attach the sender's pid, uid
and gid (SCM_CREDENTIALS) to each datagram; they cannot be forged by an unprivileged sender.
`Corrector` puts them into the record: a record whose claim differs is kept with the kernel's
values (its `user` hint dropped) and counted. Fragments are joined per sender credentials
(pid, uid, gid), so no process can add pieces to another's record. Job records (JobStart,
JobEnd) are taken only from root. Every bad datagram is counted by reason and dropped.
"""
from __future__ import annotations

import logging
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ogrt.fragments import Reassembler
from ogrt.framing import encode_frame
from ogrt.metrics import Counters, sample
from ogrt.proto import ogrt_pb2
from ogrt.proto.ogrt_pb2 import JOB_END, JOB_START, PROCESS_END, PROCESS_START
from ogrt.ratelimit import RateLimitedLog

__all__ = ["Credentials", "Corrector", "DatagramSocket", "bind_datagram_socket", "drain_pause", "RECV_BUFFER"]

log = logging.getLogger("ogrt.relay")

BATCH_OVERHEAD = 16  # a batch frame's header and id: a batch of one record stays within max_frame_bytes
RECV_BUFFER = 1 << 18  # bytes: the largest datagram taken (bigger ones are cut: rejected)
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid, uid_t uid, gid_t gid
Credentials = tuple[int, int, int]  # pid, uid, gid
DEFAULT_QLEN = 10  # Linux's net.unix.max_dgram_qlen
# The reader drains the socket on a timer when its queue is deep enough: after reading what
# waits it sleeps, away from the socket, so a sender's sendto finds nobody to wake (a wake-up
# per datagram costs the sender and, on a busy node, the CPU a program would run on). The
# pause is at most DRAIN_PAUSE_MAX and lets at most a quarter of the queue fill at
# PEAK_DATAGRAM_RATE; a shallow queue (the host's 10) is read at each datagram instead.
DRAIN_PAUSE_MAX = 0.005  # s
DRAIN_PAUSE_MIN = 0.0005  # s: a shorter pause is not worth a timer
PEAK_DATAGRAM_RATE = 100_000  # datagrams/s on one node (two per process: 50,000 spawns/s)


def drain_pause(queue_length: int) -> float:
    """Seconds the reader sleeps after a drain, for a socket that queues queue_length
    datagrams (0.0: it waits on the socket, woken by each datagram)."""
    pause = min(DRAIN_PAUSE_MAX, queue_length / 4 / PEAK_DATAGRAM_RATE)
    return pause if pause >= DRAIN_PAUSE_MIN else 0.0


def bind_datagram_socket(path: str, rcvbuf: int, queue_length: int = 0) -> tuple[socket.socket, int]:
    """A new AF_UNIX datagram socket at `path` (a stale socket file there is replaced),
    mode 0666 (every local user sends), SO_PASSCRED on, non-blocking; and how many
    datagrams it queues.

    queue_length > 0: the socket may queue that many datagrams. The kernel takes a datagram
    socket's queue length from net.unix.max_dgram_qlen of the network namespace the socket
    is made in (Linux's default: 10); with CAP_SYS_ADMIN the socket is made in a private,
    empty network namespace set to queue_length (a path-named Unix socket is reached from
    every namespace; the host's setting is left alone). Without it the host's value stands.
    """
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock, queued = _new_socket(queue_length)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if rcvbuf > 0:
            from ogrt.protocols.udp import set_rcvbuf
            set_rcvbuf(sock, rcvbuf)
        old = os.umask(0o111)  # the socket file is created 0666, with no window of another mode
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o666)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, queued


QLEN = "/proc/sys/net/unix/max_dgram_qlen"


def queue_length_now() -> int | None:
    """net.unix.max_dgram_qlen of this network namespace."""
    try:
        with open(QLEN) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _new_socket(queue_length: int) -> tuple[socket.socket, int]:
    current = queue_length_now()
    if queue_length <= 0 or (current is not None and current >= queue_length):
        return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), current or DEFAULT_QLEN
    made: list[socket.socket] = []
    why: list[str] = []

    def in_private_namespace() -> None:  # unshare() moves only this thread
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
            why.append(os.strerror(ctypes.get_errno()))
            return
        try:
            with open(QLEN, "w") as f:
                f.write(str(queue_length))
        except OSError as e:
            why.append(str(e))
        made.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))

    t = threading.Thread(target=in_private_namespace, name="relay-socket-namespace")
    t.start()
    t.join()
    if why:
        log.warning("cannot give the relay socket a queue of %d datagrams (%s): it queues %s; bursts "
                    "beyond take the libraries' direct transport (raise net.unix.max_dgram_qlen)",
                    queue_length, why[0], current)
    if made:
        return made[0], queue_length
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), current or DEFAULT_QLEN


class Corrector:
    """(type, payload, credentials) → a record frame carrying the kernel's identity, or None."""

    def __init__(self, counters: Counters, ratelog: RateLimitedLog) -> None:
        self.counters = counters
        self.ratelog = ratelog
        self.k_corrected = "ogrt_relay_identity_corrected_total"
        self._k_reject: dict[str, str] = {}

    def reject(self, reason: str, cred: Credentials, detail: str) -> None:
        key = self._k_reject.get(reason)
        if key is None:
            key = self._k_reject[reason] = sample("ogrt_rejected_total", reason=reason)
        self.counters.inc(key)
        self.ratelog.warning(reason, "rejected (%s) from pid %d uid %d: %s", reason, cred[0], cred[1], detail)

    def correct(self, mtype: int, payload: bytes, cred: Credentials) -> bytes | None:
        pid, uid, gid = cred
        msg: Any
        if mtype == PROCESS_START:
            msg = ogrt_pb2.ProcessStart()
        elif mtype == PROCESS_END:
            msg = ogrt_pb2.ProcessEnd()
        elif mtype in (JOB_START, JOB_END):
            if uid != 0:
                self.reject("job_not_root", cred, "job records are taken from root only")
                return None
            return encode_frame(mtype, payload)
        else:
            self.reject("unknown_type", cred, f"message type {mtype}")
            return None
        try:
            msg.ParseFromString(payload)
        except Exception as e:
            self.reject("bad_payload", cred, f"type {mtype} payload does not parse: {e}")
            return None
        if len(msg.uuid) != 16:
            self.reject("bad_uuid", cred, f"uuid of {len(msg.uuid)} bytes")
            return None
        same = msg.pid == pid and msg.uid == uid and (mtype == PROCESS_END or msg.gid == gid)
        if same:
            return encode_frame(mtype, payload)
        self.counters.inc(self.k_corrected)
        self.ratelog.warning("identity", "record of pid %d uid %d claimed pid %d uid %d: stored with the "
                             "kernel's values", pid, uid, msg.pid, msg.uid)
        if msg.uid != uid and mtype == PROCESS_START:
            msg.user = b""  # the hint named the claimed user
        msg.pid, msg.uid = pid, uid
        if mtype == PROCESS_START:
            msg.gid = gid
        return encode_frame(mtype, msg.SerializeToString())


class DatagramSocket:
    """Reads the socket in its own thread (`run()` until `stop()`), so that nothing the event
    loop does (a spool's fsync) delays it: a Unix datagram socket queues only
    net.unix.max_dgram_qlen datagrams (Linux's default: 10) and a sender that finds the queue
    full takes its direct transport. Each good record frame goes to `emit` (in this thread).
    queue_length: what the socket queues; it sets the drain policy (drain_pause).
    """

    def __init__(self, sock: socket.socket, emit: Callable[[bytes], None], counters: Counters,
                 max_frame_bytes: int, fragment_timeout: float, fragment_max_bytes: int,
                 queue_length: int = DEFAULT_QLEN) -> None:
        self.sock = sock
        self.pause = drain_pause(queue_length)
        self.emit = emit
        self.counters = counters
        self.ratelog = RateLimitedLog(logging.getLogger("ogrt.relay.input"))
        self.corrector = Corrector(counters, self.ratelog)
        self.max_frame_bytes = max_frame_bytes
        self.reassembler = Reassembler(max_frame_bytes, fragment_max_bytes, timeout=fragment_timeout,
                                       on_drop=self._fragment_dropped)
        self._buf = bytearray(RECV_BUFFER)
        self._cmsg = socket.CMSG_SPACE(_UCRED.size)
        self._k_reject: dict[str, str] = {}
        self._stopping = False

    def run(self) -> None:
        """Until stop(): wait for the socket, read whatever waits, then sleep `pause` (datagrams
        arriving meanwhile queue without waking this thread)."""
        import select

        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        while not self._stopping:
            if poller.poll(200):
                self.read_all()
                if self.pause:
                    time.sleep(self.pause)
            self.reassembler.expire()

    def stop(self) -> None:
        self._stopping = True

    def _fragment_dropped(self, reason: str, n: int) -> None:
        self.counters.inc(sample("ogrt_rejected_total", reason=reason), n)

    def read_all(self, limit: int = 4096) -> int:
        """Read up to `limit` datagrams without blocking; how many were read."""
        sock, buf, view = self.sock, self._buf, memoryview(self._buf)
        n = 0
        while n < limit:
            try:
                size, anc, flags, _ = sock.recvmsg_into([view], self._cmsg)
            except (BlockingIOError, InterruptedError):
                break
            n += 1
            cred: Credentials = (0, 0xFFFFFFFF, 0xFFFFFFFF)
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
                    cred = _UCRED.unpack_from(data)
            if cred[1] == 0xFFFFFFFF:
                self.corrector.reject("no_credentials", cred, "datagram without SCM_CREDENTIALS")
                continue
            if flags & socket.MSG_TRUNC:
                self.corrector.reject("too_large", cred, f"datagram larger than {len(buf)} bytes")
                continue
            self.datagram(bytes(buf[:size]), cred)
        if n:
            self.counters.inc("ogrt_relay_datagrams_total", n)
        return n

    def datagram(self, data: bytes, cred: Credentials) -> None:
        record = self.reassembler.datagram(data, "%d/%d/%d" % cred,
                                           lambda reason, detail: self.corrector.reject(reason, cred, detail))
        if record is None:
            return
        mtype, payload = record
        frame = self.corrector.correct(mtype, payload, cred)
        if frame is not None and len(frame) > self.max_frame_bytes - BATCH_OVERHEAD:
            self.corrector.reject("too_large", cred, f"record of {len(frame)} bytes does not fit a batch "
                                  f"of max_frame_bytes={self.max_frame_bytes}")
            return
        if frame is not None:
            self.counters.inc("ogrt_relay_records_total")
            self.emit(frame)
