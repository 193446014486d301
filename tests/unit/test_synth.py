"""Synthetic media: deterministic, what it claims to be, and a demo bucket that exercises every rule."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image

from demo import synth
from media.probe import probe
from media.ranges import FIRST_READ, RangeReader
from media.rules import judge

KIB = 1024


def test_images_are_deterministic_and_photo_like() -> None:
    first = synth.jpeg(1024, 768, orientation=6, exif_extra_bytes=3000, quality=80)
    assert first == synth.jpeg(1024, 768, orientation=6, exif_extra_bytes=3000, quality=80)
    assert first != synth.jpeg(1024, 768, orientation=6, exif_extra_bytes=3000, quality=80, seed=2)
    # A flat or trivially smooth picture would compress to a few KiB; a photo of this size is far bigger.
    assert 60 * KIB < len(first) < 400 * KIB
    assert synth.png(100, 80) == synth.png(100, 80)


def test_exif_is_real_and_its_size_is_controlled() -> None:
    small = synth.jpeg(200, 100, orientation=3)
    big = synth.jpeg(200, 100, orientation=3, exif_extra_bytes=30_000)
    for data in (small, big):
        exif = Image.open(io.BytesIO(data)).getexif()
        assert exif[0x0112] == 3
    assert 30_000 <= len(big) - len(small) < 31_000
    assert "exif" not in Image.open(io.BytesIO(synth.jpeg(200, 100))).info


def test_videos_are_deterministic_and_have_the_asked_properties() -> None:
    data = synth.mp4(brand="isom", pix_fmt="yuv444p", frames=5, width=32, height=32)
    assert data == synth.mp4(brand="isom", pix_fmt="yuv444p", frames=5, width=32, height=32)
    assert data[8:12] == b"isom"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.pix_fmt, stream.frames) == ("yuv444p", 5)
    assert synth.mov()[8:12] == b"qt  "


def test_truncated_keeps_the_asked_fraction() -> None:
    assert synth.truncated(bytes(range(100)), 0.25) == bytes(range(25))
    with pytest.raises(ValueError, match="keep must be within"):
        synth.truncated(b"abc", 1.5)


# What each demo file must produce: (kind, format, strict violations, cvat violations).
EXPECTED: dict[str, tuple[str, str | None, list[str], list[str]]] = {
    "images/camera-upright.jpg": ("image", "jpeg", [], []),
    "images/camera-upside-down.jpg": ("image", "jpeg", ["exif_orientation"], []),
    "images/phone-portrait.jpg": ("image", "jpeg", ["exif_orientation"], []),
    "images/phone-portrait-ccw.jpg": ("image", "jpeg", ["exif_orientation"], []),
    "images/no-exif.jpg": ("image", "jpeg", [], []),
    "images/diagram.png": ("image", "png", [], []),
    "images/web/photo.webp": ("image", "webp", [], []),
    "images/broken/interrupted-upload.jpg": ("image", "jpeg", ["readable"], ["readable"]),
    "images/broken/notes.jpg": ("other", None, ["readable"], ["readable"]),
    "videos/compliant.mp4": ("video", "mp4", [], []),
    "videos/isom-brand.mp4": ("video", "mp4", ["mp4_brand"], []),
    "videos/yuv444.mp4": ("video", "mp4", ["mp4_pixel_format"], []),
    "videos/moov-at-end.mp4": ("video", "mp4", [], []),
    "videos/broken/readme.mp4": ("other", None, ["readable"], ["readable"]),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("demo")
    return root, synth.write_demo_dataset(root)


def test_demo_dataset_layout(demo: tuple[Path, dict[str, str]]) -> None:
    root, described = demo
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files == set(EXPECTED)
    assert set(described) == set(EXPECTED) | {"empty-folder/"}
    assert (root / "empty-folder").is_dir() and not any((root / "empty-folder").iterdir())
    assert all(described.values())
    assert sum((root / key).stat().st_size for key in files) < 2 * 1024 * KIB


def test_demo_dataset_is_deterministic(demo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, _ = demo
    synth.write_demo_dataset(tmp_path)
    for key in EXPECTED:
        assert (tmp_path / key).read_bytes() == (root / key).read_bytes(), key


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_each_demo_file_shows_what_it_is_for(demo: tuple[Path, dict[str, str]], key: str) -> None:
    root, _ = demo
    kind, fmt, strict, cvat = EXPECTED[key]
    data = (root / key).read_bytes()
    facts = probe(RangeReader.from_bytes(data), extension=Path(key).suffix)
    assert (facts.kind, facts.format) == (kind, fmt)
    assert [v.rule for v in judge(facts, key, "strict")] == strict
    assert [v.rule for v in judge(facts, key, "cvat")] == cvat


def test_demo_moov_at_end_is_probed_without_a_full_download(demo: tuple[Path, dict[str, str]]) -> None:
    root, _ = demo
    data = (root / "videos/moov-at-end.mp4").read_bytes()
    assert data.index(b"moov") > 64 * KIB
    facts = probe(RangeReader.from_bytes(data))
    # The demo's files are small: the head and one 64 KiB block around the moov box, never the whole file.
    assert facts.bytes_read <= FIRST_READ + 64 * KIB < len(data)
