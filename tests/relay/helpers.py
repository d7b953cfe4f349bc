"""Senders and configs for the relay tests.

Senders are separate processes (plain /usr/bin/python3.11 -I, standard library only, so any
uid can run them) that send datagrams to the relay's socket exactly as the library's UDP
transport does: one frame per datagram.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.fixtures.server import ServerHandle, frame, start_msg, end_msg

__all__ = ["PYTHON", "relay_server", "send", "fork_senders", "pairs", "NOBODY"]

PYTHON = "/usr/bin/python3.11"
NOBODY = 65534

# stdin: hex frames, one per line; argv[1]: the socket. Prints the sender's pid.
_SEND = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for line in sys.stdin:
    s.sendto(bytes.fromhex(line.strip()), sys.argv[1])
print(os.getpid())
"""

# argv[1]: the socket, argv[2]: a file of hex frame pairs (one process per line: "START END").
# Forks one child per line; each sends its two frames from its own pid and exits. Prints the
# number of children whose sends failed (0 expected), then exits 0.
_FORK = r"""
import os, socket, sys
lines = open(sys.argv[2]).read().split("\n")
kids = []
for line in lines:
    if not line:
        continue
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            for h in line.split():
                s.sendto(bytes.fromhex(h), sys.argv[1])
        except OSError:
            code = 1
        os._exit(code)
    kids.append(pid)
bad = 0
for p in kids:
    _, st = os.waitpid(p, 0)
    bad += os.waitstatus_to_exitcode(st) != 0
print("done", bad)
"""


def relay_server(ogrt_server: Any, munge_socket: str, server: str = "", outputs: str = "") -> ServerHandle:
    """A collector with a relay listener (ephemeral port) asking `munge_socket`."""
    toml = f'[server]\nrelay_port = 0\nmunge_socket = "{munge_socket}"\n{server}\n'
    return ogrt_server(toml, extra_outputs=outputs)


def send(socket_path: str, frames: list[bytes], user: int | None = None) -> int:
    """Send each frame as one datagram from a new process (as `user`); its pid."""
    out = subprocess.run([PYTHON, "-I", "-S", "-c", _SEND, socket_path], input="".join(f.hex() + "\n" for f in frames),
                         capture_output=True, text=True, timeout=60, user=user, group=user, extra_groups=[]
                         if user is not None else None, check=True)
    return int(out.stdout.split()[-1])


def pairs(n: int, **fields: Any) -> list[tuple[bytes, bytes, str]]:
    """n processes' (start frame, end frame, uuid text)."""
    import uuid as uuidlib

    out = []
    for _ in range(n):
        u = uuidlib.uuid4()
        out.append((frame(12, start_msg(uuid=u.bytes, **fields)), frame(13, end_msg(uuid=u.bytes)), str(u)))
    return out


def fork_senders(socket_path: str, procs: list[tuple[bytes, bytes, str]], workdir: Path) -> str:
    """One forked process per pair sends its start and end datagram; the forker's last line."""
    f = workdir / f"pairs-{os.getpid()}-{len(procs)}.txt"
    f.write_text("".join(f"{s.hex()} {e.hex()}\n" for s, e, _ in procs))
    out = subprocess.run([PYTHON, "-I", "-S", "-c", _FORK, socket_path, str(f)], capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]
