"""Pixel format (ffmpeg's name, e.g. "yuv420p") from a video track's decoder configuration record.

The configuration record (avcC, hvcC, av1C, vpcC) sits inside the moov box, so the pixel format is known
without reading a single frame. Names follow ffmpeg because that is what people compare against (`ffprobe`,
Vi's docs).
"""

from __future__ import annotations

# H.264 profiles whose SPS carries chroma_format_idc and bit depths (ITU-T H.264, 7.3.2.1.1).
_AVC_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_CHROMA = {0: "gray", 1: "yuv420p", 2: "yuv422p", 3: "yuv444p"}


def ffmpeg_name(chroma_format: int, bit_depth: int) -> str | None:
    """ffmpeg's name for planar YUV/gray with the given chroma_format_idc (0..3) and luma bit depth."""
    base = _CHROMA.get(chroma_format)
    if base is None or not 8 <= bit_depth <= 16:
        return None
    return base if bit_depth == 8 else f"{base}{bit_depth}le"


class _BitReader:
    """MSB-first bit reader with Exp-Golomb, enough for the first fields of an SPS."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        byte = self._pos >> 3
        if byte >= len(self._data):
            raise ValueError("SPS ends early")
        value = (self._data[byte] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)


def _unescape(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00) so the RBSP can be read bit by bit."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def from_avcc(record: bytes) -> str | None:
    if len(record) < 8 or record[5] & 0x1F == 0:
        return None
    sps_len = int.from_bytes(record[6:8], "big")
    sps = record[8 : 8 + sps_len]
    if len(sps) < 4:
        return None
    rbsp = _unescape(sps[1:])  # skip the NAL header byte
    profile_idc = rbsp[0]
    if profile_idc not in _AVC_HIGH_PROFILES:
        return "yuv420p"
    try:
        bits = _BitReader(rbsp[3:])  # after profile_idc, constraint flags, level_idc
        bits.ue()  # seq_parameter_set_id
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.bit()  # separate_colour_plane_flag
        bit_depth = bits.ue() + 8
    except ValueError:
        return None
    return ffmpeg_name(chroma_format, bit_depth)


def from_hvcc(record: bytes) -> str | None:
    if len(record) < 18:
        return None
    return ffmpeg_name(record[16] & 0x03, (record[17] & 0x07) + 8)


def from_av1c(record: bytes) -> str | None:
    if len(record) < 3:
        return None
    flags = record[2]
    high_bitdepth, twelve_bit, monochrome = (flags >> 6) & 1, (flags >> 5) & 1, (flags >> 4) & 1
    sub_x, sub_y = (flags >> 3) & 1, (flags >> 2) & 1
    depth = (12 if twelve_bit else 10) if high_bitdepth else 8
    if monochrome:
        chroma = 0
    elif sub_x and sub_y:
        chroma = 1
    elif sub_x:
        chroma = 2
    elif not sub_y:
        chroma = 3
    else:
        return None
    return ffmpeg_name(chroma, depth)


def from_vpcc(record: bytes) -> str | None:
    """vpcC is a full box: version 1 packs bitDepth(4) chromaSubsampling(3) fullRange(1) in one byte."""
    if len(record) < 8:
        return None
    version = record[0]
    if version >= 1:
        depth, subsampling = record[6] >> 4, (record[6] >> 1) & 0x07
    else:
        depth, subsampling = record[6] >> 4, record[7] >> 4
    chroma = {0: 1, 1: 1, 2: 2, 3: 3}.get(subsampling)
    return None if chroma is None else ffmpeg_name(chroma, depth)


PARSERS = {"avcC": from_avcc, "hvcC": from_hvcc, "av1C": from_av1c, "vpcC": from_vpcc}
