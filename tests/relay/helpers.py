"""Senders and configs for the relay tests.

Senders are separate processes (plain /usr/bin/python3.11 -I, standard library only, so any
uid can run them) that send datagrams to the relay's socket exactly as the library's UDP
transport does: one frame per datagram.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fixtures.server import READY_LINE, ServerHandle, end_msg, frame, start_msg

__all__ = ["PYTHON", "relay_server", "restart_server", "send", "fork_senders", "start_senders", "pairs", "NOBODY",
           "spawn_programs"]

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


# stdin: JSON {"env": {...}, "argv": [...], "n": N}. posix_spawns argv N times (8 at a time)
# with env (the spawner itself runs without the library); prints the pids and the exit codes.
_SPAWN = r"""
import json, os, sys
job = json.load(sys.stdin)
running, pids, codes = [], [], []
for _ in range(job["n"]):
    running.append(os.posix_spawn(job["argv"][0], job["argv"], job["env"]))
    pids.append(running[-1])
    if len(running) >= 8:
        _, st = os.waitpid(running.pop(0), 0)
        codes.append(os.waitstatus_to_exitcode(st))
for p in running:
    _, st = os.waitpid(p, 0)
    codes.append(os.waitstatus_to_exitcode(st))
print(json.dumps({"pids": pids, "codes": codes}))
"""


def spawn_programs(env: dict[str, str], n: int, argv: list[str]) -> tuple[list[int], list[int]]:
    """Run argv n times under `env` (LD_PRELOAD of the library); (their pids, exit codes)."""
    import json

    clean = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("OGRT_")}
    out = subprocess.run([PYTHON, "-I", "-S", "-c", _SPAWN], input=json.dumps({"env": env, "argv": argv, "n": n}),
                         capture_output=True, text=True, timeout=600, env=clean, check=True)
    res = json.loads(out.stdout)
    return res["pids"], res["codes"]


def relay_server(ogrt_server: Any, munge_socket: str, server: str = "", outputs: str = "",
                 relay_port: int = 0) -> ServerHandle:
    """A collector with a relay listener (`relay_port`, 0: ephemeral) asking `munge_socket`."""
    toml = f'[server]\nrelay_port = {relay_port}\nmunge_socket = "{munge_socket}"\n{server}\n'
    return ogrt_server(toml, extra_outputs=outputs)


def restart_server(old: ServerHandle, timeout: float = 30.0) -> ServerHandle:
    """A new `ogrt server` with the config of a stopped one (same ports, outputs, state)."""
    err_path = old.stderr_path.with_name(old.stderr_path.name + ".again")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ogrt", "server", "--config", str(old.config_path)],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
    handle = ServerHandle(proc, old.port, old.metrics_port, old.state_dir, old.config_path, old.jsonl_path,
                          err_path)
    deadline = time.monotonic() + timeout
    while READY_LINE not in handle.stderr_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            handle.kill()
            raise RuntimeError("ogrt server did not start again:\n" + handle.stderr_text()[-4000:])
        time.sleep(0.05)
    return handle


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


def start_senders(socket_path: str, procs: list[tuple[bytes, bytes, str]], workdir: Path) -> subprocess.Popen[str]:
    """One forked process per pair sends its start and end datagram (in the background)."""
    f = workdir / f"pairs-{time.monotonic_ns()}.txt"
    f.write_text("".join(f"{s.hex()} {e.hex()}\n" for s, e, _ in procs))
    return subprocess.Popen([PYTHON, "-I", "-S", "-c", _FORK, socket_path, str(f)], stdout=subprocess.PIPE,
                            text=True)


def fork_senders(socket_path: str, procs: list[tuple[bytes, bytes, str]], workdir: Path) -> str:
    """start_senders() and wait: the forker's last line ("done 0": every send succeeded)."""
    proc = start_senders(socket_path, procs, workdir)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    return out.strip().splitlines()[-1]
