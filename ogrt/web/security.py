"""Who may look (auth = none | basic | proxy) and the security headers of every response.

A pure ASGI middleware: it answers 401 itself, before any page or file is read.
- basic: `Authorization: Basic` checked against the scrypt hashes of `[web.users]`.
- proxy: the user named in `proxy_header`, believed only when the connection comes from one
  of `proxies` (the reverse proxy that authenticated the user); from anywhere else the
  header is ignored and the request refused.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from ogrt.config import WebConfig
from ogrt.web.passwords import verify_password

log = logging.getLogger("ogrt.web")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
MAX_CACHE = 64


class Guard:
    """Authentication (per `[web] auth`) plus security headers on every HTTP response."""

    def __init__(self, app: ASGIApp, config: WebConfig) -> None:
        self.app = app
        self.config = config
        self.header = config.proxy_header.lower().encode()
        # credentials already verified (sha256 of the header value → user): scrypt is slow
        # on purpose, a page loads several files
        self._verified: dict[bytes, str] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        # scrypt is slow on purpose: never on the event loop
        user = await run_in_threadpool(self.user, scope) if self.config.auth == "basic" else self.user(scope)
        if user is None:
            await self._refuse(send_with_headers)
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send_with_headers)

    def user(self, scope: Scope) -> str | None:
        """The authenticated user ("" with auth = none), or None."""
        auth = self.config.auth
        if auth == "none":
            return ""
        headers = dict(scope.get("headers") or [])
        if auth == "proxy":
            client = (scope.get("client") or ("", 0))[0]
            value = headers.get(self.header, b"").decode("latin-1").strip()
            if client in self.config.proxies and value:
                return value
            if value:
                log.warning("ignored %s header from %s (not a listed proxy)", self.config.proxy_header, client)
            return None
        return self._basic(headers.get(b"authorization", b""))

    def _basic(self, value: bytes) -> str | None:
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"basic" or not token or len(token) > 4096:
            return None
        key = hashlib.sha256(token.strip()).digest()
        if key in self._verified:
            return self._verified[key]
        try:
            name, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        stored = self.config.users.get(name)
        if not sep or stored is None or not verify_password(password, stored):
            log.warning("refused a login as %r", name[:64])
            return None
        if len(self._verified) >= MAX_CACHE:
            self._verified.clear()
        self._verified[key] = name
        return name

    async def _refuse(self, send: Any) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if self.config.auth == "basic":
            headers.append((b"www-authenticate", b'Basic realm="ogrt", charset="UTF-8"'))
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": b"401: authentication required\n"})
