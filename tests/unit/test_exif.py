"""EXIF orientation: the direct IFD0 reader agrees with Pillow's, on real blocks and on thousands of damaged ones."""

from __future__ import annotations

import random
import struct
import warnings

import pytest
from PIL import Image

from demo import synth
from media.exif import _orientation_from_ifd0, _orientation_with_pillow, orientation_from_exif


def exif_blocks() -> list[bytes]:
    """EXIF blocks as JPEGs carry them (with the "Exif\\0\\0" prefix), in both byte orders, with and without
    camera tags and maker notes."""
    blocks = []
    for orientation in (None, 0, 1, 3, 6, 8, 9):
        for camera, extra in ((False, 0), (True, 0), (True, 3000)):
            block = synth.exif_block(orientation, extra_bytes=extra, camera=camera).tobytes()
            blocks.append(b"Exif\x00\x00" + block)
    # Big-endian, as many cameras write it: IFD0 with Make, then Orientation, then the next-IFD pointer.
    make = b"Canon\x00"
    entries = struct.pack(">HHII", 0x010F, 2, len(make), 8 + 2 + 2 * 12 + 4) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)
    blocks.append(b"Exif\x00\x00MM\x00*" + struct.pack(">IH", 8, 2) + entries + bytes(4) + make)
    return blocks


def pillow(raw: bytes) -> int | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _orientation_with_pillow(raw)


@pytest.mark.parametrize("block", exif_blocks(), ids=lambda b: b[6:8].decode() + str(len(b)))
def test_well_formed_blocks_are_read_without_pillow(block: bytes) -> None:
    fast = _orientation_from_ifd0(block)
    assert isinstance(fast, int | None), "a well-formed block must not need Pillow"
    assert fast == pillow(block)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about every damaged block it reads
def test_damaged_blocks_read_as_pillow_reads_them() -> None:
    rng = random.Random(20261130)
    blocks = exif_blocks()
    compared = 0
    for _ in range(6000):
        block = bytearray(rng.choice(blocks))
        action = rng.random()
        if action < 0.3:
            block = block[: rng.randrange(0, len(block) + 1)]  # cut anywhere
        if action > 0.2:
            for _ in range(rng.randrange(1, 6)):  # damage the header, IFD0 or the data it points at
                i = rng.randrange(0, min(len(block), 200)) if block else 0
                if i < len(block):
                    block[i] = rng.randrange(256)
        data = bytes(block)
        assert orientation_from_exif(data) == pillow(data), data[:80]
        compared += 1
    assert compared == 6000


def test_orientation_stored_in_an_unusual_type_is_left_to_pillow() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    block = bytearray(exif.tobytes())
    assert block[6:10] == b"MM\x00*"
    i = block.index(struct.pack(">H", 0x0112))
    block[i + 2 : i + 4] = struct.pack(">H", 4)  # LONG instead of SHORT
    block[i + 8 : i + 12] = struct.pack(">I", 6)
    assert _orientation_from_ifd0(bytes(block)) is not None
    assert not isinstance(_orientation_from_ifd0(bytes(block)), int | None)
    assert orientation_from_exif(bytes(block)) == pillow(bytes(block)) == 6
