"""EXIF orientation: the one EXIF fact the rules need, and what it does to the displayed size."""

from __future__ import annotations

from typing import Literal

from PIL import Image

ORIENTATION_TAG = 0x0112
# Orientations 5..8 transpose the image: its displayed width is its stored height.
_TRANSPOSING = frozenset({5, 6, 7, 8})


def orientation_from_exif(raw: bytes | None) -> int | None:
    """The Orientation tag of IFD0 as stored, or None when there is no EXIF, no tag, or the block is
    unreadable.

    A broken EXIF block does not make the image unreadable (decoders ignore it), so it is not an error here.
    """
    if not raw:
        return None
    found = _orientation_from_ifd0(raw)
    if found is not _UNUSUAL:
        return found  # type: ignore[return-value]
    return _orientation_with_pillow(raw)


#: What `_orientation_from_ifd0` returns for a block it leaves to Pillow.
_UNUSUAL = object()
#: Bytes per value of each TIFF field type that Pillow reads (ImageFileDirectory_v2._load_dispatch).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
_SHORT = 3
_EXIF_PREFIX = b"Exif\x00\x00"


def _orientation_from_ifd0(raw: bytes) -> int | object | None:
    """The orientation, read straight from IFD0, for the common case: a classic TIFF header and the tag stored
    as one SHORT. Anything else (BigTIFF, another type or count) is `_UNUSUAL`, for Pillow to read.

    Why not Pillow every time: its IFD parse was half the CPU of probing a camera JPEG, which a sync of millions
    pays once per photo. This follows Pillow's reading of IFD0 exactly (tests/unit/test_exif.py compares the two on
    thousands of damaged blocks): the first accepted entry of a tag wins; an entry of an unknown type, an empty one,
    or one whose out-of-line data would take the total past the block's size is skipped; an entry cut short or
    pointing past the end stops the walk, and what was read before it stands.
    """
    data = raw[len(_EXIF_PREFIX) :] if raw.startswith(_EXIF_PREFIX) else raw
    data = data[len(_EXIF_PREFIX) :] if data.startswith(_EXIF_PREFIX) else data
    head = data[:4]
    if head == b"II*\x00":
        order: Literal["little", "big"] = "little"
    elif head == b"MM\x00*":
        order = "big"
    else:
        return _UNUSUAL
    if len(data) < 8:
        return _UNUSUAL
    limit = len(data)
    pos = int.from_bytes(data[4:8], order)
    if pos + 2 > limit:
        return None
    count = int.from_bytes(data[pos : pos + 2], order)
    pos += 2
    seen: set[int] = set()
    total = 0
    for _ in range(count):
        if pos + 12 > limit:
            break
        tag = int.from_bytes(data[pos : pos + 2], order)
        kind = int.from_bytes(data[pos + 2 : pos + 4], order)
        values = int.from_bytes(data[pos + 4 : pos + 8], order)
        field = data[pos + 8 : pos + 12]
        pos += 12
        unit = _TYPE_SIZES.get(kind)
        if tag in seen or unit is None:
            continue
        size = values * unit
        if size > 4:
            total += size
            if total > limit:
                continue
            if int.from_bytes(field, order) + size > limit:
                break
        elif size == 0:
            continue
        seen.add(tag)
        if tag == ORIENTATION_TAG:
            if kind != _SHORT or values != 1:
                return _UNUSUAL
            return int.from_bytes(field[:2], order)
    return None


def _orientation_with_pillow(raw: bytes) -> int | None:
    exif = Image.Exif()
    try:
        exif.load(raw)
        value = exif.get(ORIENTATION_TAG)
    except Exception:
        return None
    if isinstance(value, tuple):
        value = value[0] if value else None
    return value if isinstance(value, int) else None


def displayed_size(width: int, height: int, orientation: int | None) -> tuple[int, int]:
    """Size as a viewer shows it; 0 and out-of-range values mean no rotation, as viewers treat them."""
    return (height, width) if orientation in _TRANSPOSING else (width, height)
