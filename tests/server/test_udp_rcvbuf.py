"""The UDP socket really gets the receive buffer it asks for (Python has no
socket.SO_RCVBUFFORCE: without the Linux value a privileged daemon got only rmem_max)."""
from __future__ import annotations

import os
import socket

from ogrt.protocols.udp import set_rcvbuf


def test_rcvbuf_is_what_was_asked_for():
    want = 24 << 20
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = set_rcvbuf(s, want)
    # the kernel reports twice the size set (bookkeeping overhead)
    if os.geteuid() == 0:
        assert got >= 2 * want
    else:
        assert got >= 2 * min(want, rmem_max)
