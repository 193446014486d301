"""ISO-BMFF / QuickTime facts from box headers, read lazily through a RangeReader.

Hand-written on purpose: PyAV's demuxer reads packets in find_stream_info and pulls every byte through Python
I/O callbacks, far over the probe's byte budget; walking boxes touches only their headers and the few small
boxes that carry facts, so a moov at the end of a big file costs a couple of block reads.

MP4 as it comes from the wild is probed or flagged with its reason: fragmented files and DASH initialisation segments
(mvex, moof), CENC-encrypted tracks (encv/enca with the original format in sinf/frma), 64-bit and to-the-end box sizes,
rotation matrices, audio-only files, several video tracks, and sample tables that point past the end of the file. The
primary video track's sample tables (stts, ctts, stss, elst) are read, bounded, to list the key frames of a CVAT video
manifest (media/keyframes.py); the media data (mdat) is never read.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from media.errors import ProbeError
from media.facts import MediaFacts
from media.keyframes import Edit, KeyFrameError, SampleTables, cvat_keyframes, rescale
from media.pixel_format import PARSERS
from media.ranges import ProbeBudgetExceeded, RangeReader

MAX_BOXES = 10_000
MAX_DEPTH = 16
# After the moov, only a few more top-level headers are read: enough to notice a truncated mdat in an ordinary
# file, without walking every fragment of a fragmented MP4.
_TOP_LEVEL_AFTER_MOOV = 8
_CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex"})
#: Bytes of sample tables (stts, ctts, stss, elst) read to list a video's key frames: a two-hour 30 fps video with
#: B-frames needs about 1.7 MB. Beyond it the video keeps its facts and gets no key frames, with a note saying so.
MAX_TABLE_BYTES = 4 * 1024 * 1024
#: Samples a probe indexes to list key frames (about 1.5 s of CPU and 100 MB for 300,000): nearly three hours at
#: 30 fps. A longer video keeps its facts and gets no key frames, with a note saying so.
MAX_INDEXED_SAMPLES = 300_000
#: The boxes of a track's sample table kept for later reading: only their position is recorded while walking.
_TABLES = frozenset({"stts", "ctts", "stss", "stsc", "stco", "co64"})
#: Sample entries whose samples are encrypted (ISO/IEC 23001-7): the original format is named by sinf/frma.
_PROTECTED = frozenset({"encv", "enca", "enct", "encs"})
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
    sample_size: int = 0  # stsz: one size for every sample, or 0 when each has its own
    stsz: Box | None = None
    stts: Box | None = None
    track_id: int | None = None
    enabled: bool = True
    # The scheme of an encrypted sample entry (schm, e.g. "cenc", "cbcs"); "" when protected without a named scheme.
    protection: str | None = None
    tables: dict[str, Box] = field(default_factory=dict)
    elst: Box | None = None
    # Samples and their total duration found in the movie fragments (moof/traf/trun) that were read.
    fragment_samples: int = 0
    fragment_duration: int = 0


@dataclass(slots=True)
class _Movie:
    timescale: int = 0
    duration: int = 0
    tracks: list[_Track] = field(default_factory=list)
    fragmented: bool = False  # an mvex box: the samples follow in movie fragments
    fragment_duration: int = 0  # mehd: the whole presentation's duration, in the movie timescale
    sample_durations: dict[int, int] = field(default_factory=dict)  # trex default_sample_duration by track id
    fragments: int = 0  # moof boxes read
    fragment_durations_known: bool = True  # False when a track run was too large to sum its sample durations

    def track(self, track_id: int) -> _Track | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)


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
    walked_to_end = True
    facts.format = "mov"
    try:
        for box in walker.children(0, reader.size, 0, "file"):
            if movie is not None:
                after_moov += 1
                if after_moov > _TOP_LEVEL_AFTER_MOOV:
                    walked_to_end = False
                    break
            if box.type == "ftyp" and not ftyp_seen:
                ftyp_seen = True
                _parse_ftyp(walker, box, facts)
                if facts.format in ("heic", "avif"):
                    return  # a still image in an ISO-BMFF wrapper: the format is the fact
            elif box.type == "moov" and movie is None:
                movie = _Movie()
                _walk(walker, box, 1, movie, [])
            elif box.type == "moof" and movie is not None and movie.fragmented:
                _parse_moof(walker, box, movie)
    except ProbeError:
        if movie is not None:
            _describe_video(movie, facts)  # what the moov said is kept beside the reason
        raise
    if movie is None:
        raise ProbeError("no moov box: not a playable MP4")
    video = _describe_video(movie, facts)
    if video is None:
        raise ProbeError(_no_video(movie))
    _check_movie(walker, movie, video, facts, walked_to_end)
    _index_key_frames(walker, movie, video, facts)


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
        elif kind == "mvex" and box.type == "moov":
            movie.fragmented = True
            _walk(walker, child, depth + 1, movie, tracks)
        elif kind in _CONTAINERS:
            _walk(walker, child, depth + 1, movie, tracks)
        elif kind == "mvhd" and box.type == "moov":
            movie.timescale, movie.duration = _header_times(walker.leaf(child, 32))
        elif kind == "mehd" and box.type == "mvex":
            data = walker.leaf(child, 12)
            wide = data[:1] == b"\x01"
            if len(data) >= (12 if wide else 8):
                movie.fragment_duration = int.from_bytes(data[4:12] if wide else data[4:8], "big")
        elif kind == "trex" and box.type == "mvex":
            data = walker.leaf(child, 16)
            if len(data) >= 16:
                track_id, _, duration = struct.unpack(">III", data[4:16])
                movie.sample_durations[track_id] = duration
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
            track.sample_size = int.from_bytes(data[4:8], "big") if kind == "stsz" else 0
            track.stsz = box if kind == "stsz" else None
    elif kind in _TABLES and parent == "stbl":
        track.tables[kind] = box  # read only when needed, and bounded: these can hold millions of entries
        if kind == "stts":
            track.stts = box
    elif kind == "elst" and parent == "edts":
        track.elst = box  # FFmpeg keeps the last one it meets


def _parse_tkhd(data: bytes, track: _Track) -> None:
    wide = data[:1] == b"\x01"
    if len(data) >= 4:
        track.enabled = bool(int.from_bytes(data[1:4], "big") & 1)
    id_at = 4 + (16 if wide else 8)
    if len(data) >= id_at + 4:
        track.track_id = int.from_bytes(data[id_at : id_at + 4], "big")
    offset = 4 + (32 if wide else 20) + 16  # times and ids, then reserved/layer/group/volume
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
        if track.handler == "soun" or entry.type == "enca":
            _parse_audio_entry(walker, entry, depth, track)
            return
        visual = walker.leaf(entry, 78)
        if len(visual) >= 28:
            width, height = struct.unpack(">HH", visual[24:28])
            track.width, track.height = (width or None), (height or None)
        if len(visual) == 78:
            for config in walker.children(entry.payload + 78, entry.end, depth + 2, entry.type):
                parser = PARSERS.get(config.type)
                if parser is not None and track.pix_fmt is None:
                    track.pix_fmt = parser(walker.leaf(config, 4096))
                    if entry.type not in _PROTECTED:
                        break  # nothing else is needed from an ordinary entry: its other boxes are not walked
                elif config.type == "sinf" and entry.type in _PROTECTED:
                    _parse_sinf(walker, config, depth + 3, track)
        return


def _parse_audio_entry(walker: _Walker, entry: Box, depth: int, track: _Track) -> None:
    """An audio sample entry: only its protection matters here. Its boxes follow 28 bytes of fields (QuickTime's
    version 1 and 2 entries add 16 and 36)."""
    if entry.type not in _PROTECTED:
        return
    fields = walker.leaf(entry, 10)
    version = int.from_bytes(fields[8:10], "big") if len(fields) == 10 else 0
    start = entry.payload + 28 + {1: 16, 2: 36}.get(version, 0)
    for config in walker.children(start, entry.end, depth + 2, entry.type):
        if config.type == "sinf":
            _parse_sinf(walker, config, depth + 3, track)


def _parse_sinf(walker: _Walker, sinf: Box, depth: int, track: _Track) -> None:
    """Protection scheme information: frma names the codec the samples had before encryption, schm the scheme."""
    track.protection = track.protection or ""
    for child in walker.children(sinf.payload, sinf.end, depth, "sinf"):
        if child.type == "frma":
            data = walker.leaf(child, 4)
            if len(data) == 4:
                track.codec = _name(data)
        elif child.type == "schm":
            data = walker.leaf(child, 8)
            if len(data) == 8:
                track.protection = _name(data[4:8])


def _parse_moof(walker: _Walker, moof: Box, movie: _Movie) -> None:
    """Count the samples and their duration in one movie fragment, per track (tfhd, trun)."""
    movie.fragments += 1
    for traf in walker.children(moof.payload, moof.end, 1, "moof"):
        if traf.type != "traf":
            continue
        track: _Track | None = None
        default_duration = 0
        for child in walker.children(traf.payload, traf.end, 2, "traf"):
            if child.type == "tfhd":
                data = walker.leaf(child, 32)
                if len(data) < 8:
                    continue
                flags = int.from_bytes(data[1:4], "big")
                track = movie.track(int.from_bytes(data[4:8], "big"))
                default_duration = movie.sample_durations.get(track.track_id or 0, 0) if track else 0
                # Optional fields in order: base data offset (8), sample description index (4), default duration.
                at = 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
                if flags & 0x08 and len(data) >= at + 4:
                    default_duration = int.from_bytes(data[at : at + 4], "big")
            elif child.type == "trun" and track is not None:
                samples, duration = _read_trun(walker, child, default_duration)
                track.fragment_samples += samples
                if duration is None:
                    movie.fragment_durations_known = False
                else:
                    track.fragment_duration += duration


def _read_trun(walker: _Walker, box: Box, default_duration: int) -> tuple[int, int | None]:
    """(sample count, total duration) of a track run: per-sample durations when the run has them, else the default.

    The duration is None when the run lists more per-sample records than a probe reads.
    """
    head = walker.leaf(box, 8)
    if len(head) < 8:
        return 0, 0
    flags, count = int.from_bytes(head[1:4], "big"), int.from_bytes(head[4:8], "big")
    if not flags & 0x100:
        return count, count * default_duration
    fields = 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
    start = 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
    count = min(count, (box.size - box.header - start) // fields)
    if count * fields > MAX_TABLE_BYTES:
        return count, None
    data = walker.read(box.payload + start, count * fields)
    words = struct.unpack(f">{count * fields // 4}I", data)
    return count, sum(words[0 :: fields // 4])


def _no_video(movie: _Movie) -> str:
    """Why a movie is no video, with what it holds instead, so an audio-only file is recognised as one."""
    kinds = [t.handler or "unknown" for t in movie.tracks]
    if not kinds:
        return "no video track: the movie has no tracks"
    audio = [t for t in movie.tracks if t.handler == "soun"]
    if len(audio) == len(kinds):
        codecs = ", ".join(sorted({t.codec for t in audio if t.codec})) or "unknown codec"
        tracks = "1 audio track" if len(audio) == 1 else f"{len(audio)} audio tracks"
        return f"no video track: an audio-only file ({tracks}, {codecs})"
    return f"no video track: the movie holds only {', '.join(repr(k) for k in kinds)} tracks"


def _primary_video(movie: _Movie) -> _Track | None:
    """The first enabled video track, as players choose; the first video track when none is enabled."""
    videos = [t for t in movie.tracks if t.handler == "vide"]
    return next((t for t in videos if t.enabled), videos[0] if videos else None)


def _describe_video(movie: _Movie, facts: MediaFacts) -> _Track | None:
    """The facts the primary video track's headers state; returns that track, or None for a movie without video."""
    video = _primary_video(movie)
    if video is None:
        return None
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
    return video


def _check_movie(walker: _Walker, movie: _Movie, video: _Track, facts: MediaFacts, walked_to_end: bool) -> None:
    """What the headers say about the file as a whole: the track chosen, protection, fragments, sample data bounds."""
    videos = [t for t in movie.tracks if t.handler == "vide"]
    if len(videos) > 1:
        facts.notes.append(
            f"{len(videos)} video tracks: the facts describe track {video.track_id}, "
            + ("the first enabled one" if video.enabled else "the first (none is enabled)")
        )
    for track in movie.tracks:
        if track is not video and track.protection is not None:
            facts.notes.append(f"track {track.track_id} ({track.handler or 'unknown'}) is encrypted{_scheme(track)}")
    if video.protection is not None:
        raise ProbeError(
            f"encrypted video: track {video.track_id} is protected{_scheme(video)} (original codec {video.codec}); "
            "it cannot be decoded without its key"
        )
    samples, decode_time = _stts_totals(walker, video.stts) if video.stts is not None else (0, 0)
    if video.timescale and video.duration:
        _apply_presented_duration(walker, movie, video, decode_time, facts)
    if movie.fragmented:
        _count_fragments(movie, video, facts, walked_to_end)
    elif facts.frames is None:
        facts.frames = samples or None  # stsz without a count: the samples stts times
    for track in movie.tracks:
        _check_sample_data(walker, track, walker.reader.size)


def _apply_presented_duration(
    walker: _Walker, movie: _Movie, video: _Track, decode_time: int, facts: MediaFacts
) -> None:
    """The track's duration as FFmpeg reports it: the smallest of the media duration (mdhd), the samples' total decode
    time (stts) and the edit list's total (empty edits included), in the track's timescale.

    With B-frames, writers put the composition delay into mdhd, so mdhd alone reads a frame or two too long; an edit
    list that trims the media shortens what is presented.
    """
    duration = video.duration
    if decode_time:
        duration = min(duration, decode_time)
    if video.elst is not None and movie.timescale:
        try:
            edits = _edits(walker, video.elst, [MAX_TABLE_BYTES])
        except KeyFrameError:
            edits = []
        if edits:
            duration = min(duration, sum(rescale(e.duration, video.timescale, movie.timescale) for e in edits))
    facts.duration_s = duration / video.timescale


def _scheme(track: _Track) -> str:
    return f" with scheme {track.protection!r}" if track.protection else ""


def _count_fragments(movie: _Movie, video: _Track, facts: MediaFacts, walked_to_end: bool) -> None:
    """Frames and duration of a fragmented file: exact when every fragment was read, from mehd otherwise."""
    samples = video.sample_count + video.fragment_samples
    if walked_to_end and samples == 0:
        raise ProbeError(
            "DASH initialisation segment: the file holds the movie header and no media samples "
            "(the frames are in separate segment files)"
        )
    if walked_to_end:
        facts.frames = samples
        facts.duration_s = None
        if video.timescale and movie.fragment_durations_known:
            moov_duration = video.duration if video.sample_count else 0
            facts.duration_s = (moov_duration + video.fragment_duration) / video.timescale
    else:
        facts.frames = None
        facts.notes.append(
            f"fragmented: frame count not in moov (only the first {movie.fragments} fragment(s) were read)"
        )
        facts.duration_s = None
    if movie.fragment_duration and movie.timescale:
        facts.duration_s = movie.fragment_duration / movie.timescale


def _table(walker: _Walker, box: Box, entry_size: int, budget: list[int], *, header: int = 8) -> tuple[int, bytes]:
    """(entry count, entry bytes) of a full box laid out as version/flags, an entry count, then the entries.

    The count is clipped to what the box can hold, and the bytes are charged to `budget` ([bytes left]): a table
    larger than what is left is refused rather than read.
    """
    head = walker.leaf(box, header)
    if len(head) < header:
        return 0, b""
    count = min(int.from_bytes(head[header - 4 : header], "big"), (box.size - box.header - header) // entry_size)
    size = count * entry_size
    if size > budget[0]:
        raise KeyFrameError(
            f"its sample tables are larger than the {MAX_TABLE_BYTES // (1024 * 1024)} MiB a probe reads"
        )
    budget[0] -= size
    return count, walker.read(box.payload + header, size)


def _stts_totals(walker: _Walker, box: Box) -> tuple[int, int]:
    """(samples, total decode time) from stts; (0, 0) when the table is too large to read in a probe."""
    try:
        count, data = _table(walker, box, 8, [MAX_TABLE_BYTES])
    except KeyFrameError:
        return 0, 0
    # (sample_count, sample_delta) pairs of 32-bit big-endian words, summed in C where it can: an stts of a million
    # entries would otherwise be a million Python iterations.
    words = struct.unpack(f">{count * 2}I", data)
    counts, deltas = words[0::2], words[1::2]
    if len(set(deltas)) <= 1:
        return sum(counts), sum(counts) * (deltas[0] if deltas else 0)
    return sum(counts), sum(map(operator.mul, counts, deltas))


def _check_sample_data(walker: _Walker, track: _Track, file_size: int) -> None:
    """Refuse a track whose sample table places data past the end of the file, as a cut-off upload leaves it.

    The chunk that starts last is checked: its offset (stco/co64) plus the sizes of its samples (stsc, stsz) must lie
    within the file. A demuxer meets such data only when it reaches it, and then fails ("partial file"), so the file
    is recorded as unreadable now rather than trusted until someone plays it to the end.
    """
    offsets_box = track.tables.get("co64") or track.tables.get("stco")
    stsc = track.tables.get("stsc")
    if offsets_box is None or stsc is None or not track.sample_count:
        return
    budget = [MAX_TABLE_BYTES]
    try:
        wide = offsets_box.type == "co64"
        chunks, raw = _table(walker, offsets_box, 8 if wide else 4, budget)
        runs_count, runs_raw = _table(walker, stsc, 12, budget)
    except KeyFrameError:
        return  # tables too large to check within a probe: the file is given the benefit of the doubt
    if not chunks or not runs_count:
        return
    offsets = struct.unpack(f">{chunks}{'Q' if wide else 'I'}", raw)
    last = max(range(chunks), key=offsets.__getitem__)
    runs = struct.unpack(f">{runs_count * 3}I", runs_raw)
    first_sample, per_chunk = _chunk_samples(runs, last)
    if per_chunk == 0:
        return
    if track.sample_size:
        size = per_chunk * track.sample_size
    elif track.stsz is not None and first_sample + per_chunk <= track.sample_count:
        data = walker.read(track.stsz.payload + 12 + 4 * first_sample, 4 * per_chunk)
        size = sum(struct.unpack(f">{per_chunk}I", data))
    else:
        size = 0
    end = offsets[last] + size
    if end > file_size:
        raise ProbeError(
            f"damaged MP4: track {track.track_id} ({track.handler or 'unknown'}) has sample data past the end of the "
            f"file: chunk {last + 1} at offset {offsets[last]} holds {size} bytes, up to byte {end}, but the file has "
            f"{file_size} bytes (a demuxer stops there with 'partial file')"
        )


def _chunk_samples(runs: tuple[int, ...], chunk: int) -> tuple[int, int]:
    """(first sample, sample count) of 0-based `chunk`, from stsc (first_chunk, samples_per_chunk, description) runs."""
    first_sample = 0
    for i in range(0, len(runs), 3):
        first, per_chunk = runs[i], runs[i + 1]
        following = runs[i + 3] if i + 3 < len(runs) else None
        run_end = (following - 1) if following is not None else chunk + 1  # chunks [first - 1, run_end)
        if chunk < run_end:
            return first_sample + (chunk - (first - 1)) * per_chunk, per_chunk
        first_sample += max(0, run_end - (first - 1)) * per_chunk
    return first_sample, 0


def _index_key_frames(walker: _Walker, movie: _Movie, video: _Track, facts: MediaFacts) -> None:
    """List the key frames of a CVAT video manifest from the tables; a video without them says why in its notes."""
    first_video = next(t for t in movie.tracks if t.handler == "vide")
    reason: str | None = None
    if movie.fragmented:
        reason = "a fragmented MP4 keeps its key frames in the fragments, not in moov"
    elif first_video is not video:
        reason = f"CVAT decodes the first video track ({first_video.track_id}), which is not the enabled one"
    else:
        try:
            found = cvat_keyframes(_sample_tables(walker, movie, video))
        except (KeyFrameError, ProbeBudgetExceeded) as exc:
            reason = str(exc)
        else:
            if found.keyframes:
                facts.keyframes, facts.decoded_frames = found.keyframes, found.length
            else:
                reason = "no key frame can be reached by seeking to it, so CVAT would list none"
    if reason is not None:
        facts.notes.append(f"no CVAT video manifest: {reason}")


def _sample_tables(walker: _Walker, movie: _Movie, video: _Track) -> SampleTables:
    """The primary video track's timing and sync tables, read within MAX_TABLE_BYTES."""
    if video.stts is None:
        raise KeyFrameError("the video track has no decode times (no stts)")
    if video.sample_count > MAX_INDEXED_SAMPLES:
        raise KeyFrameError(f"its {video.sample_count} frames are more than a probe indexes ({MAX_INDEXED_SAMPLES})")
    budget = [MAX_TABLE_BYTES]
    count, data = _table(walker, video.stts, 8, budget)
    words = struct.unpack(f">{count * 2}I", data)
    time_to_sample = list(zip(words[0::2], words[1::2], strict=True))
    composition: list[tuple[int, int]] | None = None
    if "ctts" in video.tables:
        count, data = _table(walker, video.tables["ctts"], 8, budget)
        # Offsets are read as signed whatever the box version says, as FFmpeg reads them.
        words = struct.unpack(f">{count * 2}i", data)
        composition = [(run & 0xFFFFFFFF, offset) for run, offset in zip(words[0::2], words[1::2], strict=True)]
    sync: tuple[int, ...] | None = None
    if "stss" in video.tables:
        count, data = _table(walker, video.tables["stss"], 4, budget)
        sync = struct.unpack(f">{count}I", data)
    return SampleTables(
        sample_count=video.sample_count,
        time_to_sample=time_to_sample,
        composition_offsets=composition,
        sync_samples=sync,
        edits=_edits(walker, video.elst, budget) if video.elst is not None else [],
        track_timescale=video.timescale,
        movie_timescale=movie.timescale,
    )


def _edits(walker: _Walker, box: Box, budget: list[int]) -> list[Edit]:
    """elst entries: (segment duration, media time) of 32 bits, or 64 bits in version 1; the rate is not used."""
    wide = walker.leaf(box, 1)[:1] == b"\x01"
    count, data = _table(walker, box, 20 if wide else 12, budget)
    layout = ">Qq4x" if wide else ">Ii4x"
    step = 20 if wide else 12
    return [Edit(*struct.unpack(layout, data[i : i + step])) for i in range(0, count * step, step)]
