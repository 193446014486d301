"""Video probing: brands, codecs, pixel formats, rotation and moov position, checked against PyAV's demuxer."""

from __future__ import annotations

import io
import struct

import av
import pytest

from demo import synth
from media.facts import MediaFacts
from media.pixel_format import from_av1c, from_avcc, from_hvcc, from_vpcc
from media.probe import probe
from media.ranges import FIRST_READ, RangeReader

KIB = 1024


def probe_bytes(data: bytes) -> MediaFacts:
    return probe(RangeReader.from_bytes(data))


def reference(data: bytes) -> dict[str, object]:
    """What ffmpeg (through PyAV) says about the file: the independent oracle for our box walker."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        first = next(container.decode(stream))
        return {
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "pix_fmt": stream.codec_context.pix_fmt,
            "frames": stream.frames,
            "duration_s": float(stream.duration * stream.time_base),
            "codec_tag": stream.codec_context.codec_tag,
            "rotation": (-first.rotation) % 360,  # PyAV counts counter-clockwise
        }


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


@pytest.mark.parametrize(
    ("kwargs", "fmt", "brand"),
    [
        ({"brand": "mp42"}, "mp4", "mp42"),
        ({"brand": "isom"}, "mp4", "isom"),
        ({"brand": None}, "mp4", "isom"),
        ({"brand": "mp42", "pix_fmt": "yuv444p"}, "mp4", "mp42"),
        ({"brand": "mp42", "pix_fmt": "yuv422p"}, "mp4", "mp42"),
        ({"brand": "mp42", "moov_last": True}, "mp4", "mp42"),
        ({"brand": "mp42", "width": 96, "height": 64, "frames": 23, "fps": 25}, "mp4", "mp42"),
    ],
)
def test_mp4_facts_match_ffmpeg(kwargs: dict[str, object], fmt: str, brand: str) -> None:
    data = synth.mp4(**kwargs)  # type: ignore[arg-type]
    facts = probe_bytes(data)
    ref = reference(data)
    assert facts.error is None
    assert (facts.kind, facts.format, facts.major_brand) == ("video", fmt, brand)
    assert brand in facts.compatible_brands or brand == "isom"
    assert all(len(b) == 4 for b in facts.compatible_brands)
    assert facts.codec == ref["codec_tag"] == "avc1"
    assert facts.pix_fmt == ref["pix_fmt"] == kwargs.get("pix_fmt", "yuv420p")
    assert (facts.width, facts.height) == (ref["width"], ref["height"])
    assert facts.frames == ref["frames"] == kwargs.get("frames", 10)
    assert facts.duration_s == pytest.approx(ref["duration_s"])
    assert facts.rotation == 0


def test_moov_position_is_what_we_asked_for() -> None:
    first, last = synth.mp4(moov_last=False), synth.mp4(moov_last=True)
    assert first.index(b"moov") < first.index(b"mdat")
    assert last.index(b"mdat") < last.index(b"moov")


def test_quicktime_movie() -> None:
    data = synth.mov(pix_fmt="yuv420p", frames=7)
    facts = probe_bytes(data)
    assert facts.error is None
    assert (facts.kind, facts.format, facts.major_brand) == ("video", "mov", "qt  ")
    assert facts.compatible_brands == ["qt  "]
    assert (facts.codec, facts.pix_fmt, facts.frames) == ("avc1", "yuv420p", 7)


def test_quicktime_without_ftyp_is_mov() -> None:
    data = synth.mov()
    start = data.index(b"ftyp") - 4
    size = int.from_bytes(data[start : start + 4], "big")
    # A 'wide' and a 'free' box take the ftyp's place byte for byte, so the chunk offsets in stco (absolute) still
    # point at the samples: the sample data check would rightly call the file damaged otherwise.
    without_ftyp = data[:start] + box(b"wide") + box(b"free", bytes(size - 16)) + data[start + size :]
    facts = probe_bytes(without_ftyp)
    assert facts.error is None
    assert (facts.format, facts.major_brand, facts.kind) == ("mov", None, "video")


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_from_the_track_matrix(rotation: int) -> None:
    data = synth.mp4(rotation=rotation, width=64, height=48)
    facts = probe_bytes(data)
    assert facts.rotation == reference(data)["rotation"] == rotation
    swapped = rotation in (90, 270)
    assert (facts.display_width, facts.display_height) == ((48, 64) if swapped else (64, 48))
    assert (facts.width, facts.height) == (64, 48)


def test_moov_last_video_is_probed_without_downloading_it() -> None:
    data = synth.mp4(moov_last=True, width=640, height=480, frames=60)
    assert len(data) > 300 * KIB
    assert data.index(b"moov") > 64 * KIB
    facts = probe_bytes(data)
    assert facts.error is None
    assert facts.frames == 60 and facts.pix_fmt == "yuv420p"
    assert facts.requests <= 3
    assert facts.bytes_read < len(data) / 3


def test_moov_first_video_is_probed_from_its_head() -> None:
    data = synth.mp4(moov_last=False, width=480, height=360, frames=60)
    facts = probe_bytes(data)
    assert facts.error is None
    assert len(data) > FIRST_READ
    assert (facts.requests, facts.bytes_read) == (1, FIRST_READ)


def test_frames_fall_back_to_stts_when_stsz_has_no_count() -> None:
    data = bytearray(synth.mp4(frames=12))
    stsz = data.index(b"stsz")
    struct.pack_into(">I", data, stsz + 4 + 8, 0)  # sample_count after version/flags and sample_size
    facts = probe_bytes(bytes(data))
    assert facts.frames == 12


# -- decoder configuration records -----------------------------------------------------------------------------


def _escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes the way an encoder must (H.264 7.4.1)."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps(profile_idc: int, chroma_format_idc: int, bit_depth_minus8: int, sps_id: int = 0) -> bytes:
    """An SPS NAL start: profile, flags, level, then the ue(v) fields, padded with ones, escaped."""

    def ue(value: int) -> str:
        code = bin(value + 1)[2:]
        return "0" * (len(code) - 1) + code

    bits = ue(sps_id)
    if profile_idc in (100, 110, 122, 244):
        bits += ue(chroma_format_idc)
        if chroma_format_idc == 3:
            bits += "0"  # separate_colour_plane_flag
        bits += ue(bit_depth_minus8)
    bits += "1" * (-len(bits) % 8)
    body = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return b"\x67" + _escape(bytes([profile_idc, 0, 0]) + body)


def _avcc(sps: bytes) -> bytes:
    return bytes([1, sps[1], 0, 30, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps


@pytest.mark.parametrize(
    ("profile", "chroma", "depth", "expected"),
    [
        (66, 1, 0, "yuv420p"),
        (77, 1, 0, "yuv420p"),
        (100, 1, 0, "yuv420p"),
        (100, 0, 0, "gray"),
        (110, 1, 2, "yuv420p10le"),
        (122, 2, 0, "yuv422p"),
        (122, 2, 2, "yuv422p10le"),
        (244, 3, 0, "yuv444p"),
        (244, 3, 4, "yuv444p12le"),
    ],
)
def test_avcc_pixel_formats(profile: int, chroma: int, depth: int, expected: str) -> None:
    assert from_avcc(_avcc(_sps(profile, chroma, depth))) == expected


@pytest.mark.parametrize(("chroma", "depth", "expected"), [(3, 0, "yuv444p"), (2, 2, "yuv422p10le")])
def test_avcc_unescapes_emulation_prevention(chroma: int, depth: int, expected: str) -> None:
    # sps_id 255 starts the body with a zero byte right after a zero level_idc: the encoder must escape it.
    sps = _sps(244, chroma, depth, sps_id=255)
    assert b"\x00\x00\x03" in sps
    assert from_avcc(_avcc(sps)) == expected


def test_broken_avcc_gives_no_pixel_format() -> None:
    assert from_avcc(b"\x01") is None
    assert from_avcc(_avcc(_sps(100, 1, 0))[:9]) is None


def test_hevc_av1_vp9_records() -> None:
    hvcc = bytearray(23)
    hvcc[16], hvcc[17] = 0xFC | 1, 0xF8 | 2
    assert from_hvcc(bytes(hvcc)) == "yuv420p10le"
    hvcc[16], hvcc[17] = 0xFC | 3, 0xF8
    assert from_hvcc(bytes(hvcc)) == "yuv444p"
    # av1C byte 2: tier, high_bitdepth, twelve_bit, monochrome, subsampling_x, subsampling_y, position(2)
    assert from_av1c(bytes([0x81, 0x08, 0b0000_1100, 0])) == "yuv420p"
    assert from_av1c(bytes([0x81, 0x08, 0b0100_1100, 0])) == "yuv420p10le"
    assert from_av1c(bytes([0x81, 0x08, 0b0110_0000, 0])) == "yuv444p12le"
    assert from_av1c(bytes([0x81, 0x08, 0b0001_1100, 0])) == "gray"
    assert from_av1c(bytes([0x81, 0x08, 0b0000_1000, 0])) == "yuv422p"
    # vpcC v1: version/flags, profile, level, bitDepth(4) | chromaSubsampling(3) | fullRange(1)
    assert from_vpcc(bytes([1, 0, 0, 0, 0, 31, (8 << 4) | (1 << 1), 0])) == "yuv420p"
    assert from_vpcc(bytes([1, 0, 0, 0, 2, 31, (10 << 4) | (3 << 1), 0])) == "yuv444p10le"


def _hand_made_movie(handler: bytes, entry: bytes) -> bytes:
    """A minimal but well-formed moov with one track, for codecs our encoder does not produce."""
    mvhd = box(b"mvhd", bytes(12) + struct.pack(">II", 1000, 2000) + bytes(80))
    matrix = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    tkhd = box(b"tkhd", bytes(40) + matrix + struct.pack(">II", 1280 << 16, 720 << 16))
    mdhd = box(b"mdhd", bytes(12) + struct.pack(">II", 600, 1500) + bytes(4))
    hdlr = box(b"hdlr", bytes(8) + handler + bytes(13))
    stsd = box(b"stsd", bytes(4) + struct.pack(">I", 1) + entry)
    stsz = box(b"stsz", bytes(8) + struct.pack(">I", 75))
    stbl = box(b"stbl", stsd + stsz)
    minf = box(b"minf", box(b"vmhd", bytes(12)) + stbl)
    trak = box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + minf))
    ftyp = box(b"ftyp", b"mp42" + bytes(4) + b"mp42isom")
    return ftyp + box(b"moov", mvhd + trak) + box(b"mdat", bytes(100))


def _visual_entry(codec: bytes, config: bytes, width: int = 1280, height: int = 720) -> bytes:
    fields = bytes(24) + struct.pack(">HH", width, height) + bytes(50)
    return box(codec, fields + config)


@pytest.mark.parametrize(
    ("codec", "config", "expected"),
    [
        (b"hvc1", box(b"hvcC", bytes(16) + bytes([0xFD, 0xF8 | 2]) + bytes(5)), "yuv420p10le"),
        (b"av01", box(b"av1C", bytes([0x81, 0x08, 0b0000_1100, 0])), "yuv420p"),
        (b"vp09", box(b"vpcC", bytes([1, 0, 0, 0, 0, 31, (8 << 4) | 2, 0]) + bytes(4)), "yuv420p"),
        (b"mp4v", box(b"esds", bytes(20)), None),
    ],
)
def test_codecs_in_hand_made_movies(codec: bytes, config: bytes, expected: str | None) -> None:
    facts = probe_bytes(_hand_made_movie(b"vide", _visual_entry(codec, config)))
    assert facts.error is None
    assert (facts.kind, facts.codec, facts.pix_fmt) == ("video", codec.decode(), expected)
    assert (facts.width, facts.height, facts.frames) == (1280, 720, 75)
    assert facts.duration_s == pytest.approx(2.5)  # mdhd 1500/600 wins over mvhd 2000/1000


def test_size_falls_back_to_tkhd_when_the_sample_entry_has_none() -> None:
    facts = probe_bytes(_hand_made_movie(b"vide", _visual_entry(b"avc1", b"", width=0, height=0)))
    assert (facts.width, facts.height) == (1280, 720)


def test_heif_and_avif_are_images_in_an_iso_wrapper() -> None:
    heic = box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + box(b"meta", bytes(20))
    avif = box(b"ftyp", b"avif" + bytes(4) + b"avifmif1") + box(b"meta", bytes(20))
    # An empty meta box holds no image item: the format is still the fact (sizes: tests/unit/test_probe_heif.py).
    assert (probe_bytes(heic).kind, probe_bytes(heic).format) == ("image", "heic")
    assert (probe_bytes(avif).kind, probe_bytes(avif).format) == ("image", "avif")


@pytest.mark.parametrize(
    "pix_fmt", ["yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv420p10le"]
)
def test_pixel_format_matches_what_ffmpeg_reports_including_full_range(pix_fmt: str) -> None:
    """ffprobe (and so Vi's check) names full-range 8-bit H.264 'yuvj420p'; the SPS's VUI range flag must decide."""
    import io

    import av

    data = synth.mp4(pix_fmt=pix_fmt)
    with av.open(io.BytesIO(data)) as container:
        reported = container.streams.video[0].codec_context.pix_fmt
    assert reported == pix_fmt
    assert probe(RangeReader.from_bytes(data)).pix_fmt == reported


def test_full_range_video_breaks_the_strict_pixel_format_rule() -> None:
    from media.rules import judge

    facts = probe(RangeReader.from_bytes(synth.mp4(pix_fmt="yuvj420p")))
    assert [v.rule for v in judge(facts, "clips/full-range.mp4", "strict")] == ["mp4_pixel_format"]
