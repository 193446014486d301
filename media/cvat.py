"""How CVAT names a file in a manifest, and which keys it cannot name at all.

A CVAT image manifest identifies each image by `name` (its path relative to the manifest's folder, without the
extension) plus `extension`. CVAT looks files up by that name, so two keys that differ only in their extension
(`a.jpg`, `a.JPG`, `a.jpeg`) would be one image to it, and a key whose path a file system would normalise (`a//b.jpg`,
`./a.jpg`, `../a.jpg`, `/a.jpg`) names a different file, or none, once CVAT joins it to a folder. Names here are cut
from the key as text, never through a path library, which would normalise exactly those keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from media.keyframes import KeyFrame

#: The extension of a key: the last `.suffix` of its final segment, as `PurePosixPath.suffix` defines it (a leading dot
#: starts a hidden name, not a suffix; a trailing dot is no suffix). One pattern, used by Python and by DuckDB's RE2.
EXTENSION_PATTERN = r"[^/](\.[^./]+)$"
_EXTENSION = re.compile(EXTENSION_PATTERN)

#: SQL for the manifest name (key without its extension) of the key in column `key`: the same cut as `split_name`.
NAME_SQL = f"left(key, length(key) - length(coalesce(regexp_extract(key, '{EXTENSION_PATTERN}', 1), '')))"


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


def video_manifest_lines(name: str, width: int, height: int, length: int, keyframes: Iterable[KeyFrame]) -> list[str]:
    """A CVAT video manifest (version 1.1), one compact JSON object per line, without line ends.

    A video manifest describes one video: `name` is its file name as CVAT's manifest tool writes it (the base name),
    `resolution` the decoded frame's [width, height], `length` the number of frames, then one line per key frame with
    its `number` and `pts`. CVAT's tool adds an md5 `checksum` of each decoded key frame; it is optional to CVAT, and
    computing it would mean decoding the video, which is what the manifest spares.
    """
    header = [
        {"version": "1.1"},
        {"type": "video"},
        {"properties": {"name": name, "resolution": [width, height], "length": length}},
    ]
    rows = ({"number": row["number"], "pts": row["pts"]} for row in keyframes)
    return [json.dumps(line, separators=(",", ":"), ensure_ascii=False) for line in (*header, *rows)]
