"""printable(): names and reasons print as one literal line, whatever bytes they hold."""

from __future__ import annotations

import os

from basnet_cli.display import printable


def test_control_and_format_characters_are_escaped():
    assert printable("a\nfailed: b.jpg") == "a\\nfailed: b.jpg"
    assert printable("x\x1b[31my\r\t\x7f") == "x\\x1b[31my\\r\\t\\x7f"
    assert printable("evil\u202egpj.png") == "evil\\u202egpj.png"
    assert printable("line\u2028sep") == "line\\u2028sep"


def test_undecodable_bytes_show_as_hex():
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes in a UTF-8 file system
    assert printable(name) == "caf\\xe9.jpg"
    printable(name).encode("utf-8")  # encodable: no lone surrogates left


def test_ordinary_text_is_unchanged():
    for text in ("photo 1.jpg", "café/ñandú.png", "写真.png", "[red]x[/]"):
        assert printable(text) == text
