"""`json_tcp` output: newline-delimited JSON (one record per line) to host:port over TCP.

For Logstash (tcp input, json_lines codec), Fluent Bit (tcp input), Vector (socket
source), Splunk (TCP input). One sendall() per batch. When the peer is unreachable the
batch fails (OutputError): the runner spools it and retries with exponential back-off
up to `reconnect_max_seconds`, replaying the spool in order when the peer is back.

Delivery: TCP gives no application-level acknowledgement. Before each batch the output
checks whether the peer closed the connection (and reconnects if so), so a peer that
restarts between batches loses nothing; a peer that dies while a batch is in flight may
lose that batch or, if sending timed out half-way, receive part of it twice.

TLS (`tls = true`): the peer's certificate must chain to `ca_file` (default: the system's
CAs) and name `server_name` (default: `host`); `cert_file`/`key_file` present a client
certificate. A handshake that fails (unknown CA, another name) fails the batch like an
unreachable peer: nothing is sent in clear text, the records stay in the spool. With
TLS 1.3 a server refuses a client certificate only after the handshake: the output waits
for that answer (up to 1 s per connection) before it sends.
"""
from __future__ import annotations

import os
import select
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from ogrt.outputs import options as opt
from ogrt.outputs.base import Output, OutputError
from ogrt.outputs.jsonl import json_lines


class JsonTcpOutput(Output):
    type_name = "json_tcp"

    def __init__(self, name: str, options: Mapping[str, Any], worker_index: int = 0) -> None:
        super().__init__(name, options, worker_index)
        self.host: str = self.options["host"]
        self.port: int = self.options["port"]
        self.connect_timeout: float = self.options["connect_timeout"]
        self.send_timeout: float = self.options["send_timeout"]
        self.tls: ssl.SSLContext | None = None  # made by open() when `tls = true`
        self.server_name: str = self.options["server_name"] or self.host
        self.sock: socket.socket | None = None
        self.connects = 0

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        out = opt.check(name, options, {
            "host": opt.Key((str,), check=opt.non_empty),
            "port": opt.Key((int,), check=opt.port),
            "connect_timeout": opt.Key((int, float), 5.0, opt.positive),
            "send_timeout": opt.Key((int, float), 30.0, opt.positive),
            "tls": opt.Key((bool,), False),
            "ca_file": opt.Key((str,), "", _readable),
            "cert_file": opt.Key((str,), "", _readable),
            "key_file": opt.Key((str,), "", _readable),
            "server_name": opt.Key((str,), ""),
        })
        tls_keys = [k for k in ("ca_file", "cert_file", "key_file", "server_name") if out[k]]
        if tls_keys and not out["tls"]:
            raise opt.ConfigError(f"outputs.{name}.{tls_keys[0]}", "needs tls = true")
        if out["key_file"] and not out["cert_file"]:
            raise opt.ConfigError(f"outputs.{name}.key_file", "needs cert_file (the client certificate)")
        if out["tls"]:
            try:
                tls_context(out)
            except (ssl.SSLError, OSError) as e:
                raise opt.ConfigError(f"outputs.{name}", f"cannot load the TLS files: {e}") from None
        return out

    def open(self) -> None:
        self._close()
        if self.options["tls"] and self.tls is None:
            try:
                self.tls = tls_context(self.options)
            except (ssl.SSLError, OSError) as e:
                raise OutputError(f"json_tcp {self.host}:{self.port}: cannot load the TLS files: {e}") from e
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise OutputError(f"json_tcp {self.host}:{self.port}: cannot connect: {e}") from e
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self.tls is not None:
            try:  # the handshake, under connect_timeout; raises on a bad certificate
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)
                self._accepted(sock)
            except (ssl.SSLError, OSError) as e:
                sock.close()
                raise OutputError(f"json_tcp {self.host}:{self.port}: TLS refused: {e}") from e
        sock.settimeout(self.send_timeout)
        self.sock = sock
        self.connects += 1

    def _accepted(self, sock: ssl.SSLSocket) -> None:
        """TLS 1.3: the server checks the client certificate after the client's handshake
        ended, and says no with an alert; a batch sent before it would be lost. Wait (up to
        1 s, or connect_timeout) for that alert or the session tickets an accepting server
        sends; raises ssl.SSLError when refused."""
        if sock.version() != "TLSv1.3" or not select.select([sock], [], [], min(1.0, self.connect_timeout))[0]:
            return
        sock.setblocking(False)
        try:
            if sock.recv(65536) == b"":
                raise ConnectionResetError("the peer closed the connection after the handshake")
        except ssl.SSLWantReadError:  # tickets only: accepted
            pass
        finally:
            sock.settimeout(self.connect_timeout)

    def _close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _peer_closed(self) -> bool:
        """True when the peer has closed (or reset) the connection; input is discarded."""
        sock = self.sock
        assert sock is not None
        tls = isinstance(sock, ssl.SSLSocket)
        try:
            while select.select([sock], [], [], 0)[0]:
                if tls:  # an SSL socket takes no recv flags: non-blocking for this read
                    sock.setblocking(False)
                    try:
                        data = sock.recv(65536)
                    finally:
                        sock.settimeout(self.send_timeout)
                else:
                    data = sock.recv(65536, socket.MSG_DONTWAIT)
                if not data:
                    return True
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:
            return True
        return False

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        data = json_lines(records)
        if self.sock is None or self._peer_closed():
            self.open()
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as e:
            self._close()
            raise OutputError(f"json_tcp {self.host}:{self.port}: send failed: {e}") from e

    def close(self) -> None:
        self._close()


def _readable(path: str) -> str | None:
    return None if not path or os.access(path, os.R_OK) else "cannot read this file"


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """Certificate and host name checked (TLS 1.2 or later), against `ca_file` or the
    system's CAs; with `cert_file`/`key_file` as the client certificate."""
    ctx = ssl.create_default_context(cafile=options["ca_file"] or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if options["cert_file"]:
        ctx.load_cert_chain(options["cert_file"], options["key_file"] or None)
    return ctx
