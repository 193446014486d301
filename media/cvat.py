"""How CVAT names a file in a manifest, and which keys it cannot name at all.

A CVAT image manifest identifies each image by `name` (its path relative to the manifest's folder, without the
extension) plus `extension`. CVAT looks files up by that name, so two keys that differ only in their extension
(`a.jpg`, `a.JPG`, `a.jpeg`) would be one image to it, and a key whose path a file system would normalise (`a//b.jpg`,
`./a.jpg`, `../a.jpg`, `/a.jpg`) names a different file, or none, once CVAT joins it to a folder. Names here are cut
from the key as text, never through a path library, which would normalise exactly those keys.
"""

from __future__ import annotations

import re

#: The extension of a key: the last `.suffix` of its final segment, as `PurePosixPath.suffix` defines it (a leading dot
#: starts a hidden name, not a suffix; a trailing dot is no suffix). One pattern, used by Python and by DuckDB's RE2.
EXTENSION_PATTERN = r"[^/](\.[^./]+)$"
_EXTENSION = re.compile(EXTENSION_PATTERN)

#: SQL for the manifest name (key without its extension) of the key in column `key`: the same cut as `split_name`.
NAME_SQL = f"left(key, length(key) - length(coalesce(regexp_extract(key, '{EXTENSION_PATTERN}', 1), '')))"


#: SQL, true when the key in column `{key}` is one CVAT can address (`unaddressable_reason` gives None): no empty,
#: '.' or '..' segment (which also rules out a leading '/'), and no control character. Fill in with .format(key=...).
ADDRESSABLE_SQL = r"(NOT regexp_matches({key}, '(^|/)\.{{0,2}}(/|$)') AND NOT regexp_matches({key}, '[[:cntrl:]]'))"


def split_name(relative_key: str) -> tuple[str, str]:
    """(name, extension with its dot) of a key relative to the manifest's folder."""
    match = _EXTENSION.search(relative_key)
    if not match:
        return relative_key, ""
    extension = match.group(1)
    return relative_key[: -len(extension)], extension


def unaddressable_reason(key: str) -> str | None:
    """Why CVAT cannot address `key` through a manifest, or None when it can."""
    if key.startswith("/"):
        return "the key starts with '/', which CVAT reads as an absolute path"
    segments = key.split("/")
    if any(s == "" for s in segments):
        return "the key has an empty folder segment ('//'), which CVAT collapses into another path"
    if any(s in (".", "..") for s in segments):
        return "the key has a '.' or '..' segment, which CVAT resolves to another path"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "the key holds control characters, which CVAT cannot carry in a file name"
    return None
