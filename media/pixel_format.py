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

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _skip_scaling_list(bits: _BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def _avc_full_range(bits: _BitReader, chroma_format: int, high: bool) -> bool:
    """Read on from just after the bit depths (high profiles) or the SPS id to the VUI's video_full_range_flag.

    ffprobe names a full-range 8-bit stream yuvj420p, and Vi's check compares against that name, so the flag decides
    whether an otherwise compliant video passes. ITU-T H.264 7.3.2.1.1 and E.1.1; any SPS that ends before the flag
    simply has no VUI signal type, i.e. limited range.
    """
    if high:
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    bits.ue()  # pic_width_in_mbs_minus1
    bits.ue()  # pic_height_in_map_units_minus1
    if not bits.bit():  # frame_mbs_only_flag
        bits.bit()
    bits.bit()  # direct_8x8_inference_flag
    if bits.bit():  # frame_cropping_flag
        for _ in range(4):
            bits.ue()
    if not bits.bit():  # vui_parameters_present_flag
        return False
    if bits.bit() and bits.bits(8) == 255:  # aspect_ratio_info_present_flag, aspect_ratio_idc == Extended_SAR
        bits.bits(32)
    if bits.bit():  # overscan_info_present_flag
        bits.bit()
    if not bits.bit():  # video_signal_type_present_flag
        return False
    bits.bits(3)  # video_format
    return bool(bits.bit())


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
    high = rbsp[0] in _AVC_HIGH_PROFILES
    chroma_format, bit_depth = 1, 8  # what every non-high profile implies
    try:
        bits = _BitReader(rbsp[3:])  # after profile_idc, constraint flags, level_idc
        bits.ue()  # seq_parameter_set_id
        if high:
            chroma_format = bits.ue()
            if chroma_format == 3:
                bits.bit()  # separate_colour_plane_flag
            bit_depth = bits.ue() + 8
    except ValueError:
        return None
    name = ffmpeg_name(chroma_format, bit_depth)
    try:
        full_range = _avc_full_range(bits, chroma_format, high)
    except ValueError:
        full_range = False
    if name and full_range and bit_depth == 8 and name.startswith("yuv"):
        return "yuvj" + name[3:]
    return name


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
