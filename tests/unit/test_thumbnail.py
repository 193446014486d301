"""The report's thumbnails: the EXIF thumbnail found in the bytes a probe read, turned as a viewer turns the photo."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from demo import synth
from media.probe import probe
from media.ranges import RangeReader
from media.thumbnail import embedded_thumbnail, oriented, thumbnail_from_exif


def _probed(data: bytes) -> tuple[RangeReader, int | None]:
    reader = RangeReader.from_bytes(data)
    facts = probe(reader)
    assert facts.error is None
    return reader, facts.orientation


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0..255) of the two pictures' coarse shapes (16 px on the long side, so
    JPEG noise and resampling do not count): small for the same picture, large for a turned one."""
    size = (16, 12) if a.width >= a.height else (12, 16)
    a, b = (im.convert("RGB").resize(size, Image.Resampling.BOX) for im in (a, b))
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_the_embedded_thumbnail_is_found_in_the_bytes_the_probe_read() -> None:
    data = synth.jpeg(1024, 768, orientation=1, exif_extra_bytes=6000, exif_thumbnail=True)
    reader, _ = _probed(data)
    requests = reader.requests
    thumbnail = embedded_thumbnail(reader.cached)
    assert thumbnail is not None and thumbnail.startswith(b"\xff\xd8")
    assert reader.requests == requests, "finding the thumbnail must not read the object again"
    with Image.open(io.BytesIO(thumbnail)) as small:
        assert small.size == (160, 120)
        # It is the photo, small: the same picture as the full image scaled down.
        with Image.open(io.BytesIO(data)) as full:
            assert _difference(small, full.resize(small.size)) < 6


def test_a_jpeg_without_an_exif_thumbnail_has_none() -> None:
    reader, _ = _probed(synth.jpeg(640, 480, orientation=1))
    assert embedded_thumbnail(reader.cached) is None
    reader, _ = _probed(synth.jpeg(640, 480))
    assert embedded_thumbnail(reader.cached) is None


def test_a_thumbnail_outside_the_bytes_read_is_not_fetched() -> None:
    data = synth.jpeg(1024, 768, orientation=1, exif_thumbnail=True)
    head_only = RangeReader.from_bytes(data, head=64, grow_to=64)
    head_only.read_at(0, 64)
    assert embedded_thumbnail(head_only.cached) is None
    assert head_only.requests == 1


@pytest.mark.parametrize("orientation", [6, 3, 8])
def test_the_thumbnail_is_turned_by_the_orientation_as_exif_transpose_turns_the_photo(orientation: int) -> None:
    data = synth.jpeg(1024, 768, orientation=orientation, exif_thumbnail=True)
    reader, fact = _probed(data)
    assert fact == orientation
    thumbnail = embedded_thumbnail(reader.cached)
    assert thumbnail is not None
    shown = oriented(thumbnail, fact)
    assert shown is not None
    with Image.open(io.BytesIO(shown)) as small, Image.open(io.BytesIO(data)) as full:
        if orientation in (6, 8):
            assert small.size == (120, 160), "orientation 6 and 8 show a landscape photo as a portrait"
        upright = ImageOps.exif_transpose(full)
        assert upright is not None
        assert _difference(small, upright) < 6
        # Turned the other way round, it would not match: the direction of the turn is checked, not only the size.
        assert _difference(small, upright.transpose(Image.Transpose.ROTATE_180)) > 4 * _difference(small, upright)


def test_a_capped_read_of_a_photo_without_a_thumbnail_decodes_small() -> None:
    data = synth.jpeg(1600, 1200, orientation=6)
    shown = oriented(data[: len(data) // 2], 6)  # a capped ranged read: the first half of the file
    assert shown is not None
    with Image.open(io.BytesIO(shown)) as small:
        assert small.size == (120, 160)


def test_a_damaged_exif_block_gives_no_thumbnail() -> None:
    assert thumbnail_from_exif(b"Exif\x00\x00II*\x00\xff\xff\xff\xff") is None
    assert oriented(b"not an image", 6) is None
