"""Lossless text for Linux bytes (README, "Text that is not UTF-8").

escape(): valid UTF-8 is kept as it is, except that a backslash becomes ``\\\\``;
each byte that is not part of valid UTF-8, and the byte 0x00, becomes ``\\xHH``
(two lowercase hex digits). unescape() turns such text back into the bytes.
"""
from __future__ import annotations

import re

__all__ = ["escape", "unescape"]

# surrogateescape maps each undecodable byte 0x80..0xff to U+DC80..U+DCFF
_SURROGATE = re.compile("[\udc80-\udcff]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})?")


def _surrogate_to_hex(m: re.Match[str]) -> str:
    return "\\x%02x" % (ord(m.group()) - 0xDC00)


def escape(data: bytes) -> str:
    """Bytes → text that unescape() turns back into exactly these bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        if "\\" in text:
            text = text.replace("\\", "\\\\")
        if "\x00" in text:
            text = text.replace("\x00", "\\x00")
        return _SURROGATE.sub(_surrogate_to_hex, text)
    # fast path: clean UTF-8 (the common case)
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text


def unescape(text: str) -> bytes:
    """Escaped text → the original bytes. ValueError on a malformed escape."""
    if "\\" not in text:
        return text.encode("utf-8")
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8")
        esc = m.group(1)
        if esc is None:
            raise ValueError(f"lone backslash at offset {m.start()} in escaped text")
        if esc == "\\":
            out += b"\\"
        else:
            out.append(int(esc[1:], 16))
        pos = m.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)
