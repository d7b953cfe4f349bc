"""Password hashes of `[web.users]`: scrypt (hashlib), never plain text.

Format: ``scrypt$N$r$p$SALT$HASH`` with SALT and HASH in unpadded URL-safe base64.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

PREFIX = "scrypt"
N, R, P = 1 << 14, 8, 1
DKLEN = 32
_FORMAT = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_-]{16,})\$([A-Za-z0-9_-]{32,})$")
MAX_PASSWORD = 1024  # bytes: longer inputs are refused before hashing


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _params_ok(n: int, r: int, p: int) -> bool:
    # bounded so a config cannot make every login take minutes or gigabytes
    return 2 <= n <= (1 << 20) and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and 128 * n * r <= 1 << 30


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DKLEN, maxmem=64 << 20)
    return f"{PREFIX}${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def is_hash(text: str) -> bool:
    m = _FORMAT.match(text)
    return bool(m) and _params_ok(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def verify_password(password: str, stored: str) -> bool:
    """True when `password` hashes to `stored` (constant-time compare)."""
    m = _FORMAT.match(stored)
    if not m or len(password.encode()) > MAX_PASSWORD:
        return False
    n, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not _params_ok(n, r, p):
        return False
    want = _unb64(m.group(5))
    got = hashlib.scrypt(password.encode(), salt=_unb64(m.group(4)), n=n, r=r, p=p, dklen=len(want),
                         maxmem=(128 * n * r) + (2 << 20))
    return hmac.compare_digest(got, want)
