"""Hostile and broken input: probe never raises, records a specific reason, and stays within its byte budget."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from PIL import Image

from demo import synth
from media.facts import MediaFacts
from media.probe import READ_FAILED, probe
from media.ranges import FIRST_READ, ProbeWorkExceeded, RangeReader

KIB = 1024


def probe_bytes(data: bytes, **policy: int) -> MediaFacts:
    return probe(RangeReader.from_bytes(data, **policy))


def box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">I", 8 + len(payload) if size is None else size) + kind + payload


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_empty_object() -> None:
    facts = probe_bytes(b"")
    assert (facts.kind, facts.format, facts.error) == ("other", None, "empty object (0 bytes)")
    assert (facts.bytes_read, facts.requests, facts.head_sha256) == (0, 0, None)


def test_text_named_jpg() -> None:
    facts = probe(RangeReader.from_bytes(b"hello world, not a picture\n"), extension=".jpg")
    assert (facts.kind, facts.format) == ("other", None)
    assert facts.error == "not a recognised image or video (starts with b'hello wo')"
    assert facts.head_sha256 is not None


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_never_raise(seed: int) -> None:
    data = random.Random(seed).randbytes(random.Random(seed).randrange(1, 200_000))
    facts = probe_bytes(data)
    assert facts.error is not None
    assert facts.bytes_read <= len(data)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's TIFF parser warns on garbage, then fails
@pytest.mark.parametrize(
    "magic", [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\x00", b"MM\x00*", b"RIFF\x00\x01\x00\x00WEBP"]
)
@pytest.mark.parametrize("seed", range(15))
def test_random_bytes_behind_real_magic_never_raise(magic: bytes, seed: int) -> None:
    rng = random.Random(seed)
    data = magic + rng.randbytes(rng.randrange(0, 100_000))
    facts = probe_bytes(data)
    assert facts.error, facts
    assert len(facts.error) <= 300


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_jpeg_keeps_its_size_and_is_flagged(keep: float) -> None:
    data = synth.truncated(synth.jpeg(640, 480, orientation=6, exif_extra_bytes=2000), keep)
    facts = probe_bytes(data)
    assert facts.error == "truncated JPEG: no end-of-image marker"
    assert (facts.width, facts.height, facts.orientation) == (640, 480, 6)


def test_jpeg_cut_before_its_frame_header() -> None:
    full = synth.jpeg(640, 480, orientation=1, exif_extra_bytes=20_000)
    facts = probe_bytes(full[:10_000])  # inside the EXIF segment
    assert facts.error == "truncated JPEG: no SOF marker before end of file"
    assert (facts.kind, facts.format, facts.width) == ("image", "jpeg", None)


def test_jpeg_with_zero_padding_after_eoi_is_not_truncated() -> None:
    facts = probe_bytes(synth.jpeg(64, 48) + bytes(10))
    assert facts.error is None


def test_jpeg_with_garbage_instead_of_a_marker() -> None:
    app0 = b"\xff\xe0\x00\x10JFIF\x00" + bytes(9)  # length 16 covers the length field and 14 bytes
    facts = probe_bytes(b"\xff\xd8" + app0 + b"\x12\x34" + bytes(100))
    assert facts.error == "malformed JPEG: expected a marker at offset 20, found byte 0x12"


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.99])
def test_truncated_png(keep: float) -> None:
    facts = probe_bytes(synth.truncated(synth.png(200, 100), keep))
    assert facts.error == "truncated PNG: no IEND chunk at the end of the file"
    assert (facts.format, facts.width, facts.height) == ("png", 200, 100)


def test_png_cut_inside_its_header_chunks() -> None:
    data = synth.png(50, 40)
    facts = probe_bytes(data[:30])
    assert facts.error == "truncated PNG: no image data (IDAT) before end of file"


def test_truncated_webp() -> None:
    data = synth.webp(300, 200)
    facts = probe_bytes(data[: len(data) // 2])
    assert facts.error == f"truncated WebP: RIFF header declares {len(data)} bytes, the object has {len(data) // 2}"
    assert (facts.width, facts.height) == (300, 200)


def test_truncated_bmp() -> None:
    data = synth.bmp(300, 200)
    facts = probe_bytes(data[:1000])
    assert facts.error == f"truncated BMP: header declares {len(data)} bytes, the object has 1000"


def test_decompression_bomb_png_keeps_the_declared_size() -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    facts = probe_bytes(data)
    assert facts.error is not None
    assert facts.error.startswith("image declares 100000 x 100000 pixels, over the decompression-bomb limit")
    assert (facts.kind, facts.format, facts.width, facts.height) == ("image", "png", 100_000, 100_000)


def test_decompression_bomb_jpeg() -> None:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 65_000, 65_000, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + bytes([1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])
    data = b"\xff\xd8" + sof + sos + bytes(200) + b"\xff\xd9"
    facts = probe_bytes(data)
    assert facts.error is not None
    assert facts.error.startswith("image declares 65000 x 65000 pixels, over the decompression-bomb limit")
    assert (facts.width, facts.height, facts.mode) == (65_000, 65_000, "RGB")


def test_decompression_bomb_gif() -> None:
    screen = b"GIF89a" + struct.pack("<HHBBB", 60_000, 60_000, 0, 0, 0)
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, 60_000, 60_000, 0) + b"\x02\x02\x44\x01\x00;"
    facts = probe_bytes(screen + descriptor)
    assert facts.error is not None
    assert facts.error.startswith("image declares 60000 x 60000 pixels, over the decompression-bomb limit")
    assert (facts.format, facts.width, facts.height) == ("gif", 60_000, 60_000)


def test_twelve_bit_jpeg_is_unreadable() -> None:
    sof = b"\xff\xc1" + struct.pack(">HBHHB", 11, 12, 10, 10, 1) + bytes([1, 0x11, 0])
    facts = probe_bytes(b"\xff\xd8" + sof + b"\xff\xd9")
    assert facts.error == "12-bit JPEG: common decoders (browsers, Pillow) cannot read it"


@pytest.mark.parametrize("moov_last", [False, True])
def test_truncated_mp4(moov_last: bool) -> None:
    full = synth.mp4(moov_last=moov_last, width=320, height=240, frames=30)
    data = synth.truncated(full, 0.6)
    facts = probe_bytes(data)
    mdat = full.index(b"mdat") - 4
    size = int.from_bytes(full[mdat : mdat + 4], "big")
    assert facts.error == (
        f"truncated MP4: box 'mdat' at offset {mdat} claims {size} bytes, past the end of the file ({len(data)} bytes)"
    )
    # With the moov in front, what it said is kept; with the moov lost, nothing claims to be a video.
    assert facts.kind == ("other" if moov_last else "video")
    if not moov_last:
        assert (facts.codec, facts.width, facts.frames) == ("avc1", 320, 30)


def test_nested_box_past_the_end_of_the_file() -> None:
    stsd = box(b"stsd", bytes(8), size=99_999_999)
    moov = box(b"moov", box(b"trak", box(b"mdia", box(b"minf", box(b"stbl", stsd)))), size=0)
    data = box(b"ftyp", b"isom" + bytes(4)) + moov
    facts = probe_bytes(data)
    offset = data.index(b"stsd") - 4
    assert facts.error == f"box 'stsd' at offset {offset} claims 99999999 bytes, past the end of the file (72 bytes)"


def test_nested_box_past_the_end_of_its_parent() -> None:
    inner = box(b"mvhd", bytes(8), size=40)
    data = box(b"ftyp", b"mp42" + bytes(4)) + box(b"moov", inner) + box(b"free", bytes(64))
    facts = probe_bytes(data)
    assert facts.error == "box 'mvhd' at offset 24 claims 40 bytes, past the end of its parent 'moov'"


@pytest.mark.parametrize("bad_size", [2, 4, 7])
def test_box_size_below_its_header(bad_size: int) -> None:
    data = box(b"ftyp", b"mp42" + bytes(4)) + box(b"moov", bytes(16), size=bad_size)
    facts = probe_bytes(data)
    assert facts.error == f"box 'moov' at offset 16 has an invalid size of {bad_size} bytes"


def test_largesize_below_its_header() -> None:
    data = box(b"ftyp", b"mp42" + bytes(4)) + struct.pack(">I4sQ", 1, b"moov", 12) + bytes(16)
    assert probe_bytes(data).error == "box 'moov' at offset 16 has an invalid size of 12 bytes"


def test_size_zero_boxes_end_the_walk() -> None:
    # A size-0 box runs to the end of its parent: a chain of them must end, not loop.
    data = box(b"ftyp", b"mp42" + bytes(4)) + box(b"free", size=0) + box(b"free", size=0) * 50
    facts = probe_bytes(data)
    assert facts.error == "no moov box: not a playable MP4"
    assert facts.format == "mp4"


def test_deep_nesting_is_refused() -> None:
    inner = box(b"trak")
    for _ in range(40):
        inner = box(b"trak", inner)
    data = box(b"ftyp", b"mp42" + bytes(4)) + box(b"moov", inner)
    facts = probe_bytes(data)
    assert facts.error is not None
    assert facts.error.startswith("boxes nested deeper than 16 levels (inside 'trak' at offset")


def test_too_many_boxes_is_refused() -> None:
    data = box(b"ftyp", b"mp42" + bytes(4)) + box(b"moov", box(b"free") * 10_500)
    facts = probe_bytes(data)
    assert facts.error is not None
    assert facts.error.startswith("more than 10000 boxes: refusing to walk further")


def test_no_moov() -> None:
    data = box(b"ftyp", b"mp42" + bytes(4) + b"mp42") + box(b"mdat", bytes(1000))
    facts = probe_bytes(data)
    assert facts.error == "no moov box: not a playable MP4"
    assert (facts.kind, facts.format, facts.major_brand) == ("other", "mp4", "mp42")


def test_audio_only_mp4_is_not_a_video() -> None:
    hdlr = box(b"hdlr", bytes(8) + b"soun" + bytes(13))
    moov = box(b"moov", box(b"trak", box(b"mdia", hdlr)))
    facts = probe_bytes(box(b"ftyp", b"M4A " + bytes(4)) + moov)
    assert facts.error == "no video track: an audio-only file (1 audio track, unknown codec)"
    assert facts.kind == "other"


def test_hostile_box_type_is_escaped_in_the_message() -> None:
    data = box(b"ftyp", b"mp42" + bytes(4)) + struct.pack(">I", 3) + b"\x1b[2J" + bytes(8)
    facts = probe_bytes(data)
    assert facts.error == "box '1b5b324a' at offset 16 has an invalid size of 3 bytes"


def test_budget_exceeded_is_a_fact_not_an_exception() -> None:
    # A moov far from the head, in a reader with a budget too small to reach it.
    data = box(b"ftyp", b"mp42" + bytes(4)) + box(b"mdat", bytes(600 * KIB)) + box(b"moov", bytes(100 * KIB))
    facts = probe_bytes(data, max_bytes=64 * KIB)
    assert facts.error is not None
    assert facts.error.startswith("probe would read")
    assert "over its budget of 65536 bytes" in facts.error
    assert facts.bytes_read <= 64 * KIB


def test_fetch_failure_is_recorded_as_a_read_failure() -> None:
    def fetch(start: int, end: int) -> bytes:
        raise TimeoutError("slow bucket")

    facts = probe(RangeReader(fetch, 1000))
    assert facts.error is not None
    assert facts.error.startswith(READ_FAILED)
    assert "TimeoutError: slow bucket" in facts.error


# -- work bounded by the bytes given: no per-byte Python loop, no loop that runs on cached bytes forever ----------


def counted_probe(data: bytes, **policy: int) -> tuple[MediaFacts, RangeReader]:
    reader = RangeReader.from_bytes(data, **policy)
    return probe(reader), reader


def test_jpeg_long_fill_run_is_refused_in_one_read() -> None:
    # SOI then 8 MiB of 0xFF: every byte is a legal-looking fill byte; this used to cost one read per byte (~40 s).
    facts, reader = counted_probe(b"\xff\xd8" + b"\xff" * (8 * 1024 * KIB))
    assert facts.error == (
        "malformed JPEG: more than 4096 fill bytes (0xFF) from offset 2; a marker should follow within a few"
    )
    assert (facts.bytes_read, facts.requests) == (FIRST_READ, 1)
    assert reader.reads <= 4


def test_jpeg_fill_bytes_before_a_marker_are_still_allowed() -> None:
    data = synth.jpeg(64, 48)
    padded = data[:2] + b"\xff" * 4096 + data[2:]  # the longest run allowed, in front of the first marker
    facts, reader = counted_probe(padded)
    assert facts.error is None
    assert (facts.width, facts.height) == (64, 48)
    assert reader.reads < 50


def test_jpeg_fill_run_to_the_end_of_the_file_is_a_truncation() -> None:
    facts, reader = counted_probe(b"\xff\xd8" + b"\xff" * 1000)
    assert facts.error == "truncated JPEG: no SOF marker before end of file"
    assert reader.reads <= 4


def test_jpeg_of_endless_empty_segments_is_refused() -> None:
    # Empty COM segments (4 bytes each): the walk is bounded by a segment count, not by the 2 MiB of them.
    facts, reader = counted_probe(b"\xff\xd8" + b"\xff\xfe\x00\x02" * (512 * KIB))
    assert facts.error == "malformed JPEG: more than 4096 marker segments before the frame header (at offset 16386)"
    assert reader.reads <= 2 * 4096 + 2
    assert facts.bytes_read <= 64 * KIB


def test_png_of_tiny_chunks_is_refused_after_a_bounded_number_of_reads() -> None:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"zzZz", b"") * 400_000 + png_chunk(b"IEND", b"")
    facts, reader = counted_probe(data)
    assert facts.error is not None
    assert facts.error.startswith("parser made more than 50000 reads (the last at offset")
    assert reader.reads == 50_001
    assert facts.bytes_read <= 2 * 1024 * KIB  # 12 bytes per chunk: a fraction of the 4.8 MB file


def test_gif_of_tiny_sub_blocks_is_refused_after_a_bounded_number_of_reads() -> None:
    screen = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
    data = screen + b"\x21\xfe" + b"\x01a" * 1_000_000 + b"\x00;"
    facts, reader = counted_probe(data)
    assert facts.error is not None
    assert facts.error.startswith("parser made more than 50000 reads")
    assert reader.reads == 50_001
    assert facts.bytes_read <= 256 * KIB


def test_reader_refuses_to_serve_the_same_cached_bytes_forever() -> None:
    # A structure that points back at the same bytes (TIFF tags sharing one data offset) costs no requests once
    # cached; the bytes handed to the parser are bounded as well.
    reader = RangeReader.from_bytes(bytes(1024 * KIB), max_served=4 * 1024 * KIB)
    for _ in range(4):
        reader.read_at(0, 1024 * KIB)
    with pytest.raises(ProbeWorkExceeded, match="more than 4194304 bytes in total"):
        reader.read_at(0, 1024 * KIB)
    assert (reader.requests, reader.bytes_read) == (3, 1024 * KIB)  # head, grown head, rest: each byte fetched once


def test_webp_exif_chunk_claiming_megabytes_reads_only_its_start() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + (99).to_bytes(3, "little") * 2
    payload = raw + bytes(6 * 1024 * KIB)  # the orientation first, then megabytes the probe has no use for
    chunk = b"EXIF" + struct.pack("<I", len(payload)) + payload
    body = b"WEBP" + vp8x + chunk
    facts = probe_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert (facts.error, facts.width, facts.orientation) == (None, 100, 6)
    assert facts.bytes_read <= 160 * KIB


def test_mp4_frame_count_from_a_large_stts() -> None:
    # No sample count in stsz, so frames come from stts: 200000 (count, delta) pairs summed without a Python loop.
    entries = struct.pack(">2I", 1, 512) * 199_999 + struct.pack(">2I", 7, 512)
    stts = box(b"stts", bytes(4) + struct.pack(">I", 200_000) + entries)
    stsz = box(b"stsz", bytes(12))
    hdlr = box(b"hdlr", bytes(8) + b"vide" + bytes(13))
    moov = box(b"moov", box(b"trak", box(b"mdia", hdlr + box(b"minf", box(b"stbl", stsz + stts)))))
    facts = probe_bytes(box(b"ftyp", b"mp42" + bytes(4)) + moov)
    assert (facts.kind, facts.frames) == ("video", 200_006)
    assert facts.bytes_read <= 2 * 1024 * KIB
