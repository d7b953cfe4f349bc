"""MUNGE credentials through the Debian `munge` and `unmunge` commands.

Why the commands and not libmunge through ctypes: they are in the same package as munged
(nothing else to install), their interface is stable text, a failing or hanging munged
costs a child process with a timeout and never the daemon, and a credential is made or
checked once per relay connection (long-lived), so a process per call costs nothing that
matters. Both raise MungeError with the reason; neither ever blocks longer than `timeout`.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

__all__ = ["MungeError", "Identity", "encode", "decode", "PAYLOAD"]

#: what a relay's credential carries: a credential made for something else is refused
PAYLOAD = b"ogrt-relay-1"
MAX_CREDENTIAL = 8192  # bytes; a MUNGE credential of a 12-byte payload is ~130


class MungeError(Exception):
    """No credential could be made, or the one given is not valid."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int


def encode(socket_path: str, timeout: float = 5.0) -> bytes:
    """A fresh credential (ASCII) of this process's uid/gid carrying PAYLOAD."""
    try:
        proc = subprocess.run(["munge", "--socket", socket_path, "--string", PAYLOAD.decode()],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MungeError(f"munge: {e}") from None
    if proc.returncode != 0:
        raise MungeError(f"munge: {proc.stderr.decode(errors='replace').strip() or proc.returncode}")
    return proc.stdout.strip()


def decode(credential: bytes, socket_path: str, timeout: float = 5.0) -> Identity:
    """The uid/gid a valid credential was made by; MungeError when it is invalid, expired,
    replayed, made with another key or carries another payload."""
    if not credential or len(credential) > MAX_CREDENTIAL or not credential.isascii():
        raise MungeError("not a MUNGE credential")
    try:
        proc = subprocess.run(["unmunge", "--socket", socket_path, "--numeric", "--keys", "UID,GID",
                               "--metadata", "-", "--output", "-"],
                              input=credential + b"\n", capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MungeError(f"unmunge: {e}") from None
    if proc.returncode != 0:
        raise MungeError(proc.stderr.decode(errors="replace").strip().removeprefix("unmunge: Error: ")
                         or f"unmunge exit status {proc.returncode}")
    head, _, payload = proc.stdout.partition(b"\n\n")
    meta = {}
    for line in head.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip()
    try:
        identity = Identity(int(meta["UID"]), int(meta["GID"]))
    except (KeyError, ValueError):
        raise MungeError(f"unmunge printed no uid/gid: {proc.stdout[:200]!r}") from None
    if payload != PAYLOAD:
        raise MungeError("the credential was not made by an OGRT relay (payload differs)")
    return identity
