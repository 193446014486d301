"""HEIF (HEIC) and AVIF still-image facts from the item boxes in `meta`, read through a RangeReader.

Hand-written for the same reason as media/mp4.py: the reference readers (libheif behind pillow-heif, libavif behind
Pillow) want the whole file and decode it, while every fact the index needs sits in the `meta` box, a few KiB near
the start of the file. The walk reads that box once, follows `iloc` to the few bytes of the Exif item with exact
ranged reads, and never touches the coded image data in `mdat`.

What the facts mean for a HEIF/AVIF image (the one place this is decided):

- `width`, `height`: the image as coded, after the clean-aperture crop (`clap`) and before any rotation or mirror:
  the primary item's `ispe` (for a `grid` item, the grid's output size), cropped by its `clap` (libheif writes
  an odd-sized image as an even coded size and a `clap`). It is the "stored" size in the sense JPEG facts use, and
  the size Pillow's AVIF plugin reports (libavif writes odd sizes without a `clap`).
- `orientation`: the rotation and mirroring a decoder applies (`irot`/`imir` on the primary item, in their `ipma`
  order), expressed as the equivalent EXIF Orientation value 1-8, so the displayed size derives the way it does for
  JPEG and CVAT's EXIF-orientation handling meets the same number. It is NOT the Orientation tag of the Exif item:
  HEIF (ISO/IEC 23008-12) makes the transformative properties normative and the Exif tag informational, libheif
  ignores the tag when it decodes, and Pillow's AVIF plugin reports exactly this value (it rewrites the Exif tag to
  the `irot`/`imir` equivalent). As in Pillow, it is None only when the file has neither a transform nor an Exif
  Orientation tag; an Exif tag that the transforms contradict is reported as the transforms say.
- `rotation`: the `irot` angle as a clockwise rotation in degrees (0, 90, 180, 270), the convention of the video
  facts; 0 when there is no `irot`. A mirror shows only in `orientation`.
- `display_width`, `display_height`: the size after every transform, which is what libheif decodes and what
  `pillow_heif.open_heif(...).size` reports.

Rules (media/rules.py) therefore judge a HEIF image by what a viewer shows: `cvat`, which accepts AVIF, records the
decoded size in its manifest; `strict`, which accepts neither format, asks for one conversion (`heif-convert` applies
the transforms) instead of an EXIF-tag fix.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

from media.errors import ProbeError
from media.exif import orientation_from_exif
from media.facts import MediaFacts
from media.ranges import RangeReader

#: Formats whose facts come from this module (media/mp4.py names them from the ftyp brands).
FORMATS = frozenset({"heic", "avif"})

#: The `meta` box is read whole: real ones are a few KiB (tens with hundreds of grid tiles), so this is room for any
#: real file and a bound on what a hostile one can make us fetch and parse.
MAX_META_BYTES = 2 * 1024 * 1024
#: Top-level boxes looked at while searching for `meta` (`ftyp`, `meta`, `mdat` and a few `free` in real files).
MAX_TOP_LEVEL = 64
#: Boxes parsed inside `meta`, and `iloc` extents kept: far above any real file, far below what hurts.
MAX_BOXES = 100_000
MAX_EXTENTS = 100_000
#: Bytes of the Exif item read: IFD0 with the Orientation tag sits at its start; thumbnails and maker notes after it
#: are not needed.
EXIF_READ_LIMIT = 64 * 1024

# EXIF Orientation values as operations on a grid of pixels (rows of columns): what a viewer does to the stored
# pixels to show them. Comparing where a small non-square grid ends up identifies any chain of quarter turns and
# mirrors with exactly one of the eight values, without a hand-written composition table to get wrong.
_Grid = tuple[tuple[int, ...], ...]
_SAMPLE: _Grid = ((0, 1, 2), (3, 4, 5))


def _rotate_ccw(grid: _Grid) -> _Grid:
    return tuple(reversed(tuple(zip(*grid, strict=True))))


def _flip_left_right(grid: _Grid) -> _Grid:
    return tuple(row[::-1] for row in grid)


def _flip_top_bottom(grid: _Grid) -> _Grid:
    return grid[::-1]


def _transpose(grid: _Grid) -> _Grid:
    return tuple(zip(*grid, strict=True))


def _exif_op(value: int, grid: _Grid) -> _Grid:
    if value == 2:
        return _flip_left_right(grid)
    if value == 3:
        return _rotate_ccw(_rotate_ccw(grid))
    if value == 4:
        return _flip_top_bottom(grid)
    if value == 5:
        return _transpose(grid)
    if value == 6:
        return _rotate_ccw(_rotate_ccw(_rotate_ccw(grid)))  # 90° clockwise
    if value == 7:
        return _rotate_ccw(_rotate_ccw(_transpose(grid)))  # transverse: the anti-diagonal mirror
    if value == 8:
        return _rotate_ccw(grid)  # 270° clockwise
    return grid


_EXIF_BY_GRID: dict[_Grid, int] = {_exif_op(value, _SAMPLE): value for value in range(1, 9)}


@dataclass(frozen=True, slots=True)
class _Location:
    """Where an item's bytes are (`iloc`): `method` 0 is file offsets, 1 offsets into `idat`, 2 another item."""

    method: int
    data_reference: int
    extents: tuple[tuple[int, int], ...]


@dataclass(slots=True)
class _Meta:
    handler: str | None = None
    primary: int | None = None
    item_types: dict[int, str] = field(default_factory=dict)
    locations: dict[int, _Location] = field(default_factory=dict)
    properties: list[tuple[str, bytes]] = field(default_factory=list)
    associations: dict[int, list[int]] = field(default_factory=dict)
    references: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    idat: bytes | None = None


class _Cursor:
    """Big-endian reads over one box's bytes; running off the end is a clear ProbeError, never an IndexError."""

    def __init__(self, data: bytes, start: int, end: int, box: str, name: str) -> None:
        self.data, self.pos, self.end, self.box, self.name = data, start, end, box, name

    def take(self, n: int) -> bytes:
        if self.end - self.pos < n:
            raise ProbeError(f"malformed {self.name}: box '{self.box}' ends inside one of its entries")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big") if n else 0

    def full_box(self) -> tuple[int, int]:
        word = self.uint(4)
        return word >> 24, word & 0xFFFFFF


def probe_heif(reader: RangeReader, facts: MediaFacts) -> None:
    """Fill size and orientation facts of a HEIF/AVIF still image; raise ProbeError with what was learned kept."""
    name = "AVIF" if facts.format == "avif" else "HEIF"
    start, end = _find_meta(reader, name)
    if end - start > MAX_META_BYTES:
        raise ProbeError(f"{name} 'meta' box of {end - start} bytes, over the {MAX_META_BYTES}-byte limit")
    data = reader.read_at(start, end - start)
    meta = _parse_meta(data, name)
    if meta.handler != "pict":
        found = "no handler" if meta.handler is None else f"handler '{_shown(meta.handler)}'"
        raise ProbeError(f"{name} 'meta' box has {found}, not 'pict': the file holds no still image")
    primary = meta.primary
    if primary is None:
        raise ProbeError(f"malformed {name}: no primary item ('pitm' box)")
    item_type = meta.item_types.get(primary)
    if item_type is None:
        raise ProbeError(f"malformed {name}: the primary item {primary} is not listed in 'iinf'")
    properties = [meta.properties[i - 1] for i in meta.associations.get(primary, [])]
    size = _coded_size(reader, meta, primary, item_type, properties, name)
    width, height, grid, rotation = _apply_transforms(size, properties, name)
    derived = _EXIF_BY_GRID[grid]
    exif_tag = _exif_orientation(reader, meta, primary)
    facts.orientation = derived if derived != 1 or exif_tag is not None else None
    facts.rotation = rotation
    transposed = derived in (5, 6, 7, 8)
    facts.width, facts.height = (height, width) if transposed else (width, height)
    facts.display_width, facts.display_height = width, height
    _check_image_data(reader, meta, primary, name)


def _shown(text: str) -> str:
    return text if text.isascii() and text.isprintable() else text.encode("latin-1").hex()


def _find_meta(reader: RangeReader, name: str) -> tuple[int, int]:
    """(start, end) of the top-level `meta` box's children, past its version and flags; only headers are read."""
    pos = 0
    for _ in range(MAX_TOP_LEVEL):
        if reader.size - pos < 8:
            break
        header = reader.read_at(pos, 16)
        size, box_type = int.from_bytes(header[0:4], "big"), header[4:8].decode("latin-1")
        length = 8
        if size == 1:
            if len(header) < 16:
                raise ProbeError(
                    f"truncated {name}: box '{_shown(box_type)}' at offset {pos} has a cut-off 64-bit size"
                )
            size, length = int.from_bytes(header[8:16], "big"), 16
        elif size == 0:
            size = reader.size - pos
        if size < length:
            raise ProbeError(f"malformed {name}: box '{_shown(box_type)}' at offset {pos} has a size of {size} bytes")
        if box_type == "meta":
            if pos + size > reader.size:
                raise ProbeError(
                    f"truncated {name}: box 'meta' at offset {pos} claims {size} bytes, past the end of the file "
                    f"({reader.size} bytes)"
                )
            if size < length + 4:
                raise ProbeError(f"malformed {name}: box 'meta' at offset {pos} is too short ({size} bytes)")
            return pos + length + 4, pos + size
        pos += size
    raise ProbeError(f"malformed {name}: no 'meta' box among the first top-level boxes: no still image to read")


def _children(
    data: bytes, start: int, end: int, parent: str, name: str, count: list[int]
) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, end) of each box in data[start:end]; sizes are checked against the parent."""
    pos = start
    while end - pos >= 8:
        count[0] += 1
        if count[0] > MAX_BOXES:
            raise ProbeError(f"malformed {name}: more than {MAX_BOXES} boxes in 'meta'")
        size, box_type = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8].decode("latin-1")
        length = 8
        if size == 1:
            if end - pos < 16:
                raise ProbeError(f"malformed {name}: box '{_shown(box_type)}' in '{parent}' has a cut-off 64-bit size")
            size, length = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < length or pos + size > end:
            raise ProbeError(
                f"malformed {name}: box '{_shown(box_type)}' in '{parent}' claims {size} bytes, "
                f"{'less than its header' if size < length else 'past the end of its parent'}"
            )
        yield box_type, pos + length, pos + size
        pos += size


def _parse_meta(data: bytes, name: str) -> _Meta:
    meta = _Meta()
    count = [0]
    seen: set[str] = set()
    for box_type, start, end in _children(data, 0, len(data), "meta", name, count):
        if box_type in seen:
            continue  # the first of each box counts, as libheif reads them
        seen.add(box_type)
        cursor = _Cursor(data, start, end, box_type, name)
        if box_type == "hdlr":
            cursor.full_box()
            cursor.take(4)  # pre_defined
            meta.handler = cursor.take(4).decode("latin-1")
        elif box_type == "pitm":
            version, _ = cursor.full_box()
            meta.primary = cursor.uint(2 if version == 0 else 4)
        elif box_type == "iinf":
            _parse_iinf(cursor, meta, count)
        elif box_type == "iloc":
            _parse_iloc(cursor, meta)
        elif box_type == "iprp":
            _parse_iprp(data, start, end, meta, name, count)
        elif box_type == "iref":
            _parse_iref(cursor, meta, count)
        elif box_type == "idat":
            meta.idat = data[start:end]
    return meta


def _parse_iinf(cursor: _Cursor, meta: _Meta, count: list[int]) -> None:
    version, _ = cursor.full_box()
    cursor.uint(2 if version == 0 else 4)  # entry_count: the boxes that follow are what counts
    for box_type, start, end in _children(cursor.data, cursor.pos, cursor.end, "iinf", cursor.name, count):
        if box_type != "infe":
            continue
        entry = _Cursor(cursor.data, start, end, "infe", cursor.name)
        version, _ = entry.full_box()
        if version < 2:
            continue  # versions 0 and 1 carry no item type: nothing this reader can use
        item_id = entry.uint(2 if version == 2 else 4)
        entry.take(2)  # item_protection_index
        meta.item_types.setdefault(item_id, entry.take(4).decode("latin-1"))


def _parse_iloc(cursor: _Cursor, meta: _Meta) -> None:
    version, _ = cursor.full_box()
    if version > 2:
        raise ProbeError(f"malformed {cursor.name}: 'iloc' version {version} is not defined")
    sizes = cursor.uint(1)
    offset_size, length_size = sizes >> 4, sizes & 0xF
    sizes = cursor.uint(1)
    base_offset_size, index_size = sizes >> 4, (sizes & 0xF if version in (1, 2) else 0)
    for field_size in (offset_size, length_size, base_offset_size, index_size):
        if field_size not in (0, 4, 8):
            raise ProbeError(f"malformed {cursor.name}: 'iloc' field size {field_size} (must be 0, 4 or 8)")
    item_count = cursor.uint(2 if version < 2 else 4)
    extents_kept = 0
    for _ in range(item_count):
        item_id = cursor.uint(2 if version < 2 else 4)
        method = cursor.uint(2) & 0xF if version in (1, 2) else 0
        data_reference = cursor.uint(2)
        base_offset = cursor.uint(base_offset_size)
        extent_count = cursor.uint(2)
        extents_kept += extent_count
        if extents_kept > MAX_EXTENTS:
            raise ProbeError(f"malformed {cursor.name}: 'iloc' lists more than {MAX_EXTENTS} extents")
        extents = []
        for _ in range(extent_count):
            cursor.uint(index_size)
            offset = cursor.uint(offset_size)
            extents.append((base_offset + offset, cursor.uint(length_size)))
        meta.locations.setdefault(item_id, _Location(method, data_reference, tuple(extents)))


def _parse_iprp(data: bytes, start: int, end: int, meta: _Meta, name: str, count: list[int]) -> None:
    for box_type, child_start, child_end in _children(data, start, end, "iprp", name, count):
        if box_type == "ipco" and not meta.properties:
            meta.properties = [
                (kind, data[s:e]) for kind, s, e in _children(data, child_start, child_end, "ipco", name, count)
            ]
        elif box_type == "ipma":
            _parse_ipma(_Cursor(data, child_start, child_end, "ipma", name), meta)
    limit = len(meta.properties)
    for item_id, indices in meta.associations.items():
        for index in indices:
            if index > limit:
                raise ProbeError(
                    f"malformed {name}: item {item_id} is associated with property {index}, 'ipco' holds {limit}"
                )


def _parse_ipma(cursor: _Cursor, meta: _Meta) -> None:
    version, flags = cursor.full_box()
    for _ in range(cursor.uint(4)):
        item_id = cursor.uint(2 if version < 1 else 4)
        indices = []
        for _ in range(cursor.uint(1)):
            index = cursor.uint(2) & 0x7FFF if flags & 1 else cursor.uint(1) & 0x7F  # the top bit is "essential"
            if index:
                indices.append(index)
        meta.associations.setdefault(item_id, indices)


def _parse_iref(cursor: _Cursor, meta: _Meta, count: list[int]) -> None:
    version, _ = cursor.full_box()
    id_size = 2 if version == 0 else 4
    for box_type, start, end in _children(cursor.data, cursor.pos, cursor.end, "iref", cursor.name, count):
        if box_type not in ("cdsc", "dimg"):
            continue
        ref = _Cursor(cursor.data, start, end, box_type, cursor.name)
        from_id = ref.uint(id_size)
        targets = [ref.uint(id_size) for _ in range(ref.uint(2))]
        meta.references.setdefault(box_type, {}).setdefault(from_id, []).extend(targets)


def _coded_size(
    reader: RangeReader, meta: _Meta, primary: int, item_type: str, properties: list[tuple[str, bytes]], name: str
) -> tuple[int, int]:
    """(width, height) before any transform: the primary item's `ispe`, or a grid's own output size without one."""
    ispe = next((payload for kind, payload in properties if kind == "ispe"), None)
    if ispe is not None:
        if len(ispe) < 12:
            raise ProbeError(f"malformed {name}: the primary item's 'ispe' is too short ({len(ispe)} bytes)")
        width, height = struct.unpack(">II", ispe[4:12])
    elif item_type == "grid":
        width, height = _grid_output_size(reader, meta, primary, name)
    else:
        raise ProbeError(
            f"malformed {name}: the primary item {primary} ('{_shown(item_type)}') has no 'ispe' property: "
            "its size is unknown"
        )
    if not width or not height:
        raise ProbeError(f"{name} declares a {width} x {height} image")
    return width, height


def _grid_output_size(reader: RangeReader, meta: _Meta, item_id: int, name: str) -> tuple[int, int]:
    """A grid's output size from its ImageGrid payload (usually in `idat`): version, flags, rows, columns, size."""
    payload = _item_bytes(reader, meta, item_id, 12)
    if payload is None or len(payload) < 8:
        raise ProbeError(f"malformed {name}: the primary grid item {item_id} has neither 'ispe' nor a readable grid")
    wide = payload[1] & 1
    if wide and len(payload) < 12:
        raise ProbeError(f"malformed {name}: the primary grid item {item_id} is cut off")
    return struct.unpack(">II", payload[4:12]) if wide else struct.unpack(">HH", payload[4:8])


def _apply_transforms(
    size: tuple[int, int], properties: list[tuple[str, bytes]], name: str
) -> tuple[int, int, _Grid, int]:
    """Displayed (width, height), the net transform as a sample grid, and the clockwise `irot` angle.

    Transformative properties apply in their `ipma` order (ISO/IEC 23008-12 6.5.1), as libheif applies them.
    """
    width, height = size
    grid = _SAMPLE
    quarter_turns = 0
    for kind, payload in properties:
        if kind == "clap":
            width, height = _clean_aperture(payload, width, height, name)
        elif kind == "irot" and payload:
            angle = payload[0] & 0b11  # quarter turns, anti-clockwise
            quarter_turns += angle
            for _ in range(angle):
                grid = _rotate_ccw(grid)
            if angle % 2:
                width, height = height, width
        elif kind == "imir" and payload:
            # axis 0: top and bottom exchange (EXIF 4); axis 1: left and right exchange (EXIF 2).
            grid = _flip_left_right(grid) if payload[0] & 1 else _flip_top_bottom(grid)
    return width, height, grid, (4 - quarter_turns % 4) % 4 * 90


def _clean_aperture(payload: bytes, width: int, height: int, name: str) -> tuple[int, int]:
    """The size left by a `clap` crop, rounded as libheif rounds it, and never larger than the image it crops."""
    if len(payload) < 32:
        raise ProbeError(f"malformed {name}: 'clap' is too short ({len(payload)} bytes)")
    width_n, width_d, height_n, height_d = struct.unpack(">IIII", payload[:16])
    if not width_d or not height_d or width_n > 2**31 or height_n > 2**31:
        raise ProbeError(f"malformed {name}: 'clap' has a zero denominator or an impossible size")
    clean_width = int(Fraction(width_n, width_d) + Fraction(1, 2))
    clean_height = int(Fraction(height_n, height_d) + Fraction(1, 2))
    if clean_width <= 0 or clean_height <= 0:
        raise ProbeError(f"malformed {name}: 'clap' crops the image to {clean_width} x {clean_height}")
    return min(clean_width, width), min(clean_height, height)


def _exif_orientation(reader: RangeReader, meta: _Meta, primary: int) -> int | None:
    """The Orientation tag of the Exif item that describes the primary item (`cdsc`), else of the first Exif item.

    A missing, external or broken Exif item is no orientation, not an error: decoders ignore it too.
    """
    exif_items = [item for item, kind in meta.item_types.items() if kind == "Exif"]
    if not exif_items:
        return None
    described = meta.references.get("cdsc", {})
    linked = [item for item in exif_items if primary in described.get(item, [])]
    payload = _item_bytes(reader, meta, (linked or exif_items)[0], 4 + EXIF_READ_LIMIT)
    if payload is None or len(payload) < 4:
        return None
    # The payload starts with the offset from its fifth byte to the TIFF header (0, or 6 past an "Exif\0\0" mark).
    return orientation_from_exif(payload[4 + int.from_bytes(payload[:4], "big") :])


def _item_bytes(reader: RangeReader, meta: _Meta, item_id: int, limit: int) -> bytes | None:
    """Up to `limit` bytes of an item's data, read exactly (no block rounding into image data); None when the item
    lives elsewhere (another file, another item) or has no location.
    """
    location = meta.locations.get(item_id)
    if location is None or location.data_reference != 0 or location.method not in (0, 1):
        return None
    if location.method == 1 and meta.idat is None:
        return None
    parts: list[bytes] = []
    left = limit
    for offset, length in location.extents:
        if left <= 0:
            break
        source_size = reader.size if location.method == 0 else len(meta.idat or b"")
        wanted = min(left, (source_size - offset) if length == 0 else length)
        if wanted <= 0 or offset >= source_size:
            break
        if location.method == 0:
            chunk = reader.read_at(offset, wanted, exact=True)
        else:
            chunk = (meta.idat or b"")[offset : offset + wanted]
        parts.append(chunk)
        left -= len(chunk)
        if len(chunk) < wanted:
            break
    return b"".join(parts)


def _check_image_data(reader: RangeReader, meta: _Meta, primary: int, name: str) -> None:
    """A cut-off upload shows in `iloc`: the coded data of the primary item (or of its grid tiles) ends past the
    end of the object. Checked from offsets alone, without reading a byte of it.
    """
    items = [primary, *meta.references.get("dimg", {}).get(primary, [])]
    for item_id in items:
        location = meta.locations.get(item_id)
        if location is None or location.method != 0 or location.data_reference != 0:
            continue
        for offset, length in location.extents:
            end = offset + length
            if end > reader.size:
                raise ProbeError(
                    f"truncated {name}: the image data of item {item_id} ends at byte {end}, past the end of the "
                    f"file ({reader.size} bytes)"
                )
