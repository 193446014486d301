"""WebP facts from the RIFF chunk headers.

Hand-written because Pillow's WebP plugin reads the whole file in _open; here only the first chunk's header
and, for extended files with EXIF, the chunk headers up to the EXIF chunk are read (the bitstream is skipped
by size).
"""

from __future__ import annotations

from media.errors import ProbeError
from media.exif import displayed_size, orientation_from_exif
from media.facts import MediaFacts
from media.ranges import RangeReader

_VP8X_ALPHA = 0x10
_VP8X_EXIF = 0x08
# Chunk headers walked looking for EXIF before giving up: real files have a handful (ICCP, ANIM, ALPH, VP8,
# XMP).
_MAX_CHUNKS = 1000
# The orientation sits in IFD0, at the start of the EXIF block: read no more than JPEG's APP1 can hold, however
# large the chunk claims to be, so a hostile size cannot make Pillow's EXIF parser walk megabytes.
_MAX_EXIF = 64 * 1024


def sniff(head: bytes) -> bool:
    return len(head) >= 12 and head[0:4] == b"RIFF" and head[8:12] == b"WEBP"


def probe_webp(reader: RangeReader, facts: MediaFacts) -> None:
    facts.kind, facts.format = "image", "webp"
    riff_end = int.from_bytes(reader.read_at(4, 4), "little") + 8
    first = reader.read_at(12, 8 + 30)
    if len(first) < 8:
        raise ProbeError("truncated WebP: no chunk after the RIFF header")
    chunk, data = first[0:4], first[8:]
    if chunk == b"VP8 ":
        # Lossy bitstream: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and height.
        if len(data) < 10 or data[3:6] != b"\x9d\x01\x2a":
            raise ProbeError("malformed WebP: VP8 chunk without a key-frame start code")
        width = int.from_bytes(data[6:8], "little") & 0x3FFF
        height = int.from_bytes(data[8:10], "little") & 0x3FFF
        _set_size(facts, width, height, "RGB", None)
    elif chunk == b"VP8L":
        # Lossless bitstream: signature 0x2f, then width-1 and height-1 in 14 bits each, then the alpha hint.
        if len(data) < 5 or data[0] != 0x2F:
            raise ProbeError("malformed WebP: VP8L chunk without its signature")
        bits = int.from_bytes(data[1:5], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        _set_size(facts, width, height, "RGBA" if (bits >> 28) & 1 else "RGB", None)
    elif chunk == b"VP8X":
        if len(data) < 10:
            raise ProbeError("truncated WebP: VP8X chunk cut short")
        flags = data[0]
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        orientation = _find_exif_orientation(reader, min(riff_end, reader.size)) if flags & _VP8X_EXIF else None
        _set_size(facts, width, height, "RGBA" if flags & _VP8X_ALPHA else "RGB", orientation)
    else:
        raise ProbeError(f"malformed WebP: first chunk is {chunk!r}, not VP8, VP8L or VP8X")
    # The RIFF header states the file's length, so truncation costs no extra read.
    if riff_end > reader.size:
        raise ProbeError(f"truncated WebP: RIFF header declares {riff_end} bytes, the object has {reader.size}")


def _set_size(facts: MediaFacts, width: int, height: int, mode: str, orientation: int | None) -> None:
    facts.width, facts.height, facts.mode, facts.orientation = width, height, mode, orientation
    facts.display_width, facts.display_height = displayed_size(width, height, orientation)


def _find_exif_orientation(reader: RangeReader, end: int) -> int | None:
    pos = 12
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > end:
            return None
        header = reader.read_at(pos, 8)
        size = int.from_bytes(header[4:8], "little")
        if header[0:4] == b"EXIF":
            raw = reader.read_at(pos + 8, min(size, _MAX_EXIF))
            return orientation_from_exif(raw[6:] if raw.startswith(b"Exif\x00\x00") else raw)
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None
