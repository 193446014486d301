"""MP4 files for the video tests: encoded with PyAV, edited box by box, and read back the way CVAT reads them.

Generated here rather than with demo/synth.py because these tests need encoder settings the demo never uses
(B-frames, GOP sizes, fragmenting, encryption, several tracks) and byte-level edits of the boxes. `cvat_reference` is
the oracle for key frames: it decodes every frame with PyAV the way CVAT's `VideoStreamReader` does
(utils/dataset_manifest/core.py), so a header-only computation is checked against a real decoder, not against itself.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: A key and key id for CENC test files (ffmpeg's mov muxer encrypts with them); not a secret of anything.
CENC_KEY = "00112233445566778899aabbccddeeff"
CENC_OPTIONS = {
    "encryption_scheme": "cenc-aes-ctr",
    "encryption_key": CENC_KEY,
    "encryption_kid": "ffeeddccbbaa99887766554433221100",
}
_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf"})


def encode(
    *,
    codec: str = "libx264",
    frames: int = 12,
    fps: int = 25,
    gop: int = 5,
    bframes: int = 2,
    width: int = 64,
    height: int = 48,
    moov_last: bool = True,
    movflags: str | None = None,
    rotation: int = 0,
    audio: bool = False,
    video_tracks: int = 1,
    options: dict[str, str] | None = None,
    seed: int = 1,
) -> bytes:
    """An MP4 with `frames` frames of seeded noise per video track (noise keeps every frame distinct for the md5s).

    libx264 gets a fixed GOP (`gop`, no scene cuts) and `bframes` B-frames; mpeg4 gets the same through the codec
    context. ffmpeg writes moov last unless `moov_last=False`, and an edit list whenever B-frames delay the first pts.
    """
    muxer: dict[str, str] = dict(options or {})
    flags = [movflags] if movflags else []
    if not moov_last:
        flags.append("+faststart")
    if flags:
        muxer["movflags"] = "+".join(f.lstrip("+") for f in flags)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"  # faststart rewrites the file, so it needs a real one
        with av.open(str(path), "w", format="mp4", options=muxer) as out:
            streams = []
            for track in range(video_tracks):
                stream = out.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = width + 32 * track, height + 16 * track, "yuv420p"
                stream.codec_context.thread_count = 1
                if codec == "libx264":
                    params = f"bframes={bframes}:keyint={gop}:min-keyint={gop}:scenecut=0"
                    stream.options = {"preset": "veryfast", "x264-params": params}
                else:
                    stream.codec_context.gop_size = gop
                    stream.codec_context.max_b_frames = bframes
                if rotation:
                    stream.set_display_rotation(-rotation)  # PyAV counts counter-clockwise
                streams.append(stream)
            sound = out.add_stream("aac", rate=44100) if audio else None
            rng = np.random.default_rng(seed)
            for index in range(frames):
                for stream in streams:
                    pixels = rng.integers(0, 255, (stream.height, stream.width, 3), dtype=np.uint8)
                    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
                    frame.pts, frame.time_base = index, Fraction(1, fps)
                    out.mux(stream.encode(frame))
                if sound is not None:
                    samples = 44100 // fps
                    chunk = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
                    chunk.sample_rate, chunk.pts, chunk.time_base = 44100, index * samples, Fraction(1, 44100)
                    out.mux(sound.encode(chunk))
            for stream in streams:
                out.mux(stream.encode(None))
            if sound is not None:
                out.mux(sound.encode(None))
        return path.read_bytes()


# -- boxes ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    type: bytes
    offset: int
    header: int
    size: int
    path: tuple[int, ...]  # offsets of the enclosing boxes, outermost first

    @property
    def payload(self) -> int:
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size


def boxes(data: bytes, start: int = 0, end: int | None = None, path: tuple[int, ...] = ()) -> list[Box]:
    """Every box of the file, depth first, with the offsets of its ancestors."""
    end = len(data) if end is None else end
    found: list[Box] = []
    pos = start
    while end - pos >= 8:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        box = Box(kind, pos, header, size, path)
        found.append(box)
        if kind in _CONTAINERS:
            found.extend(boxes(data, box.payload, box.end, (*path, pos)))
        pos += size
    return found


def find(data: bytes, kind: bytes, nth: int = 0) -> Box:
    return [b for b in boxes(data) if b.type == kind][nth]


def replace(data: bytes, box: Box, payload: bytes, *, kind: bytes | None = None) -> bytes:
    """`data` with `box`'s payload replaced, the sizes of its ancestors adjusted; only for files with moov last.

    Chunk offsets (stco) are absolute, so growing a box in front of the media data would move the samples away from
    them: the edits are made where nothing after them is addressed by offset.
    """
    same_size = len(payload) == box.size - box.header
    assert same_size or find(data, b"mdat").offset < box.offset, "resizing a box before mdat would break stco"
    new = struct.pack(">I", 8 + len(payload)) + (kind or box.type) + payload
    delta = len(new) - box.size
    out = bytearray(data[: box.offset] + new + data[box.end :])
    for ancestor in box.path:
        size = struct.unpack(">I", out[ancestor : ancestor + 4])[0]
        out[ancestor : ancestor + 4] = struct.pack(">I", size + delta)
    return bytes(out)


def set_edit_list(data: bytes, edits: list[tuple[int, int]], *, version: int = 0) -> bytes:
    """The video track's elst replaced by (segment duration in movie units, media time in track units) entries."""
    body = struct.pack(">I", version << 24) + struct.pack(">I", len(edits))
    for duration, media_time in edits:
        layout = ">QqI" if version == 1 else ">IiI"
        body += struct.pack(layout, duration, media_time, 0x10000)
    return replace(data, find(data, b"elst"), body)


def drop_edit_list(data: bytes) -> bytes:
    """The edts box renamed 'free': the track then has no edit list, its bytes stay in place."""
    edts = find(data, b"edts")
    return data[: edts.offset + 4] + b"free" + data[edts.offset + 8 :]


def shift_composition_offsets(data: bytes, delta: int) -> bytes:
    """Every ctts offset moved by `delta`: the same frames, presented later relative to their decode times."""
    ctts = find(data, b"ctts")
    out = bytearray(data)
    count = struct.unpack(">I", data[ctts.payload + 4 : ctts.payload + 8])[0]
    for entry in range(count):
        at = ctts.payload + 8 + 8 * entry + 4
        (offset,) = struct.unpack(">i", data[at : at + 4])
        out[at : at + 4] = struct.pack(">i", offset + delta)
    return bytes(out)


def movie_timescale(data: bytes) -> int:
    mvhd = find(data, b"mvhd")
    return struct.unpack(">I", data[mvhd.payload + 12 : mvhd.payload + 16])[0]


def first_edit(data: bytes) -> tuple[int, int]:
    """(segment duration, media time) of the first elst entry, as ffmpeg wrote it."""
    elst = find(data, b"elst")
    return struct.unpack(">Ii", data[elst.payload + 8 : elst.payload + 16])


# -- the oracle ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CvatVideo:
    """What CVAT's manifest writer records for a video: its key frame rows, frame count and resolution."""

    keyframes: list[tuple[int, int]]
    length: int
    resolution: tuple[int, int]


def _digest(frame: av.VideoFrame) -> str:
    return hashlib.md5(frame.to_ndarray().tobytes()).hexdigest()


def cvat_reference(data: bytes) -> CvatVideo:
    """Decode `data` as CVAT does to write a video manifest, and return what it would record.

    Frames are numbered in decoder output order; a decoded key frame becomes a row only when a second reader, seeked to
    its pts on the video stream (PyAV's default: backward, to a key frame), first decodes a frame with the same pts and
    the same pixels. The resolution is the first frame's, turned only when the stream carries a 'rotate' tag, which
    FFmpeg no longer exports (the rotation lives in a display matrix), so it is the stored size. CVAT refuses a video
    whose presentation times do not increase; so does this, with an AssertionError.
    """
    with av.open(io.BytesIO(data)) as reading, av.open(io.BytesIO(data)) as checking:
        stream = next(s for s in reading.streams if s.type == "video")
        checked = next(s for s in checking.streams if s.type == "video")
        stream.thread_type = checked.thread_type = "AUTO"
        rows: list[tuple[int, int]] = []
        index = 0
        previous: int | None = None
        resolution: tuple[int, int] | None = None
        for packet in reading.demux(stream):
            for frame in packet.decode():
                assert previous is None or frame.pts > previous, "CVAT refuses non-increasing presentation times"
                previous = frame.pts
                if resolution is None:
                    rotate = stream.metadata.get("rotate")
                    turned = bool(rotate) and int(rotate) % 180 == 90
                    resolution = (frame.height, frame.width) if turned else (frame.width, frame.height)
                if frame.key_frame:
                    checking.seek(frame.pts, stream=checked)
                    first = next((f for p in checking.demux(checked) for f in p.decode()), None)
                    if first is not None and first.pts == frame.pts and _digest(first) == _digest(frame):
                        rows.append((index, frame.pts))
                index += 1
    assert resolution is not None, "the video decodes to no frame"
    return CvatVideo(keyframes=rows, length=index, resolution=resolution)


def decoded_frames(data: bytes, **options: str) -> int:
    """How many frames PyAV decodes from the first video stream; raises what the decoder raises."""
    with av.open(io.BytesIO(data), options=options) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream))
