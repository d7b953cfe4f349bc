"""`json_tcp` output: newline-delimited JSON (one record per line) to host:port over TCP.

For Logstash (tcp input, json_lines codec), Fluent Bit (tcp input), Vector (socket
source), Splunk (TCP input). One sendall() per batch. When the peer is unreachable the
batch fails (OutputError): the runner spools it and retries with exponential back-off
up to `reconnect_max_seconds`, replaying the spool in order when the peer is back.

Delivery: TCP gives no application-level acknowledgement. Before each batch the output
checks whether the peer closed the connection (and reconnects if so), so a peer that
restarts between batches loses nothing; a peer that dies while a batch is in flight may
lose that batch or, if sending timed out half-way, receive part of it twice.
"""
from __future__ import annotations

import select
import socket
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
        self.sock: socket.socket | None = None
        self.connects = 0

    @classmethod
    def validate(cls, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        return opt.check(name, options, {
            "host": opt.Key((str,), check=opt.non_empty),
            "port": opt.Key((int,), check=opt.port),
            "connect_timeout": opt.Key((int, float), 5.0, opt.positive),
            "send_timeout": opt.Key((int, float), 30.0, opt.positive),
        })

    def open(self) -> None:
        self._close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise OutputError(f"json_tcp {self.host}:{self.port}: cannot connect: {e}") from e
        sock.settimeout(self.send_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.sock = sock
        self.connects += 1

    def _close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _peer_closed(self) -> bool:
        """True when the peer has closed (or reset) the connection; input is discarded."""
        assert self.sock is not None
        try:
            while select.select([self.sock], [], [], 0)[0]:
                if not self.sock.recv(65536, socket.MSG_DONTWAIT):
                    return True
        except (BlockingIOError, InterruptedError):
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
