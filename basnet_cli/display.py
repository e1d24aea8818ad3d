"""Text that is safe to print: file names and error reasons shown on one line, with no terminal
control codes.

A file name may hold a newline (which would forge a second ``failed:`` line), escape sequences
(which would reach the terminal) or bytes that are not UTF-8 (which Python keeps as lone
surrogates that no console can encode).  :func:`printable` shows each such character as a
backslash escape, the way ``ls -b`` and Python's ``repr`` do; everything else is unchanged.
"""

from __future__ import annotations

import os
import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control (Cc), format (Cf: bidi overrides, zero-width marks), line/paragraph separators and
# surrogates (undecodable bytes of a file name).
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape for a non-UTF-8 byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: object) -> str:
    """``str(text)`` with control, format and undecodable characters escaped (one line)."""
    s = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    if s.isprintable():  # the common case, and the only test most names need
        return s
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in s)
