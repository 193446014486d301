"""Text on its way to a terminal: bucket keys and index values are data from strangers, never terminal commands.

A key is any string a bucket's owner (or anyone who can write to it) chose. Printed raw, `\\x1b[2J` clears the screen,
`\\x1b]8;;...` plants a hyperlink, `\\x9b` is a one-byte CSI on many terminals, `\\r` overwrites the line before it,
and U+202E turns `gpj.exe` around so it reads `exe.jpg`. Every place the CLI prints such text passes it through
`printable` first, which shows those characters as escapes (`\\x1b`, `\\u202e`) instead of handing them to the
terminal. `--json` output needs none of this: `json.dumps` (with its default `ensure_ascii`) already escapes them.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# Unicode categories a terminal may act on or that hide or reorder text: C0/C1 controls and DEL (Cc), format
# characters such as the bidi overrides, zero-width and BOM (Cf), line/paragraph separators (Zl, Zp), and lone
# surrogates (Cs), which is how Python carries a filename's undecodable bytes and which stdout cannot even encode.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, multiline: bool = False) -> str:
    """`text` with every control, format and bidi character shown as an escape, so it prints as what it is.

    `multiline` keeps `\\n` as a line break, for output that is several lines by design (a query's result table);
    everywhere else a newline inside a key would let it forge a line of output, so it is escaped too.
    """
    if text.isprintable():  # the common case: no control, format or separator character at all
        return text
    return "".join(
        char if (char == "\n" and multiline) or unicodedata.category(char) not in _UNSAFE_CATEGORIES else _escape(char)
        for char in text
    )


def plain(text: str, *, multiline: bool = False) -> str:
    """`printable` text made safe to embed in rich markup too, so `[red]` or `[/]` in a key is shown, not obeyed."""
    from rich.markup import escape as escape_markup

    return escape_markup(printable(text, multiline=multiline))


class LazyConsole:
    """A rich Console made at its first print. Importing rich's console (and its markup) is a good share of what
    `bucket-sync --help` may cost, and --help never prints through it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    @property
    def width(self) -> int:
        """The terminal's width in columns (COLUMNS when set; 80 when not a terminal)."""
        return self._made().width

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self._made().print(*objects, **kwargs)
