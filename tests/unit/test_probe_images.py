"""Image probing: every format and EXIF orientation, checked against Pillow's full decode, and the byte budget."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from demo import synth
from media.facts import MediaFacts
from media.probe import probe
from media.ranges import RangeReader

KIB = 1024
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "exif-orientation"
TRANSPOSING = {5, 6, 7, 8}


def probe_bytes(data: bytes, **policy: int) -> MediaFacts:
    return probe(RangeReader.from_bytes(data, **policy))


def decoded(data: bytes) -> Image.Image:
    """Pillow's full decode, the independent reference for size and mode."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("jpeg", synth.jpeg(321, 123)),
        ("jpeg", synth.jpeg(64, 80, mode="L")),
        ("jpeg", synth.jpeg(64, 80, mode="CMYK")),
        ("png", synth.png(321, 123)),
        ("png", synth.png(50, 20, mode="RGBA")),
        ("png", synth.png(50, 20, mode="L")),
        ("png", synth.png(50, 20, mode="P")),
        ("webp", synth.webp(321, 123)),
        ("webp", synth.webp(321, 123, lossless=True)),
        ("webp", synth.webp(321, 123, lossless=True, alpha=True)),
        ("webp", synth.webp(321, 123, alpha=True)),
        ("tiff", synth.tiff(321, 123)),
        ("tiff", synth.tiff(30, 20, mode="L")),
        ("bmp", synth.bmp(321, 123)),
        ("bmp", synth.bmp(30, 20, mode="L")),
        ("gif", synth.gif(321, 123)),
    ],
)
def test_every_image_format_matches_a_full_decode(fmt: str, data: bytes) -> None:
    facts = probe_bytes(data)
    reference = decoded(data)
    assert facts.error is None
    assert (facts.kind, facts.format) == ("image", fmt)
    assert (facts.width, facts.height) == reference.size
    assert facts.mode == reference.mode
    assert (facts.display_width, facts.display_height) == reference.size
    assert facts.orientation is None
    assert facts.head_sha256 == hashlib.sha256(data[: 16 * KIB]).hexdigest()
    assert 0 < facts.bytes_read <= len(data)
    assert 1 <= facts.requests <= 3


@pytest.mark.parametrize("orientation", range(9))
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_every_exif_orientation(fmt: str, orientation: int) -> None:
    data = getattr(synth, fmt)(300, 200, orientation=orientation)
    facts = probe_bytes(data)
    assert facts.error is None
    assert facts.orientation == orientation
    assert (facts.width, facts.height) == (300, 200)
    # ImageOps.exif_transpose applies the orientation to real pixels: the displayed size must match it.
    shown = ImageOps.exif_transpose(decoded(data))
    assert (facts.display_width, facts.display_height) == shown.size
    expected = (200, 300) if orientation in TRANSPOSING else (300, 200)
    assert (facts.display_width, facts.display_height) == expected


def test_no_exif_and_exif_without_orientation_both_give_none() -> None:
    assert probe_bytes(synth.jpeg(100, 50)).orientation is None
    camera_without_tag = synth.jpeg(100, 50, orientation=None, exif_extra_bytes=500)
    assert b"Exif\x00\x00" in camera_without_tag[:100]
    assert probe_bytes(camera_without_tag).orientation is None


def test_out_of_range_orientation_is_kept_and_treated_as_upright() -> None:
    facts = probe_bytes(synth.jpeg(120, 80, orientation=9))
    assert facts.orientation == 9
    assert (facts.display_width, facts.display_height) == (120, 80)


def test_content_decides_the_format_not_the_extension() -> None:
    facts = probe(RangeReader.from_bytes(synth.png(40, 30)), extension=".jpg")
    assert (facts.format, facts.error) == ("png", None)


def test_camera_jpeg_costs_at_most_64k_in_two_header_requests_plus_the_end_check() -> None:
    data = synth.jpeg(2000, 1500, orientation=6, exif_extra_bytes=30_000, quality=90)
    assert len(data) > 500 * KIB
    calls: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        calls.append((start, end))
        return data[start:end]

    facts = probe(RangeReader(fetch, len(data)))
    assert facts.error is None
    assert (facts.width, facts.height, facts.orientation) == (2000, 1500, 6)
    # The header needs the head and one grow; the end-of-image check is one tiny exact read at the tail.
    # The grow read stops where the parser's need plus slack ends, well inside the 64 KiB window.
    header_calls, end_check = calls[:-1], calls[-1]
    assert header_calls[0] == (0, 16 * KIB)
    assert len(header_calls) == 2 and header_calls[1][0] == 16 * KIB and 30_000 < header_calls[1][1] < 64 * KIB
    assert end_check[1] == len(data) and end_check[1] - end_check[0] <= 32
    assert facts.requests == 3
    assert facts.bytes_read <= 64 * KIB
    assert facts.bytes_read < len(data) / 8


def test_jpeg_with_small_exif_costs_one_head_read_and_the_end_check() -> None:
    data = synth.jpeg(1600, 1200, orientation=1, exif_extra_bytes=4000)
    facts = probe_bytes(data)
    assert facts.error is None
    assert facts.requests == 2
    assert facts.bytes_read <= 16 * KIB + 32


def test_webp_exif_after_the_bitstream_is_found_without_reading_the_bitstream() -> None:
    data = synth.webp(1500, 1100, orientation=8)
    assert len(data) > 256 * KIB
    exif_at = data.rfind(b"EXIF")
    assert exif_at > 200 * KIB  # the EXIF chunk really sits after the image data
    facts = probe_bytes(data)
    assert facts.error is None
    assert (facts.width, facts.height, facts.orientation) == (1500, 1100, 8)
    assert (facts.display_width, facts.display_height) == (1100, 1500)
    assert facts.requests == 2
    assert facts.bytes_read <= 16 * KIB + 64 * KIB


def test_large_png_is_probed_from_its_head() -> None:
    data = synth.png(900, 700)
    facts = probe_bytes(data)
    assert facts.error is None and (facts.width, facts.height) == (900, 700)
    assert facts.bytes_read <= 16 * KIB + 32 < len(data)


def _fixture_files() -> list[Path]:
    if not FIXTURES.is_dir():
        return []
    return sorted(FIXTURES.glob("*.jpg"))


def test_fixture_folder_is_present() -> None:
    if FIXTURES.is_dir() and _fixture_files():
        return
    reason = f"shared fixtures not found at {FIXTURES} (they live beside the repository, never inside it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.name)
def test_every_exif_orientation_fixture(path: Path) -> None:
    orientation = int(path.stem.rsplit("_", 1)[1])
    data = path.read_bytes()
    facts = probe_bytes(data)
    assert facts.error is None
    assert (facts.kind, facts.format) == ("image", "jpeg")
    assert facts.orientation == orientation
    expected = (1800, 1200) if path.stem.startswith("Landscape") else (1200, 1800)
    assert (facts.display_width, facts.display_height) == expected
    reference = decoded(data)
    assert (facts.width, facts.height) == reference.size
    assert facts.mode == reference.mode
    assert facts.bytes_read < len(data) / 4
