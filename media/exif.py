"""EXIF orientation: the one EXIF fact the rules need, and what it does to the displayed size."""

from __future__ import annotations

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
