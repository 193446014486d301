"""MP4 as it comes from the wild: probed correctly, or flagged with a clear reason, each case checked against PyAV.

ffprobe is not installed here; PyAV is FFmpeg's demuxer and decoders, which is what ffprobe reports from. Files are
encoded with PyAV (fragmented, encrypted, several tracks, audio) and then edited box by box (64-bit sizes, a size of 0,
disabled tracks, cut-off data) by tests/video_files.py.
"""

from __future__ import annotations

import io
import struct

import av
import pytest

from media.facts import MediaFacts
from media.probe import probe
from media.ranges import RangeReader
from tests.video_files import CENC_KEY, CENC_OPTIONS, boxes, decoded_frames, encode, find, replace


def probe_bytes(data: bytes) -> MediaFacts:
    return probe(RangeReader.from_bytes(data))


def pyav_stream(data: bytes, index: int = 0) -> dict[str, object]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[index]
        return {
            "frames": stream.frames,
            "duration_s": float(stream.duration * stream.time_base) if stream.duration else None,
            "container_duration_s": container.duration / 1_000_000 if container.duration else None,
            "codec_tag": stream.codec_context.codec_tag,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "default": bool(stream.disposition & av.stream.Disposition.default),
        }


# -- fragmented files and DASH segments ----------------------------------------------------------------------------


def test_fragmented_file_read_to_its_end_counts_every_fragment() -> None:
    data = encode(frames=12, gop=5, movflags="frag_keyframe+empty_moov")
    assert data.count(b"moof") == 3
    facts = probe_bytes(data)
    reference = pyav_stream(data)
    assert facts.error is None
    assert reference["frames"] == 0  # FFmpeg does not know the count from the header either
    assert facts.frames == decoded_frames(data) == 12
    assert facts.duration_s == pytest.approx(reference["duration_s"])
    assert facts.keyframes is None
    assert "no CVAT video manifest: a fragmented MP4 keeps its key frames in the fragments, not in moov" in facts.notes


def test_fragmented_file_with_its_first_fragment_in_moov() -> None:
    data = encode(frames=12, gop=5, movflags="frag_keyframe")
    facts = probe_bytes(data)
    assert facts.error is None
    assert pyav_stream(data)["frames"] == 5  # what moov holds: FFmpeg reports only those
    assert facts.frames == decoded_frames(data) == 12


def test_long_fragmented_file_says_the_frame_count_is_not_in_moov() -> None:
    data = encode(frames=24, gop=2, bframes=0, movflags="frag_keyframe+empty_moov")
    assert data.count(b"moof") == 12
    facts = probe_bytes(data)
    assert facts.error is None
    assert (facts.kind, facts.codec, facts.width, facts.height) == ("video", "avc1", 64, 48)
    assert facts.frames is None and facts.duration_s is None
    assert "fragmented: frame count not in moov (only the first 4 fragment(s) were read)" in facts.notes
    assert facts.requests <= 2  # the walk stops after a few fragments: it does not chase them through the file


def with_mehd(data: bytes, duration: int) -> bytes:
    """A movie extends header (mehd, version 0) added to mvex; fragments addressed relative to their moof survive."""
    mvex = find(data, b"mvex")
    mehd = struct.pack(">I4sII", 16, b"mehd", 0, duration)
    out = bytearray(data[: mvex.end] + mehd + data[mvex.end :])
    for offset in (mvex.offset, find(data, b"moov").offset):
        (size,) = struct.unpack(">I", out[offset : offset + 4])
        out[offset : offset + 4] = struct.pack(">I", size + 16)
    # mehd belongs inside mvex: the grown mvex now ends after it.
    return bytes(out)


def test_fragmented_duration_comes_from_mehd() -> None:
    data = encode(frames=24, gop=2, bframes=0, movflags="frag_keyframe+empty_moov+default_base_moof")
    edited = with_mehd(data, 960)  # ms: the movie timescale ffmpeg writes is 1000
    facts = probe_bytes(edited)
    assert facts.error is None
    assert facts.duration_s == pytest.approx(0.96) == pyav_stream(edited)["container_duration_s"]
    assert facts.frames is None


def test_dash_initialisation_segment_is_flagged() -> None:
    data = encode(frames=12, gop=5, movflags="frag_keyframe+empty_moov+default_base_moof")
    init = data[: find(data, b"moof").offset]
    facts = probe_bytes(init)
    assert facts.error == (
        "DASH initialisation segment: the file holds the movie header and no media samples "
        "(the frames are in separate segment files)"
    )
    assert (facts.kind, facts.codec, facts.width) == ("video", "avc1", 64)
    assert decoded_frames(init) == 0


# -- encryption ----------------------------------------------------------------------------------------------------


def test_cenc_encrypted_video_reports_the_original_codec_and_is_flagged() -> None:
    data = encode(frames=6, gop=5, bframes=0, moov_last=False, options=CENC_OPTIONS)
    assert b"encv" in data and b"frma" in data
    facts = probe_bytes(data)
    assert facts.codec == pyav_stream(data)["codec_tag"] == "avc1"
    assert facts.pix_fmt == "yuv420p"
    assert facts.error == (
        "encrypted video: track 1 is protected with scheme 'cenc' (original codec avc1); "
        "it cannot be decoded without its key"
    )
    with pytest.raises(av.error.InvalidDataError):
        decoded_frames(data)
    assert decoded_frames(data, decryption_key=CENC_KEY) == 6


def test_encrypted_audio_beside_encrypted_video_is_noted() -> None:
    data = encode(frames=6, gop=5, bframes=0, audio=True, options=CENC_OPTIONS)
    assert b"enca" in data
    facts = probe_bytes(data)
    assert facts.error is not None and facts.error.startswith("encrypted video")
    assert "track 2 (soun) is encrypted with scheme 'cenc'" in facts.notes


# -- box sizes -----------------------------------------------------------------------------------------------------


def test_64_bit_mdat_size() -> None:
    """ffmpeg reserves 8 bytes ('free') before mdat for a 64-bit size; use them: the samples do not move."""
    data = encode(frames=12, gop=5)
    free, mdat = find(data, b"free"), find(data, b"mdat")
    assert free.end == mdat.offset and free.size == 8
    large = struct.pack(">I4sQ", 1, b"mdat", mdat.size + 8)
    edited = data[: free.offset] + large + data[mdat.offset + 8 :]
    assert [b.header for b in boxes(edited) if b.type == b"mdat"] == [16]
    before, after = probe_bytes(data).to_row(), probe_bytes(edited).to_row()
    assert after["error"] is None
    assert {k: v for k, v in after.items() if k != "head_sha256"} == {
        k: v for k, v in before.items() if k != "head_sha256"
    }
    assert decoded_frames(edited) == 12


def test_size_zero_runs_to_the_end_of_the_file() -> None:
    data = encode(frames=12, gop=5)  # moov last
    moov = find(data, b"moov")
    edited = data[: moov.offset] + b"\x00\x00\x00\x00" + data[moov.offset + 4 :]
    facts = probe_bytes(edited)
    assert facts.error is None
    assert facts.keyframes == probe_bytes(data).keyframes
    assert (facts.frames, decoded_frames(edited)) == (12, 12)


# -- tracks --------------------------------------------------------------------------------------------------------


def test_audio_only_file_has_no_video_track() -> None:
    data = encode(audio=True, video_tracks=0)
    facts = probe_bytes(data)
    assert facts.error == "no video track: an audio-only file (1 audio track, mp4a)"
    assert facts.kind == "other"
    with av.open(io.BytesIO(data)) as container:
        assert not container.streams.video and len(container.streams.audio) == 1


def test_video_with_audio_is_probed_as_the_video() -> None:
    data = encode(frames=12, gop=5, audio=True)
    facts = probe_bytes(data)
    assert facts.error is None and facts.notes == []
    assert (facts.codec, facts.width, facts.frames) == ("avc1", 64, 12)


def set_enabled(data: bytes, track: int, enabled: bool) -> bytes:
    """The tkhd 'track enabled' flag of the `track`-th trak (0-based) set or cleared, in place."""
    tkhd = find(data, b"tkhd", track)
    flags = struct.unpack(">I", data[tkhd.payload : tkhd.payload + 4])[0]
    flags = flags | 1 if enabled else flags & ~1
    return replace(data, tkhd, struct.pack(">I", flags) + data[tkhd.payload + 4 : tkhd.end])


def test_several_video_tracks_take_the_first_enabled_one() -> None:
    data = encode(frames=10, gop=5, video_tracks=2)  # 64x48 and 96x64; ffmpeg enables only the first
    facts = probe_bytes(data)
    first, second = pyav_stream(data, 0), pyav_stream(data, 1)
    assert (first["default"], second["default"]) == (True, False)
    assert facts.error is None
    assert (facts.width, facts.height) == first["size"] == (64, 48)
    assert "2 video tracks: the facts describe track 1, the first enabled one" in facts.notes
    assert facts.keyframes  # CVAT decodes the first video stream: this one


def test_a_disabled_first_video_track_is_passed_over_and_gets_no_manifest() -> None:
    data = set_enabled(set_enabled(encode(frames=10, gop=5, video_tracks=2), 0, False), 1, True)
    facts = probe_bytes(data)
    second = pyav_stream(data, 1)
    assert second["default"] and not pyav_stream(data, 0)["default"]
    assert (facts.width, facts.height) == second["size"] == (96, 64)
    assert "2 video tracks: the facts describe track 2, the first enabled one" in facts.notes
    assert facts.keyframes is None
    assert "no CVAT video manifest: CVAT decodes the first video track (1), which is not the enabled one" in facts.notes


# -- damaged sample tables -----------------------------------------------------------------------------------------


def test_sample_data_past_the_end_of_the_file_is_unreadable() -> None:
    """An mdat of size 0 (to the end) hides a cut-off upload from the box walk; the sample tables still tell."""
    full = encode(frames=30, gop=10, moov_last=False, width=160, height=120)
    mdat = find(full, b"mdat")
    open_ended = full[: mdat.offset] + b"\x00\x00\x00\x00" + full[mdat.offset + 4 :]
    cut = open_ended[: int(len(open_ended) * 0.7)]
    facts = probe_bytes(cut)
    assert facts.error is not None
    assert facts.error.startswith("damaged MP4: track 1 (vide) has sample data past the end of the file: chunk ")
    assert f"but the file has {len(cut)} bytes" in facts.error
    assert (facts.kind, facts.codec, facts.frames) == ("video", "avc1", 30)  # what the header said is kept
    assert pyav_stream(cut)["frames"] == 30
    with pytest.raises(av.error.InvalidDataError):  # FFmpeg finds out only when it reaches the missing data
        decoded_frames(cut)
    assert probe_bytes(open_ended).error is None


def test_a_chunk_offset_past_the_end_is_unreadable() -> None:
    data = encode(frames=12, gop=5)  # moov last: the stco can be edited in place
    stco = find(data, b"stco")
    count = struct.unpack(">I", data[stco.payload + 4 : stco.payload + 8])[0]
    last = stco.payload + 8 + 4 * (count - 1)
    edited = data[:last] + struct.pack(">I", len(data) + 1000) + data[last + 4 :]
    facts = probe_bytes(edited)
    assert facts.error is not None
    assert facts.error.startswith("damaged MP4: track 1 (vide) has sample data past the end of the file")


# -- edit lists ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edits",
    [
        pytest.param(None, id="as-ffmpeg-writes-it"),
        pytest.param([(240, 1024)], id="tail-trimmed"),
        pytest.param([(200, -1), (480, 1024)], id="empty-edit-first"),
        pytest.param([(200, 1024), (100, 1024 + 200 * 128 // 10)], id="two-edits-shorter-than-the-media"),
    ],
)
def test_duration_follows_the_edit_list(edits: list[tuple[int, int]] | None) -> None:
    from tests.video_files import set_edit_list

    data = encode(frames=12, gop=5)  # 25 fps in a 1/12800 timescale; the movie timescale is 1000
    if edits is not None:
        data = set_edit_list(data, edits)
    facts = probe_bytes(data)
    assert facts.error is None
    assert facts.duration_s == pytest.approx(pyav_stream(data)["duration_s"])
    assert facts.frames == pyav_stream(data)["frames"] == 12
