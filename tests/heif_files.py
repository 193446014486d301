"""HEIC and AVIF test files: encoded by the reference libraries, or assembled box by box around their coded data.

The encoders (pillow-heif's libheif for HEIC, Pillow's libavif for AVIF) write what real files look like, with
`irot`/`imir` for an EXIF orientation and `clap` for odd sizes. What they cannot be asked for (a grid, an item in
`idat`, 64-bit sizes, an Exif item far from the header, hostile values) is assembled here from the boxes of
ISO/IEC 23008-12 around a tile that libheif encoded, so libheif can still decode the result and be the reference.
This parser of their output is deliberately independent of media/heif.py: fixtures must not share the code under test.
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass, field

import pillow_heif
from PIL import Image

ORIENTATION_TAG = 0x0112
# Pillow's own reading of the EXIF orientations (what ImageOps.exif_transpose does): the reference for what each
# value means when comparing decoded pixels.
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
PALETTE = ((220, 30, 30), (30, 200, 30), (30, 30, 220), (240, 240, 240))


def exif_block(orientation: int | None, *, padding: int = 0) -> bytes:
    """A TIFF-header EXIF block with the Orientation tag (or none) and, for size, an ImageDescription of `padding`."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION_TAG] = orientation
    if padding:
        exif[0x010E] = "x" * padding
    return exif.tobytes()


def quadrants(width: int, height: int) -> Image.Image:
    """Four flat colours, one per quadrant: after lossy coding, where each colour ends up still shows the transform."""
    image = Image.new("RGB", (width, height), PALETTE[3])
    half_w, half_h = max(1, width // 2), max(1, height // 2)
    image.paste(PALETTE[0], (0, 0, half_w, half_h))
    image.paste(PALETTE[1], (half_w, 0, width, half_h))
    image.paste(PALETTE[2], (0, half_h, half_w, height))
    return image


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels: they code to a file of camera-like size, so the coded data runs far past the header."""
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


def corner_colours(image: Image.Image) -> tuple[int, ...]:
    """Index into PALETTE of the colour nearest to the centre of each quadrant."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    picks = []
    for fx, fy in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        pixel = rgb.getpixel((int(width * fx), int(height * fy)))
        assert isinstance(pixel, tuple)
        picks.append(min(range(4), key=lambda i: sum((a - b) ** 2 for a, b in zip(pixel, PALETTE[i], strict=True))))
    return tuple(picks)


def heic(image: Image.Image, *, exif: bytes | None = None) -> bytes:
    """libheif's HEIC of `image`; an EXIF orientation becomes `irot`/`imir` and stays in the Exif item too."""
    out = io.BytesIO()
    pillow_heif.from_pillow(image).save(out, format="HEIF", quality=60, **({"exif": exif} if exif else {}))
    return out.getvalue()


def avif(image: Image.Image, *, exif: bytes | None = None) -> bytes:
    """Pillow's AVIF of `image` (libavif); Pillow moves an EXIF orientation into `irot`/`imir`."""
    out = io.BytesIO()
    image.save(out, format="AVIF", quality=60, **({"exif": exif} if exif else {}))
    return out.getvalue()


# -- assembling files box by box ----------------------------------------------------------------------------------


def box(kind: bytes, payload: bytes = b"", *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I", 1) + kind + struct.pack(">Q", 16 + len(payload)) + payload
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes = b"", *, large: bool = False) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags) + payload, large=large)


def ispe(width: int, height: int) -> bytes:
    return full_box(b"ispe", 0, 0, struct.pack(">II", width, height))


def irot(quarter_turns_ccw: int) -> bytes:
    return box(b"irot", bytes([quarter_turns_ccw & 3]))


def imir(axis: int) -> bytes:
    return box(b"imir", bytes([axis & 1]))


def clap(width: int, height: int) -> bytes:
    return box(b"clap", struct.pack(">IIIIiIiI", width, 1, height, 1, 0, 1, 0, 1))


def grid_descriptor(rows: int, columns: int, width: int, height: int) -> bytes:
    wide = width > 0xFFFF or height > 0xFFFF
    size = struct.pack(">II" if wide else ">HH", width, height)
    return bytes([0, int(wide), rows - 1, columns - 1]) + size


def exif_payload(tiff: bytes) -> bytes:
    """An Exif item: the 4-byte offset to the TIFF header (0: it follows at once), then the block."""
    return struct.pack(">I", 0) + tiff


@dataclass
class Item:
    item_id: int
    item_type: bytes
    data: bytes = b""
    properties: list[bytes] = field(default_factory=list)
    in_idat: bool = False
    #: bytes of filler put in mdat in front of this item's data, to push it far from the header
    gap: int = 0


@dataclass
class Tile:
    """One coded HEVC image from libheif: its decoder configuration property and its data."""

    hvcc: bytes
    data: bytes
    width: int
    height: int


def hevc_tile(width: int = 64, height: int = 64, colour: tuple[int, int, int] = (30, 200, 30)) -> Tile:
    """A tile libheif encoded: its `hvcC` box and its coded data (the whole of mdat, since nothing else is stored)."""
    data = heic(Image.new("RGB", (width, height), colour))
    start = data.index(b"hvcC") - 4
    hvcc = data[start : start + int.from_bytes(data[start : start + 4], "big")]
    mdat = data.index(b"mdat") - 4
    assert int.from_bytes(data[mdat : mdat + 4], "big") == len(data) - mdat, "expected mdat to end the file"
    return Tile(hvcc=hvcc, data=data[mdat + 8 :], width=width, height=height)


def assemble(
    items: list[Item],
    primary: int,
    *,
    brand: bytes = b"heic",
    references: list[tuple[bytes, int, list[int]]] | None = None,
    large: bool = False,
    offset_size: int = 4,
    handler: bytes = b"pict",
    tail: bytes = b"",
) -> bytes:
    """A whole HEIF file: ftyp, meta (hdlr, pitm, iinf, iloc v1, iprp, iref, idat) and mdat.

    `large` writes 64-bit box sizes for meta and mdat and 8-byte iloc fields (`offset_size=8`); `tail` is appended
    after mdat, unreferenced.
    """
    ftyp = box(b"ftyp", brand + bytes(4) + b"mif1" + brand + b"miaf")
    properties: list[bytes] = []
    for item in items:
        for prop in item.properties:
            if prop not in properties:
                properties.append(prop)
    ipma_entries = b"".join(
        struct.pack(">HB", item.item_id, len(item.properties))
        + bytes(properties.index(prop) + 1 for prop in item.properties)
        for item in items
    )
    iprp = box(
        b"iprp",
        box(b"ipco", b"".join(properties)) + full_box(b"ipma", 0, 0, struct.pack(">I", len(items)) + ipma_entries),
    )
    iinf = full_box(
        b"iinf",
        0,
        0,
        struct.pack(">H", len(items))
        + b"".join(full_box(b"infe", 2, 0, struct.pack(">HH", i.item_id, 0) + i.item_type + b"\0") for i in items),
    )
    iref = b""
    if references:
        iref = full_box(
            b"iref",
            0,
            0,
            b"".join(
                box(kind, struct.pack(">HH", source, len(targets)) + b"".join(struct.pack(">H", t) for t in targets))
                for kind, source, targets in references
            ),
        )
    idat_items = [i for i in items if i.in_idat]
    idat = box(b"idat", b"".join(i.data for i in idat_items)) if idat_items else b""
    fmt = ">Q" if offset_size == 8 else ">I"

    def meta_box(mdat_payload_start: int) -> bytes:
        entries = b""
        mdat_pos = mdat_payload_start
        idat_pos = 0
        for item in items:
            if item.in_idat:
                offset, method = idat_pos, 1
                idat_pos += len(item.data)
            else:
                mdat_pos += item.gap
                offset, method = mdat_pos, 0
                mdat_pos += len(item.data)
            entries += struct.pack(">HHHH", item.item_id, method, 0, 1)  # id, method, data_reference, 1 extent
            entries += struct.pack(fmt, offset) + struct.pack(fmt, len(item.data))
        sizes = bytes([offset_size << 4 | offset_size, 0])
        iloc = full_box(b"iloc", 1, 0, sizes + struct.pack(">H", len(items)) + entries)
        hdlr = full_box(b"hdlr", 0, 0, bytes(4) + handler + bytes(12) + b"\0")
        pitm = full_box(b"pitm", 0, 0, struct.pack(">H", primary))
        return full_box(b"meta", 0, 0, hdlr + pitm + iinf + iloc + iprp + iref + idat, large=large)

    mdat_header = 16 if large else 8
    draft = meta_box(0)
    meta = meta_box(len(ftyp) + len(draft) + mdat_header)
    assert len(meta) == len(draft)
    payload = b"".join(bytes(i.gap) + i.data for i in items if not i.in_idat)
    return ftyp + meta + box(b"mdat", payload, large=large) + tail
