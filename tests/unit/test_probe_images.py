"""Image probing: every format and EXIF orientation, checked against Pillow's full decode, and the byte budget."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from demo import synth
from media.facts import MediaFacts
from media.jpeg import END_CHECK_BYTES
from media.probe import probe
from media.ranges import FIRST_READ, RangeReader

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


class Wire:
    """A fetch over in-memory bytes that records every request and when it started and ended, from any thread.

    With `hold_head`, the head request (offset 0) answers only once another request has started, or after 5 s:
    `overlapped` then says whether the tail read was in flight while the head read was, whatever the thread
    scheduling, with no timing in the assertion.
    """

    def __init__(self, data: bytes, *, hold_head: bool = True) -> None:
        self.data, self.hold_head = data, hold_head
        self.calls: list[tuple[int, int]] = []
        self.events: list[tuple[str, int]] = []
        self.overlapped: bool | None = None
        self._other_started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, start: int, end: int) -> bytes:
        with self._lock:
            self.calls.append((start, end))
            self.events.append(("start", start))
        if start == 0 and self.hold_head:
            self.overlapped = self._other_started.wait(timeout=5)
        else:
            self._other_started.set()
        with self._lock:
            self.events.append(("end", start))
        return self.data[start:end]


def camera_jpeg(exif_bytes: int) -> bytes:
    """A 1600x1200 photo whose EXIF block (maker notes) is `exif_bytes` long, as cameras write 20-60 KB of it."""
    return synth.jpeg(1600, 1200, orientation=6, exif_extra_bytes=exif_bytes, quality=90)


ONE_READ = {
    "camera-jpeg-20k": (camera_jpeg(20_000), ".jpg"),
    "camera-jpeg-45k": (camera_jpeg(45_000), ".jpg"),
    "camera-jpeg-60k": (camera_jpeg(60_000), ".JPEG"),
    "png": (synth.png(900, 700), ".png"),
    "png-with-exif": (synth.png(900, 700, orientation=6), ".png"),
    "webp-lossy": (synth.webp(1500, 1100), ".webp"),
    "webp-lossless": (synth.webp(1500, 1100, lossless=True), ".webp"),
}


@pytest.mark.parametrize("name", ONE_READ)
def test_typical_image_costs_one_read_without_the_end_check(name: str) -> None:
    data, extension = ONE_READ[name]
    assert len(data) > 4 * FIRST_READ  # a one-read probe of a small file would prove nothing
    wire = Wire(data, hold_head=False)
    facts = probe(RangeReader(wire, len(data)), extension=extension, end_check=False)
    assert facts.error is None and facts.width and facts.height
    assert wire.calls == [(0, FIRST_READ)]
    assert (facts.requests, facts.bytes_read) == (1, FIRST_READ)


@pytest.mark.parametrize("name", [n for n in ONE_READ if not n.startswith("webp")])
def test_end_check_reads_the_tail_at_the_same_time_as_the_head(name: str) -> None:
    data, extension = ONE_READ[name]
    wire = Wire(data)
    facts = probe(RangeReader(wire, len(data)), extension=extension, end_check=True)
    assert facts.error is None
    tail = (len(data) - END_CHECK_BYTES, len(data))
    assert sorted(wire.calls) == [(0, FIRST_READ), tail]
    # Both requests were in flight together: the tail started before the head answered, never after it.
    assert wire.overlapped is True
    assert wire.events.index(("start", tail[0])) < wire.events.index(("end", 0))
    assert (facts.requests, facts.bytes_read) == (2, FIRST_READ + END_CHECK_BYTES)


def test_webp_states_its_length_so_the_end_check_costs_no_read() -> None:
    data, extension = ONE_READ["webp-lossy"]
    wire = Wire(data, hold_head=False)
    facts = probe(RangeReader(wire, len(data)), extension=extension, end_check=True)
    assert facts.error is None
    assert wire.calls == [(0, FIRST_READ)]


def test_end_check_still_runs_when_the_name_does_not_promise_a_jpeg() -> None:
    # The name only decides when the tail is read: a JPEG named .bin is checked, one round trip later.
    data = camera_jpeg(30_000)
    wire = Wire(data, hold_head=False)
    cut = synth.truncated(data, 0.5)
    assert probe(RangeReader.from_bytes(cut), extension=".bin").error == "truncated JPEG: no end-of-image marker"
    facts = probe(RangeReader(wire, len(data)), extension=".bin", end_check=True)
    assert facts.error is None
    tail = len(data) - END_CHECK_BYTES
    assert wire.calls == [(0, FIRST_READ), (tail, len(data))]
    assert wire.events == [("start", 0), ("end", 0), ("start", tail), ("end", tail)]


def test_truncated_jpeg_and_png_pass_without_the_end_check_and_fail_with_it() -> None:
    for data, extension, error in (
        (camera_jpeg(30_000), ".jpg", "truncated JPEG: no end-of-image marker"),
        (synth.png(900, 700), ".png", "truncated PNG: no IEND chunk at the end of the file"),
    ):
        cut = synth.truncated(data, 0.5)
        assert probe(RangeReader.from_bytes(cut), extension=extension, end_check=True).error == error
        unchecked = probe(RangeReader.from_bytes(cut), extension=extension, end_check=False)
        assert unchecked.error is None and unchecked.requests == 1


def test_small_object_is_one_read_even_with_the_end_check() -> None:
    data = synth.jpeg(320, 240, orientation=6, exif_extra_bytes=2000)
    assert len(data) < FIRST_READ
    wire = Wire(data, hold_head=False)
    facts = probe(RangeReader(wire, len(data)), extension=".jpg", end_check=True)
    assert facts.error is None
    assert wire.calls == [(0, len(data))]


def test_jpeg_with_small_exif_costs_one_head_read_and_the_end_check() -> None:
    data = synth.jpeg(1600, 1200, orientation=1, exif_extra_bytes=4000)
    facts = probe_bytes(data)
    assert facts.error is None
    assert facts.requests == 2
    assert facts.bytes_read <= FIRST_READ + END_CHECK_BYTES


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
    assert facts.bytes_read <= FIRST_READ + 64 * KIB


def test_large_png_is_probed_from_its_head() -> None:
    data = synth.png(900, 700)
    facts = probe_bytes(data)
    assert facts.error is None and (facts.width, facts.height) == (900, 700)
    assert facts.bytes_read <= FIRST_READ + END_CHECK_BYTES < len(data)


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
    assert facts.bytes_read <= FIRST_READ + END_CHECK_BYTES < len(data) / 3
