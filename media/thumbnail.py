"""Thumbnails for the report: the one a camera embedded in the EXIF block, or a small decode of a capped read.

Most camera and phone JPEGs carry a ~160x120 JPEG thumbnail in EXIF's IFD1 (JPEGInterchangeFormat and
JPEGInterchangeFormatLength). It lies inside the APP1 segment that probing reads anyway for the orientation, so
showing a rejected photo costs no extra byte. Only when a file carries none does the report, if asked to, fetch a
capped range of that object and let Pillow decode it at reduced size (JPEG draft mode).

A thumbnail is shown as an annotation tool shows the image: turned by the EXIF orientation fact, exactly as Pillow's
`ImageOps.exif_transpose` would turn the full image (an embedded thumbnail is stored unrotated, like the image).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

from PIL import ExifTags, Image, ImageFile

#: IFD1 tags that locate the embedded JPEG thumbnail, relative to the TIFF header.
THUMBNAIL_OFFSET, THUMBNAIL_LENGTH = 0x0201, 0x0202
_EXIF_ID = b"Exif\x00\x00"
#: Longest side of the thumbnails the report shows and stores.
MAX_SIDE = 160
#: Marker segments walked looking for the EXIF block: it comes first or second (after JFIF) in real files.
_SEGMENTS = 16
#: The transposition of each EXIF orientation, as ImageOps.exif_transpose applies it.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: Bytes already read: (offset, length) -> those bytes, or None when they were not read (never fetches).
Cached = Callable[[int, int], bytes | None]


def embedded_thumbnail(cached: Cached) -> bytes | None:
    """The EXIF thumbnail of a JPEG whose bytes were read by probing, or None when it has none or it was not read.

    Walks the marker segments from the start of the file through `cached` only: a thumbnail that would need another
    request is not worth one during a sync (the report can fetch it, on request).
    """
    pos = 2
    for _ in range(_SEGMENTS):
        head = cached(pos, 4)
        if head is None or len(head) < 4 or head[0] != 0xFF:
            return None
        code, length = head[1], int.from_bytes(head[2:4], "big")
        if code in (0xDA, 0xD9) or (0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC)):
            return None  # scan data or a frame header: no EXIF block before the image
        if code == 0xE1:
            segment = cached(pos + 4, length - 2)
            if segment is not None and segment.startswith(_EXIF_ID):
                return thumbnail_from_exif(segment)
        pos += 2 + length
    return None


def thumbnail_from_exif(block: bytes) -> bytes | None:
    """The JPEG thumbnail that an EXIF block's IFD1 points to, or None (no IFD1, not a JPEG, or cut short)."""
    tiff = block[len(_EXIF_ID) :] if block.startswith(_EXIF_ID) else block
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():  # Pillow warns of a damaged block; here it only means "no thumbnail"
            warnings.simplefilter("ignore")
            exif.load(block)
            ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
    except Exception:  # a damaged block is no thumbnail, not a failure
        return None
    offset, length = ifd1.get(THUMBNAIL_OFFSET), ifd1.get(THUMBNAIL_LENGTH)
    if not isinstance(offset, int) or not isinstance(length, int) or length <= 0 or offset + length > len(tiff):
        return None
    data = tiff[offset : offset + length]
    return data if data.startswith(b"\xff\xd8") else None


def oriented(data: bytes, orientation: int | None, max_side: int = MAX_SIDE) -> bytes | None:
    """`data` (any image Pillow reads, whole or cut short) decoded at reduced size, turned by `orientation` and
    saved as a small JPEG; None when it cannot be decoded.

    JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale straight from the DCT, so a capped read of a large photo
    costs little CPU; a cut-short file decodes as far as its bytes go (the rest stays grey).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (max_side, max_side))
            previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
            try:
                image.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
            small = image.convert("RGB")
    except Exception:
        return None
    small.thumbnail((max_side, max_side))
    turn = _TRANSPOSE.get(orientation or 1)
    if turn is not None:
        small = small.transpose(turn)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()
