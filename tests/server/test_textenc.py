"""ogrt.textenc: the README's escaping, lossless for any bytes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogrt.textenc import escape, unescape


@pytest.mark.parametrize("raw, text", [
    (b"/usr/bin/python3", "/usr/bin/python3"),
    ("/home/jörg/ünï".encode(), "/home/jörg/ünï"),
    (b"a\\b", "a\\\\b"),
    (b"\xff", "\\xff"),
    (b"nul\x00byte", "nul\\x00byte"),
    (b"line\nbreak\"quote'", "line\nbreak\"quote'"),
    (b"\\xff", "\\\\xff"),                   # a literal backslash-x stays distinguishable
    (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),     # UTF-8-encoded surrogate is not valid UTF-8
    (b"\xc3", "\\xc3"),                       # truncated sequence
    (b"ok\xc3\xa9\xfe\\", "ok\u00e9\\xfe\\\\"),
])
def test_examples(raw: bytes, text: str) -> None:
    assert escape(raw) == text
    assert unescape(text) == raw


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_roundtrip_any_bytes(raw: bytes) -> None:
    text = escape(raw)
    assert unescape(text) == raw
    text.encode("utf-8")  # always valid text (no lone surrogates)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100).filter(lambda s: "\\" not in s and "\x00" not in s))
def test_valid_utf8_is_verbatim(s: str) -> None:
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError:  # hypothesis may produce lone surrogates
        return
    assert escape(raw) == s


@pytest.mark.parametrize("bad", ["\\", "a\\q", "\\x4", "\\xzz"])
def test_unescape_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        unescape(bad)
