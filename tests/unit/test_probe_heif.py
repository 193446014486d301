"""HEIC and AVIF probing: size, orientation and displayed size from the item boxes, checked against the libraries
that decode them (libheif through pillow-heif for HEIC, libavif through Pillow for AVIF), and hostile input."""

from __future__ import annotations

import io
import random
import struct

import pillow_heif
import pytest
from PIL import Image

from media.facts import MediaFacts
from media.heif import EXIF_READ_LIMIT
from media.probe import probe
from media.ranges import FIRST_READ, RangeReader
from tests import heif_files as hf

KIB = 1024
SIZES = [(64, 48), (63, 47), (17, 301), (1, 1)]
TRANSPOSING = {5, 6, 7, 8}


def probe_bytes(data: bytes, **policy: int) -> MediaFacts:
    return probe(RangeReader.from_bytes(data, **policy))


def libheif(data: bytes) -> pillow_heif.HeifFile:
    return pillow_heif.open_heif(io.BytesIO(data))


def exif_tag(raw: bytes | None) -> int | None:
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    value = exif.get(hf.ORIENTATION_TAG)
    return value if isinstance(value, int) else None


def shown(source: Image.Image, orientation: int | None) -> Image.Image:
    """What a viewer shows for stored pixels `source` with EXIF orientation `orientation`, by Pillow's own table."""
    method = hf.TRANSPOSE.get(orientation or 1)
    return source if method is None else source.transpose(method)


# -- against the reference readers --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_heic_matches_libheif(size: tuple[int, int], orientation: int) -> None:
    """libheif writes the orientation as irot/imir (odd sizes as a clap crop); its decode is the displayed image."""
    source = hf.quadrants(*size)
    data = hf.heic(source, exif=hf.exif_block(orientation))
    facts = probe_bytes(data)
    reference = libheif(data)
    assert facts.error is None
    assert (facts.kind, facts.format) == ("image", "heic")
    assert (facts.width, facts.height) == size
    assert (facts.display_width, facts.display_height) == reference.size
    assert facts.orientation == orientation == exif_tag(reference.info.get("exif"))
    assert facts.rotation in (0, 90, 180, 270)
    if min(size) >= 16:  # enough pixels for the quadrant colours to survive lossy coding
        assert hf.corner_colours(reference.to_pillow()) == hf.corner_colours(shown(source, facts.orientation))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("orientation", [None, *range(1, 9)])
def test_avif_matches_pillow(size: tuple[int, int], orientation: int | None) -> None:
    """Pillow (the reader CVAT uses) reports the coded size and irot/imir as the EXIF orientation: so do the facts."""
    data = hf.avif(hf.quadrants(*size), exif=None if orientation is None else hf.exif_block(orientation))
    facts = probe_bytes(data)
    with Image.open(io.BytesIO(data)) as reference:
        assert reference.format == "AVIF"
        assert (facts.width, facts.height) == reference.size == size
        assert facts.orientation == reference.getexif().get(hf.ORIENTATION_TAG)
    assert facts.error is None
    assert (facts.kind, facts.format) == ("image", "avif")
    swapped = facts.orientation in TRANSPOSING
    assert (facts.display_width, facts.display_height) == ((size[1], size[0]) if swapped else size)


def test_heic_exif_orientation_without_a_transform_is_informational() -> None:
    """An Exif Orientation tag with no irot/imir: libheif shows the stored pixels, so the facts report 1 (the tag is
    there but not applied, as Pillow reports it), and the displayed size is the stored size."""
    data = _far_exif(6, 0)
    reference = libheif(data)
    assert exif_tag(reference.info.get("exif")) == 6  # the tag is in the file ...
    assert reference.size == (64, 64)  # ... and the decoder ignores it
    facts = probe_bytes(data)
    assert (facts.width, facts.height, facts.orientation, facts.rotation) == (64, 64, 1, 0)
    assert (facts.display_width, facts.display_height) == (64, 64)


def test_heic_without_orientation_anywhere_has_none() -> None:
    assert probe_bytes(hf.heic(hf.quadrants(64, 48))).orientation is None
    assert probe_bytes(hf.heic(hf.quadrants(64, 48), exif=hf.exif_block(None, padding=10))).orientation is None


# -- grids, idat, 64-bit sizes, transforms in any order -------------------------------------------------------------


def _grid(transforms: list[bytes], **options: object) -> tuple[bytes, Image.Image]:
    """A 2 x 2 grid of four single-colour tiles (a distinct colour per quadrant), its descriptor in idat."""
    tiles = [hf.hevc_tile(64, 64, colour) for colour in hf.PALETTE]
    items = [hf.Item(i + 1, b"hvc1", t.data, [t.hvcc, hf.ispe(64, 64)]) for i, t in enumerate(tiles)]
    grid = hf.Item(5, b"grid", hf.grid_descriptor(2, 2, 120, 90), [hf.ispe(120, 90), *transforms], in_idat=True)
    data = hf.assemble([*items, grid], 5, references=[(b"dimg", 5, [1, 2, 3, 4])], **options)  # type: ignore[arg-type]
    stored = Image.new("RGB", (128, 128))
    for i, colour in enumerate(hf.PALETTE):
        stored.paste(colour, (i % 2 * 64, i // 2 * 64, i % 2 * 64 + 64, i // 2 * 64 + 64))
    return data, stored.crop((0, 0, 120, 90))


@pytest.mark.parametrize(
    "transforms",
    [
        [],
        [hf.irot(1)],
        [hf.irot(2)],
        [hf.irot(3)],
        [hf.imir(0)],
        [hf.imir(1)],
        [hf.irot(1), hf.imir(0)],
        [hf.irot(1), hf.imir(1)],
        [hf.imir(1), hf.irot(1)],  # the same two in the other order: another orientation
        [hf.imir(0), hf.irot(3)],
        [hf.clap(100, 80), hf.irot(1)],
        [hf.irot(1), hf.clap(80, 100)],  # a crop after the rotation crops the rotated image
    ],
)
def test_grid_transforms_match_libheif_pixels(transforms: list[bytes]) -> None:
    """The grid item's ispe is the output size; irot/imir/clap apply in ipma order, exactly as libheif decodes."""
    data, stored = _grid(transforms)
    facts = probe_bytes(data)
    decoded = libheif(data).to_pillow()
    assert facts.error is None
    assert (facts.display_width, facts.display_height) == decoded.size
    expected_stored = decoded.size[::-1] if facts.orientation in TRANSPOSING else decoded.size
    assert (facts.width, facts.height) == expected_stored
    if not any(t[4:8] == b"clap" for t in transforms):
        assert (facts.width, facts.height) == (120, 90)
        assert hf.corner_colours(decoded) == hf.corner_colours(shown(stored, facts.orientation))


def test_grid_without_ispe_takes_its_output_size_from_the_grid_in_idat() -> None:
    tile = hf.hevc_tile(64, 64)
    items = [hf.Item(i, b"hvc1", tile.data, [tile.hvcc, hf.ispe(64, 64)]) for i in (1, 2, 3, 4)]
    grid = hf.Item(5, b"grid", hf.grid_descriptor(2, 2, 100, 70), [hf.irot(3)], in_idat=True)
    facts = probe_bytes(hf.assemble([*items, grid], 5, references=[(b"dimg", 5, [1, 2, 3, 4])]))
    assert (facts.width, facts.height, facts.display_width, facts.display_height) == (100, 70, 70, 100)
    assert (facts.orientation, facts.rotation, facts.error) == (6, 90, None)


def test_64_bit_box_sizes_and_iloc_fields() -> None:
    data, _ = _grid([hf.irot(1)], large=True, offset_size=8)
    assert libheif(data).size == (90, 120)
    facts = probe_bytes(data)
    assert (facts.width, facts.height, facts.display_width, facts.display_height) == (120, 90, 90, 120)
    assert facts.error is None


def test_avif_brand_with_a_grid_is_still_read_from_its_items() -> None:
    data, _ = _grid([hf.irot(2)], brand=b"avif")
    facts = probe_bytes(data)
    assert (facts.format, facts.width, facts.height, facts.orientation, facts.error) == ("avif", 120, 90, 3, None)


# -- header ranges only -------------------------------------------------------------------------------------------


def _far_exif(orientation: int, gap: int, *, tiff: bytes | None = None) -> bytes:
    tile = hf.hevc_tile(64, 64)
    image = hf.Item(1, b"hvc1", tile.data, [tile.hvcc, hf.ispe(64, 64)])
    exif = hf.Item(2, b"Exif", hf.exif_payload(tiff or hf.exif_block(orientation)), gap=gap)
    return hf.assemble([image, exif], 1, references=[(b"cdsc", 2, [1])])


def test_exif_far_from_the_header_costs_one_exact_read() -> None:
    """The Exif item lies after 1 MiB of image data: iloc leads straight to it, and only its bytes are fetched."""
    data = _far_exif(6, 1024 * KIB)
    assert exif_tag(libheif(data).info.get("exif")) == 6
    facts = probe_bytes(data)
    assert (facts.orientation, facts.error) == (1, None)  # present, but not applied (no irot): see heif.py
    assert facts.requests == 2
    assert facts.bytes_read < FIRST_READ + 200  # the head, then the Exif item's exact bytes


def test_exif_orientation_agreeing_with_irot() -> None:
    tile = hf.hevc_tile(64, 64)
    image = hf.Item(1, b"hvc1", tile.data, [tile.hvcc, hf.ispe(64, 64), hf.clap(64, 40), hf.irot(3)])
    exif = hf.Item(2, b"Exif", hf.exif_payload(hf.exif_block(6)), gap=300 * KIB)
    data = hf.assemble([image, exif], 1, references=[(b"cdsc", 2, [1])])
    facts = probe_bytes(data)
    assert libheif(data).size == (40, 64)
    assert (facts.width, facts.height, facts.orientation, facts.rotation) == (64, 40, 6, 90)
    assert (facts.display_width, facts.display_height) == (40, 64)


def test_exif_item_stored_in_idat() -> None:
    """iloc construction method 1: the Exif item's bytes are inside the meta box's idat, not in the file's mdat."""
    tile = hf.hevc_tile(64, 64)
    image = hf.Item(1, b"hvc1", tile.data, [tile.hvcc, hf.ispe(64, 64)])
    exif = hf.Item(2, b"Exif", hf.exif_payload(hf.exif_block(3)), in_idat=True)
    data = hf.assemble([image, exif], 1, references=[(b"cdsc", 2, [1])])
    assert exif_tag(libheif(data).info.get("exif")) == 3
    assert (probe_bytes(data).orientation, probe_bytes(data).error) == (1, None)
    no_tag = hf.Item(2, b"Exif", hf.exif_payload(hf.exif_block(None, padding=8)), in_idat=True)
    assert probe_bytes(hf.assemble([image, no_tag], 1, references=[(b"cdsc", 2, [1])])).orientation is None


@pytest.mark.filterwarnings("ignore:Tag data larger than file")  # Pillow, on the Exif block cut at the read limit
def test_a_huge_exif_item_is_read_only_up_to_its_first_bytes() -> None:
    data = _far_exif(1, 0, tiff=hf.exif_block(3, padding=3 * 1024 * KIB))
    facts = probe_bytes(data)
    assert facts.error is None
    assert facts.orientation == 1
    assert facts.bytes_read <= FIRST_READ + 4 + EXIF_READ_LIMIT


def test_camera_sized_heic_reads_its_header_and_the_exif_at_the_end() -> None:
    """libheif writes the Exif item after the coded image: the head answers the rest, one exact read fetches it."""
    data = hf.heic(hf.noise(640, 480), exif=hf.exif_block(8))
    assert data.rindex(hf.exif_block(8)) > len(data) - 100  # the Exif item is at the very end
    facts = probe_bytes(data)
    assert (facts.orientation, facts.display_width, facts.display_height, facts.error) == (8, 480, 640, None)
    assert facts.requests == 2
    assert FIRST_READ < facts.bytes_read < FIRST_READ + 100 < len(data)


# -- hostile and broken input ---------------------------------------------------------------------------------------


def _meta_edit(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_heic_keeps_its_size_and_is_flagged(keep: float) -> None:
    data = hf.heic(hf.noise(320, 240), exif=hf.exif_block(6))
    facts = probe_bytes(data[: int(len(data) * keep)])
    assert facts.error is not None and facts.error.startswith("truncated HEIF: the image data of item 1 ends at")
    assert (facts.width, facts.height, facts.orientation) == (320, 240, 6)


def test_heic_cut_inside_its_meta_box() -> None:
    data = hf.heic(hf.quadrants(64, 48))
    facts = probe_bytes(data[:200])
    assert facts.error is not None and facts.error.startswith("truncated HEIF: box 'meta' at offset")
    assert (facts.kind, facts.format) == ("image", "heic")


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        ((b"pict", b"vide"), "HEIF 'meta' box has handler 'vide', not 'pict': the file holds no still image"),
        ((b"pitm", b"xitm"), "malformed HEIF: no primary item ('pitm' box)"),
        ((b"ispe", b"xspe"), "malformed HEIF: the primary item 1 ('hvc1') has no 'ispe' property: its size is unknown"),
        ((b"infe", b"xnfe"), "malformed HEIF: the primary item 1 is not listed in 'iinf'"),
        ((b"meta", b"xeta"), "malformed HEIF: no 'meta' box among the first top-level boxes: no still image to read"),
    ],
)
def test_missing_boxes_are_named(edit: tuple[bytes, bytes], error: str) -> None:
    facts = probe_bytes(_meta_edit(hf.heic(hf.quadrants(64, 48)), *edit))
    assert facts.error == error
    assert (facts.kind, facts.format) == ("image", "heic")


def test_zero_size_image() -> None:
    data = hf.heic(hf.quadrants(64, 64))
    facts = probe_bytes(_meta_edit(data, b"ispe" + bytes(4) + struct.pack(">II", 64, 64), b"ispe" + bytes(12)))
    assert facts.error == "HEIF declares a 0 x 0 image"


def test_decompression_bomb_keeps_the_declared_size() -> None:
    data, _ = _grid([])
    facts = probe_bytes(_meta_edit(data, hf.ispe(120, 90), hf.ispe(100_000, 100_000)))
    assert facts.error is not None and "over the decompression-bomb limit" in facts.error
    assert (facts.width, facts.height) == (100_000, 100_000)


def test_property_index_past_ipco() -> None:
    tile = hf.hevc_tile()
    data = hf.assemble([hf.Item(1, b"hvc1", tile.data, [tile.hvcc, hf.ispe(64, 64)])], 1)
    entry = struct.pack(">HB", 1, 2) + bytes([1, 2])
    facts = probe_bytes(_meta_edit(data, entry, struct.pack(">HB", 1, 2) + bytes([1, 0x7F])))
    assert facts.error == "malformed HEIF: item 1 is associated with property 127, 'ipco' holds 2"


def test_clap_with_a_zero_denominator() -> None:
    tile = hf.hevc_tile()
    bad = hf.box(b"clap", struct.pack(">IIIIiIiI", 64, 0, 64, 1, 0, 1, 0, 1))
    data = hf.assemble([hf.Item(1, b"hvc1", tile.data, [tile.hvcc, hf.ispe(64, 64), bad])], 1)
    assert probe_bytes(data).error == "malformed HEIF: 'clap' has a zero denominator or an impossible size"


def test_iloc_of_endless_empty_extents_is_refused() -> None:
    """Zero-width iloc fields make an extent cost no bytes: without a bound, 65535 of them per item is a CPU bomb."""
    entries = b"".join(struct.pack(">HHHH", item, 0, 0, 0xFFFF) for item in range(1, 200))
    iloc = hf.full_box(b"iloc", 1, 0, bytes([0, 0]) + struct.pack(">H", 199) + entries)
    data = hf.box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + hf.full_box(b"meta", 0, 0, iloc)
    assert probe_bytes(data).error == "malformed HEIF: 'iloc' lists more than 100000 extents"


def test_iloc_field_sizes_must_be_0_4_or_8() -> None:
    iloc = hf.full_box(b"iloc", 1, 0, bytes([0x33, 0]) + struct.pack(">H", 0))
    data = hf.box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + hf.full_box(b"meta", 0, 0, iloc)
    assert probe_bytes(data).error == "malformed HEIF: 'iloc' field size 3 (must be 0, 4 or 8)"


def test_meta_of_many_empty_boxes_is_refused() -> None:
    meta = hf.full_box(b"meta", 0, 0, hf.box(b"free") * 100_001)
    data = hf.box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + meta
    assert probe_bytes(data).error == "malformed HEIF: more than 100000 boxes in 'meta'"


def test_meta_over_the_size_limit_is_not_fetched() -> None:
    data = hf.box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + hf.full_box(b"meta", 0, 0, bytes(3 * 1024 * KIB))
    facts = probe_bytes(data)
    assert facts.error == f"HEIF 'meta' box of {3 * 1024 * KIB} bytes, over the {2 * 1024 * KIB}-byte limit"
    assert facts.bytes_read == FIRST_READ


def test_child_box_past_the_end_of_its_parent() -> None:
    meta = hf.full_box(b"meta", 0, 0, struct.pack(">I", 500) + b"hdlr" + bytes(30))
    data = hf.box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + meta
    assert (
        probe_bytes(data).error == "malformed HEIF: box 'hdlr' in 'meta' claims 500 bytes, past the end of its parent"
    )


def test_exif_pointing_past_the_end_is_ignored_not_fatal() -> None:
    data = _far_exif(6, 0)
    tiff_at = data.rindex(hf.exif_block(6)) - 4
    broken = data[:tiff_at] + struct.pack(">I", 0xFFFFFF00) + data[tiff_at + 4 :]
    facts = probe_bytes(broken)
    assert (facts.orientation, facts.error) == (None, None)


def test_hostile_box_type_is_escaped() -> None:
    data = _meta_edit(hf.heic(hf.quadrants(64, 48)), b"pict", b"\x00\x1b[3")
    assert (
        probe_bytes(data).error == "HEIF 'meta' box has handler '001b5b33', not 'pict': the file holds no still image"
    )


@pytest.mark.parametrize("brand", [b"heic", b"avif"])
@pytest.mark.parametrize("seed", range(15))
def test_random_bytes_behind_a_heif_ftyp_never_raise(brand: bytes, seed: int) -> None:
    rng = random.Random(seed)
    data = hf.box(b"ftyp", brand + bytes(4) + b"mif1" + brand) + rng.randbytes(rng.randrange(0, 50_000))
    facts = probe_bytes(data)
    assert facts.error, facts
    assert not facts.error.startswith("could not parse"), facts.error  # a named reason, never a crash
    assert len(facts.error) <= 300


@pytest.mark.parametrize("seed", range(60))
def test_corrupted_meta_bytes_give_a_named_reason_or_facts(seed: int) -> None:
    """Flip bytes inside a real file's meta box: every outcome is facts or a specific reason, never an exception."""
    rng = random.Random(seed)
    data = bytearray(hf.heic(hf.quadrants(63, 47), exif=hf.exif_block(rng.randrange(1, 9))))
    meta_end = data.index(b"mdat") - 4
    for _ in range(rng.randrange(1, 6)):
        data[rng.randrange(36, meta_end)] = rng.randrange(256)
    facts = probe_bytes(bytes(data))
    assert facts.error is None or not facts.error.startswith("could not parse"), facts.error
    assert facts.bytes_read <= len(data)
