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


#: The file name CVAT looks for in a cloud storage; the names inside are relative to the folder that holds it.
MANIFEST_FILE = "manifest.jsonl"

#: Extensions (lowercase, with the dot) that CVAT files as images. CVAT decides by name, not content: it asks
#: Python's `mimetypes.guess_type` (case-insensitive), after loading its own `media.mimetypes` table, and takes every
#: `image/*` type except SVG, which Pillow cannot open. This is the union of the two tables every CVAT install has
#: (Python's built-in strict map, as of 3.11, and CVAT's file), minus `.svg`/`.svgz`, and minus `.pcd` and `.bin`,
#: which CVAT maps to image types only to carry point clouds: a photo named `.bin` would be read as a LiDAR scan. A
#: system's own /etc/mime.types may add more, but no install can be counted on to have them, so none is promised.
CVAT_IMAGE_EXTENSIONS = frozenset(
    {".3ds", ".ag", ".arw", ".avif", ".bay", ".bmp", ".bmq", ".cgm", ".cr2", ".crw", ".cs1", ".cs2", ".cur", ".dcr",
     ".dds", ".djv", ".djvu", ".dng", ".dwg", ".dxf", ".emf", ".eps", ".epsf", ".epsi", ".erf", ".exr", ".fff",
     ".fig", ".fits", ".g3", ".gif", ".hdr", ".heic", ".heif", ".hrd", ".icb", ".icns", ".ico", ".ief", ".iff",
     ".ilbm", ".jng", ".jp2", ".jpe", ".jpeg", ".jpf", ".jpg", ".jpx", ".k25", ".kdc", ".lbm", ".lwo", ".lwob",
     ".lws", ".mdc", ".mdi", ".mos", ".mrw", ".msod", ".nef", ".ora", ".orf", ".pbm", ".pct", ".pcx", ".pef",
     ".pgm", ".pic", ".pict", ".pict1", ".pict2", ".png", ".pntg", ".pnm", ".pnx", ".ppm", ".psd", ".qif", ".qtif",
     ".raf", ".ras", ".raw", ".rdc", ".rgb", ".rle", ".rp", ".rw2", ".sgi", ".sk", ".sk1", ".sr2", ".srf", ".sun",
     ".tga", ".tif", ".tiff", ".tpic", ".vda", ".vst", ".wbmp", ".webp", ".wmf", ".x3f", ".xbm", ".xcf", ".xpm",
     ".xwd"}
)  # fmt: skip


def is_cvat_image_extension(extension: str) -> bool:
    """Whether CVAT files a name ending in `extension` (with its dot, any case; "" for none) as an image."""
    return extension.lower() in CVAT_IMAGE_EXTENSIONS


def manifest_has_items(data: bytes) -> bool:
    """Whether a manifest lists anything: CVAT refuses one whose first line after the header is missing.

    The header is two lines for an image manifest (version, type) and three for a video manifest (version, type,
    properties).
    """
    lines = [line for line in data.splitlines() if line.strip()]
    header = 3 if len(lines) > 1 and b'"video"' in lines[1] else 2
    return len(lines) > header
