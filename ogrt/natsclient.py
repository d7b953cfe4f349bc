"""What the `nats` output and the `ogrt sink` source share: connection keys, checks, connect().

Keys (declared once here, checked by ogrt/keys.py's checker in both tables):
``servers`` (list of ``nats://host:port`` or ``tls://host:port``), ``stream``, ``user``/``password``
or ``creds`` (a NATS credentials file; needs the `nkeys` package), ``tls_ca``/``tls_cert``/``tls_key``
(PEM files; any of them turns TLS on), ``connect_timeout``.

`connect()` returns a nats-py client that reconnects for ever on its own (every server in the
list, then again), after a first connection bounded by ``connect_timeout``.
`LoopThread` runs an asyncio loop in a thread, for callers that are threads themselves
(the output runner's writer): ``loop.run(coro, timeout)`` waits at most `timeout` seconds.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Awaitable, Coroutine, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ogrt.errors import ConfigError
from ogrt.keys import Key, non_empty, positive
from ogrt.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    import ssl

    from nats.aio.client import Client

__all__ = ["KEYS", "check_url", "check_replicas", "connect", "LoopThread", "msg_id"]

log = logging.getLogger("ogrt.nats")
T = TypeVar("T")

SCHEMES = ("nats", "tls")


def check_url(url: str) -> str | None:
    """Why `url` is not a NATS server URL, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{url!r} is not a URL"
    if parts.scheme not in SCHEMES or not parts.hostname or port is None:
        return f"{url!r} is not a NATS server URL (nats://host:4222 or tls://host:4222)"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{url!r} has a path, query or fragment; a NATS server URL has none"
    return None


def _servers(value: list[Any]) -> str | None:
    if not value:
        return "must list at least one server (nats://host:4222)"
    for url in value:
        if not isinstance(url, str):
            return f"must be a list of strings, got {url!r}"
        why = check_url(url)
        if why:
            return why
    if len(set(value)) != len(value):
        return "lists a server twice"
    return None


def _subject_token(value: str) -> str | None:
    bad = set(" \t\r\n.*>") & set(value)
    return None if value and not bad else "must be a non-empty name without spaces, '.', '*' or '>'"


#: connection keys of both the nats output and the sink's [source]
KEYS: dict[str, Key] = {
    "servers": Key((list,), check=_servers),
    "stream": Key((str,), "OGRT", _subject_token),
    "user": Key((str,), ""),
    "password": Key((str,), ""),
    "creds": Key((str,), ""),
    "tls_ca": Key((str,), ""),
    "tls_cert": Key((str,), ""),
    "tls_key": Key((str,), ""),
    "connect_timeout": Key((int, float), 5.0, positive),
}
NAME_KEY = Key((str,), check=non_empty)


def check_replicas(where: str, options: Mapping[str, Any]) -> None:
    """`replicas` cannot exceed the servers listed (JetStream places each replica on its own server)."""
    replicas, servers = options["replicas"], options["servers"]
    if replicas > len(servers):
        raise ConfigError(f"{where}.replicas",
                          f"{replicas} replicas need at least {replicas} servers in `servers` "
                          f"(one per replica), {len(servers)} listed")


def check_auth(where: str, options: Mapping[str, Any]) -> None:
    if options["creds"] and (options["user"] or options["password"]):
        raise ConfigError(f"{where}.creds", "give either `creds` or `user`/`password`, not both")
    if bool(options["tls_cert"]) != bool(options["tls_key"]):
        raise ConfigError(f"{where}.tls_key", "`tls_cert` and `tls_key` go together")
    if options["creds"]:
        if importlib.util.find_spec("nkeys") is None:
            raise ConfigError(f"{where}.creds", "a credentials file needs the Python package "
                                                "`nkeys` (pip install nkeys)")


def msg_id(record: Mapping[str, Any]) -> str:
    """The JetStream message id of a record: the stream drops a republish with the same id."""
    return f"{record['id']}.{record['event']}"


def _tls(options: Mapping[str, Any]) -> ssl.SSLContext | None:
    import ssl

    if not (options["tls_ca"] or options["tls_cert"]
            or any(u.startswith("tls://") for u in options["servers"])):
        return None
    ctx = ssl.create_default_context(cafile=options["tls_ca"] or None)
    if options["tls_cert"]:
        ctx.load_cert_chain(options["tls_cert"], options["tls_key"])
    return ctx


async def connect(options: Mapping[str, Any], name: str) -> Client:
    """A connected client (OSError/TimeoutError after `connect_timeout` when no server answers)."""
    import nats

    ratelog = RateLimitedLog(log, interval=10.0, burst=1)
    client = nats.NATS()

    async def on_error(e: Exception) -> None:
        ratelog.log(logging.WARNING, "nats error", "%s: NATS: %s", name, e or type(e).__name__)

    async def on_disconnect() -> None:
        if not client.is_closed:  # not our own close()
            ratelog.log(logging.WARNING, "nats disconnect", "%s: disconnected from NATS; reconnecting",
                        name)

    async def on_reconnect() -> None:
        log.info("%s: reconnected to NATS", name)

    kwargs: dict[str, Any] = dict(
        servers=list(options["servers"]), name=name, connect_timeout=options["connect_timeout"],
        allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
        error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
        tls=_tls(options))
    if options["user"]:
        kwargs.update(user=options["user"], password=options["password"])
    if options["creds"]:
        kwargs["user_credentials"] = options["creds"]
    # with max_reconnect_attempts=-1 a first connect to a dead cluster would retry for ever
    task = asyncio.ensure_future(client.connect(**kwargs))
    try:
        await asyncio.wait_for(asyncio.shield(task), options["connect_timeout"] * len(options["servers"]) + 1)
    except BaseException:
        task.cancel()
        await _quiet_close(client)
        raise
    return client


async def _quiet_close(client: Client) -> None:
    try:
        await asyncio.wait_for(client.close(), 5.0)
    except Exception:  # closing a client that never connected
        pass


class LoopThread:
    """An asyncio loop in a daemon thread; `run()` executes a coroutine there, bounded."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """The coroutine's result; TimeoutError (after cancelling it) past `timeout` seconds."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise TimeoutError(f"no answer within {timeout:.1f} s") from None

    def stop(self, last: Awaitable[Any] | None = None, timeout: float = 5.0) -> None:
        if last is not None:
            try:
                self.run(_await(last), timeout)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _await(a: Awaitable[T]) -> T:
    return await a
