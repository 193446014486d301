"""ISO-BMFF / QuickTime facts from box headers, read lazily through a RangeReader.

Hand-written on purpose: PyAV's demuxer reads packets in find_stream_info and pulls every byte through Python
I/O callbacks, far over the probe's byte budget; walking boxes touches only their headers and the few small
boxes that carry facts, so a moov at the end of a big file costs a couple of block reads.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from media.errors import ProbeError
from media.facts import MediaFacts
from media.pixel_format import PARSERS
from media.ranges import RangeReader

MAX_BOXES = 10_000
MAX_DEPTH = 16
# After the moov, only a few more top-level headers are read: enough to notice a truncated mdat in an ordinary
# file, without walking every fragment of a fragmented MP4.
_TOP_LEVEL_AFTER_MOOV = 8
_CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex"})
# Top-level box types a QuickTime/MP4 file may start with; anything else is not sniffed as ISO-BMFF.
FIRST_BOX_TYPES = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
# ftyp brands that mean a HEIF/AVIF still image, not a video.
_HEIF_BRANDS = frozenset({"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"})
_AVIF_BRANDS = frozenset({"avif", "avis"})


@dataclass(frozen=True, slots=True)
class Box:
    type: str
    offset: int
    header: int
    size: int

    @property
    def payload(self) -> int:
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(slots=True)
class _Track:
    handler: str | None = None
    tkhd_size: tuple[int, int] | None = None
    rotation: int = 0
    timescale: int = 0
    duration: int = 0
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    sample_count: int = 0
    stts: Box | None = None


@dataclass(slots=True)
class _Movie:
    timescale: int = 0
    duration: int = 0
    tracks: list[_Track] = field(default_factory=list)


def sniff(head: bytes) -> bool:
    """True when the first box header looks like an MP4/QuickTime file (type known, size plausible)."""
    if len(head) < 8 or head[4:8] not in FIRST_BOX_TYPES:
        return False
    size = int.from_bytes(head[0:4], "big")
    return size in (0, 1) or size >= 8


def _name(raw: bytes) -> str:
    return raw.decode("latin-1")


def _shown(box_type: str) -> str:
    """Box type for a message: printable as-is, else escaped so hostile bytes cannot garble a log line."""
    return box_type if box_type.isascii() and box_type.isprintable() else box_type.encode("latin-1").hex()


class _Walker:
    def __init__(self, reader: RangeReader) -> None:
        self.reader = reader
        self.boxes = 0

    def read(self, offset: int, length: int) -> bytes:
        data = self.reader.read_at(offset, length)
        if len(data) < length:
            raise ProbeError(f"truncated MP4: needed {length} bytes at offset {offset}, the file ends first")
        return data

    def children(self, start: int, end: int, depth: int, parent: str) -> Iterator[Box]:
        if depth > MAX_DEPTH:
            raise ProbeError(
                f"boxes nested deeper than {MAX_DEPTH} levels (inside '{_shown(parent)}' at offset {start})"
            )
        file_size = self.reader.size
        pos = start
        # Fewer than 8 bytes cannot hold a box; QuickTime pads containers with a 4-byte terminator, so stop
        # quietly.
        while end - pos >= 8:
            self.boxes += 1
            if self.boxes > MAX_BOXES:
                raise ProbeError(f"more than {MAX_BOXES} boxes: refusing to walk further (at offset {pos})")
            raw = self.read(pos, 8)
            size, box_type = int.from_bytes(raw[0:4], "big"), _name(raw[4:8])
            header = 8
            if size == 1:
                if end - pos < 16:
                    raise ProbeError(f"box '{_shown(box_type)}' at offset {pos} has a cut-off 64-bit size")
                size = int.from_bytes(self.read(pos + 8, 8), "big")
                header = 16
            elif size == 0:
                size = end - pos
            if size < header:
                raise ProbeError(f"box '{_shown(box_type)}' at offset {pos} has an invalid size of {size} bytes")
            if pos + size > end:
                where = (
                    f"past the end of the file ({file_size} bytes)"
                    if pos + size > file_size
                    else f"past the end of its parent '{_shown(parent)}'"
                )
                message = f"box '{_shown(box_type)}' at offset {pos} claims {size} bytes, {where}"
                raise ProbeError(f"truncated MP4: {message}" if depth == 0 else message)
            yield Box(box_type, pos, header, size)
            pos += size

    def leaf(self, box: Box, limit: int) -> bytes:
        """The first `limit` payload bytes of a small box (header fields), never a whole big box."""
        return self.read(box.payload, min(box.size - box.header, limit))


def probe_mp4(reader: RangeReader, facts: MediaFacts) -> None:
    """Fill `facts` for an ISO-BMFF/QuickTime object; raise ProbeError with what was learned so far kept."""
    walker = _Walker(reader)
    movie: _Movie | None = None
    ftyp_seen = False
    after_moov = 0
    facts.format = "mov"
    for box in walker.children(0, reader.size, 0, "file"):
        if movie is not None:
            after_moov += 1
            if after_moov > _TOP_LEVEL_AFTER_MOOV:
                break
        if box.type == "ftyp" and not ftyp_seen:
            ftyp_seen = True
            _parse_ftyp(walker, box, facts)
            if facts.format in ("heic", "avif"):
                return  # a still image in an ISO-BMFF wrapper: the format is the fact
        elif box.type == "moov" and movie is None:
            movie = _Movie()
            _walk(walker, box, 1, movie, [])
            _apply_movie(walker, movie, facts)
    if movie is None:
        raise ProbeError("no moov box: not a playable MP4")
    if facts.kind != "video":
        raise ProbeError("no video track")


def _parse_ftyp(walker: _Walker, box: Box, facts: MediaFacts) -> None:
    data = walker.leaf(box, 4096)
    if len(data) < 8:
        raise ProbeError(f"box 'ftyp' at offset {box.offset} is too short ({box.size} bytes)")
    major = _name(data[0:4])
    # Brands are stored exactly as the four characters in the file ("qt  " keeps its spaces), so they compare
    # against the specs' brand names without guessing.
    brands = [_name(data[i : i + 4]) for i in range(8, len(data) - 3, 4)]
    facts.major_brand = major
    facts.compatible_brands = brands
    if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and "avif" in brands):
        facts.kind, facts.format = "image", "avif"
    elif major in _HEIF_BRANDS:
        facts.kind, facts.format = "image", "heic"
    else:
        facts.format = "mov" if major == "qt  " else "mp4"


def _walk(walker: _Walker, box: Box, depth: int, movie: _Movie, tracks: list[_Track]) -> None:
    """Descend into container boxes wherever they appear; parse the leaves that carry facts.

    `tracks` is the stack of enclosing traks, so a leaf fills the track it belongs to.
    """
    for child in walker.children(box.payload, box.end, depth, box.type):
        kind = child.type
        if kind == "trak":
            track = _Track()
            _walk(walker, child, depth + 1, movie, [*tracks, track])
            movie.tracks.append(track)
        elif kind in _CONTAINERS:
            _walk(walker, child, depth + 1, movie, tracks)
        elif kind == "mvhd" and box.type == "moov":
            movie.timescale, movie.duration = _header_times(walker.leaf(child, 32))
        elif tracks:
            _parse_track_leaf(walker, child, box.type, depth, tracks[-1])


def _header_times(data: bytes) -> tuple[int, int]:
    """(timescale, duration) from an mvhd/mdhd payload; version 1 uses 64-bit times."""
    if len(data) < 20:
        return 0, 0
    if data[0] == 1:
        if len(data) < 32:
            return 0, 0
        timescale, duration = struct.unpack(">IQ", data[20:32])
        unknown = 0xFFFFFFFFFFFFFFFF
    else:
        timescale, duration = struct.unpack(">II", data[12:20])
        unknown = 0xFFFFFFFF
    return timescale, (0 if duration == unknown else duration)


def _parse_track_leaf(walker: _Walker, box: Box, parent: str, depth: int, track: _Track) -> None:
    kind = box.type
    if kind == "tkhd" and parent == "trak":
        _parse_tkhd(walker.leaf(box, 92), track)
    elif kind == "mdhd" and parent == "mdia":
        track.timescale, track.duration = _header_times(walker.leaf(box, 32))
    elif kind == "hdlr" and parent == "mdia":  # QuickTime also has a data-handler hdlr in minf: not the media type
        data = walker.leaf(box, 12)
        if len(data) >= 12:
            track.handler = _name(data[8:12])
    elif kind == "stsd" and parent == "stbl":
        _parse_stsd(walker, box, depth, track)
    elif kind in ("stsz", "stz2") and parent == "stbl":
        data = walker.leaf(box, 12)
        if len(data) >= 12:
            track.sample_count = int.from_bytes(data[8:12], "big")
    elif kind == "stts" and parent == "stbl":
        track.stts = box


def _parse_tkhd(data: bytes, track: _Track) -> None:
    offset = 4 + (32 if data[:1] == b"\x01" else 20) + 16  # times and ids, then reserved/layer/group/volume
    if len(data) < offset + 44:
        return
    a, b = struct.unpack(">ii", data[offset : offset + 8])
    if a or b:
        track.rotation = round(math.degrees(math.atan2(b, a)) / 90) % 4 * 90
    width, height = struct.unpack(">II", data[offset + 36 : offset + 44])
    track.tkhd_size = (width >> 16, height >> 16)


def _parse_stsd(walker: _Walker, box: Box, depth: int, track: _Track) -> None:
    # stsd is a full box (version/flags) with an entry count; its first sample entry names the codec.
    for entry in walker.children(box.payload + 8, box.end, depth + 1, "stsd"):
        track.codec = entry.type
        visual = walker.leaf(entry, 78)
        if len(visual) >= 28:
            width, height = struct.unpack(">HH", visual[24:28])
            track.width, track.height = (width or None), (height or None)
        if len(visual) == 78:
            for config in walker.children(entry.payload + 78, entry.end, depth + 2, entry.type):
                parser = PARSERS.get(config.type)
                if parser is not None:
                    track.pix_fmt = parser(walker.leaf(config, 4096))
                    break
        return


def _count_stts(walker: _Walker, box: Box) -> int:
    header = walker.leaf(box, 8)
    if len(header) < 8:
        return 0
    entries = min(int.from_bytes(header[4:8], "big"), (box.size - box.header - 8) // 8)
    data = walker.read(box.payload + 8, entries * 8)
    # (sample_count, sample_delta) pairs of 32-bit big-endian words, summed in C: an stts of a million entries
    # would otherwise be a million Python iterations.
    return sum(struct.unpack(f">{len(data) // 4}I", data)[0::2])


def _apply_movie(walker: _Walker, movie: _Movie, facts: MediaFacts) -> None:
    video = next((t for t in movie.tracks if t.handler == "vide"), None)
    if video is None:
        return
    facts.kind = "video"
    facts.codec = video.codec
    facts.pix_fmt = video.pix_fmt
    width, height = video.width, video.height
    if (width is None or height is None) and video.tkhd_size and all(video.tkhd_size):
        width, height = video.tkhd_size
    facts.width, facts.height = width, height
    facts.rotation = video.rotation
    if width is not None and height is not None:
        swap = video.rotation in (90, 270)
        facts.display_width, facts.display_height = (height, width) if swap else (width, height)
    if video.timescale and video.duration:
        facts.duration_s = video.duration / video.timescale
    elif movie.timescale and movie.duration:
        facts.duration_s = movie.duration / movie.timescale
    facts.frames = video.sample_count or None
    # The stts lookup is deferred: it is only needed (and only read) when stsz has no count.
    if facts.frames is None and video.stts is not None:
        facts.frames = _count_stts(walker, video.stts) or None
