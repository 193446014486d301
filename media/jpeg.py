"""JPEG facts from the marker segments in front of the first frame header.

Hand-written rather than Pillow: Pillow's JpegImageFile reads on to the start of scan one byte per call, and
its errors cannot tell a truncated file from a malformed one; this walk stops at SOF and skips segments by
their length.
"""

from __future__ import annotations

from media.errors import ProbeError
from media.exif import displayed_size, orientation_from_exif
from media.facts import MediaFacts
from media.ranges import RangeReader

# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_EXIF_ID = b"Exif\x00\x00"
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
#: 0xFF fill bytes allowed before one marker. The standard allows any number, encoders write none or a few; a
#: longer run is garbage, and walking it byte by byte is how a tiny file used to cost tens of seconds of CPU.
MAX_FILL = 4096
#: Marker segments allowed before the frame header. Real files have tens (hundreds with a split ICC profile);
#: each costs two reads, so this bounds the walk of a file made of empty segments.
MAX_SEGMENTS = 4096
#: A tail this long answers "does the file end with EOI?" even with padding after it, in one small request.
END_CHECK_BYTES = 32


def probe_jpeg(reader: RangeReader, facts: MediaFacts, *, end_check: bool = True) -> None:
    """Facts from the segments before the frame header; with `end_check`, a file without EOI is truncated.

    The end check costs a read of the file's last bytes (started together with the head read when the caller
    expects a JPEG, see media.probe), so it is the rule profile's choice: truncated uploads are real, but a tool
    that decodes what it can may not want to pay for finding them.
    """
    facts.kind, facts.format = "image", "jpeg"
    pos = 2
    exif: bytes | None = None
    appended_media = False
    segments = 0
    while True:
        segments += 1
        if segments > MAX_SEGMENTS:
            raise ProbeError(
                f"malformed JPEG: more than {MAX_SEGMENTS} marker segments before the frame header (at offset {pos})"
            )
        # The marker and the segment length in one read: one call per segment where there were two.
        segment = reader.read_at(pos, 4)
        marker = segment[:2]
        if len(marker) < 2:
            raise ProbeError("truncated JPEG: no SOF marker before end of file")
        if marker[0] != 0xFF:
            raise ProbeError(f"malformed JPEG: expected a marker at offset {pos}, found byte 0x{marker[0]:02x}")
        code = marker[1]
        if code == 0xFF:  # fill bytes before a marker: skip the whole run at once
            pos = _skip_fill(reader, pos)
            continue
        if code in _STANDALONE:
            pos += 2
            continue
        if code == 0xD9:
            raise ProbeError(f"malformed JPEG: end-of-image marker at offset {pos} before any SOF marker")
        if code == 0xDA:
            raise ProbeError(f"malformed JPEG: scan data at offset {pos} before any SOF marker")
        raw_length = segment[2:4]
        if len(raw_length) < 2:
            raise ProbeError("truncated JPEG: no SOF marker before end of file")
        length = int.from_bytes(raw_length, "big")
        if length < 2:
            raise ProbeError(f"malformed JPEG: segment 0x{code:02X} at offset {pos} has length {length}")
        if code in _SOF:
            sof = reader.read_at(pos + 4, 6)
            if len(sof) < 6:
                raise ProbeError("truncated JPEG: file ends inside the SOF header")
            _apply_sof(facts, sof, orientation_from_exif(exif))
            break
        if code == 0xE1:
            ident = reader.read_at(pos + 4, len(_XMP_ID))
            if exif is None and ident.startswith(_EXIF_ID):
                exif = reader.read_at(pos + 4, length - 2)
            elif ident == _XMP_ID:
                xmp = reader.read_at(pos + 4, length - 2)
                # Motion photos carry a video after EOI by design; their tail is not a truncation.
                appended_media = appended_media or b"MotionPhoto" in xmp or b"MicroVideo" in xmp
        pos += 2 + length
    if end_check and not appended_media:
        _check_end(reader)


def _skip_fill(reader: RangeReader, pos: int) -> int:
    """Offset of the last 0xFF of the fill run that starts at `pos`, where the marker is then read.

    One read and one C-level strip per run, never a read per byte; a run longer than MAX_FILL is refused.
    """
    window = reader.read_at(pos, MAX_FILL + 2)
    run = len(window) - len(window.lstrip(b"\xff"))
    if run == len(window):
        if len(window) < MAX_FILL + 2:
            raise ProbeError("truncated JPEG: no SOF marker before end of file")
        raise ProbeError(
            f"malformed JPEG: more than {MAX_FILL} fill bytes (0xFF) from offset {pos}; a marker should follow within"
            " a few"
        )
    return pos + run - 1


def _apply_sof(facts: MediaFacts, sof: bytes, orientation: int | None) -> None:
    precision = sof[0]
    height, width = int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")
    components = sof[5]
    facts.width, facts.height = width, height
    facts.mode = _MODES.get(components)
    facts.orientation = orientation
    if width and height:
        facts.display_width, facts.display_height = displayed_size(width, height, orientation)
    if not width or not height:
        raise ProbeError(f"JPEG declares a {width} x {height} image")
    if precision != 8:
        raise ProbeError(f"{precision}-bit JPEG: common decoders (browsers, Pillow) cannot read it")
    if facts.mode is None:
        raise ProbeError(f"JPEG with {components} colour components: common decoders cannot read it")


def _check_end(reader: RangeReader) -> None:
    tail = reader.read_at(max(0, reader.size - END_CHECK_BYTES), END_CHECK_BYTES, exact=True)
    if tail.rstrip(b"\x00").endswith(b"\xff\xd9") or tail.endswith(b"SEFT"):  # SEFT: Samsung's trailer after EOI
        return
    raise ProbeError("truncated JPEG: no end-of-image marker")
