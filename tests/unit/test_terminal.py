"""`printable`: what the CLI does to every key, value and message before a terminal sees it."""

from __future__ import annotations

import json

import pytest

from pipelines.terminal import plain, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a/b c.jpg", "a/b c.jpg"),
        ("é/日本/😀.png", "é/日本/😀.png"),
        ("\x1b[2J", "\\x1b[2J"),
        ("bell\x07", "bell\\x07"),
        ("over\rwrite", "over\\x0dwrite"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f", "del\\x7f"),
        ("c1\x9b6n\x85", "c1\\x9b6n\\x85"),
        ("\u202egpj.exe", "\\u202egpj.exe"),
        ("\u2066iso\u2069", "\\u2066iso\\u2069"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028sep", "line\\u2028sep"),
        ("undecodable\udcff", "undecodable\\udcff"),
        ("new\nline", "new\\x0aline"),
    ],
)
def test_printable_shows_control_and_bidi_characters_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(shown) == shown, "escaping is stable: the shown text is itself printable"


def test_multiline_keeps_line_breaks_only() -> None:
    assert printable("row 1\nrow\x1b 2\r\n", multiline=True) == "row 1\nrow\\x1b 2\\x0d\n"


def test_plain_also_escapes_rich_markup() -> None:
    assert plain("[red]x[/]\x1b") == "\\[red]x\\[/]\\x1b"


def test_json_output_needs_no_help() -> None:
    """`--json` output goes through json.dumps, whose default ensure_ascii escapes every one of these itself."""
    text = json.dumps({"key": "\x1b[2J\x07\r\x9b\u202e\u2028\udcff"})
    assert text.isascii() and text.isprintable()
