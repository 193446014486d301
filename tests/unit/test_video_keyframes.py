"""CVAT video manifests from the moov box alone, checked against CVAT's own way of writing them: a full decode.

Every generated video is probed from its headers (media/mp4.py reads stts, ctts, stss, elst) and decoded frame by
frame with PyAV as CVAT's VideoStreamReader does it (tests/video_files.py); each key frame's `number` and `pts`, the
frame count and the resolution must be the same. The files cover what ffmpeg and cameras write: B-frames (ctts),
edit lists (ffmpeg's media_time offset for B-frame H.264, empty edits, trims, splits), negative composition offsets,
moov first and last, several GOP sizes, MPEG-4 Part 2, cropped and rotated frames.
"""

from __future__ import annotations

import json

import pytest

from media.cvat import video_manifest_lines
from media.facts import MediaFacts
from media.keyframes import Edit, KeyFrameError, SampleTables, cvat_keyframes
from media.probe import probe
from media.ranges import RangeReader
from tests.video_files import (
    cvat_reference,
    drop_edit_list,
    encode,
    first_edit,
    movie_timescale,
    set_edit_list,
    shift_composition_offsets,
)

#: The videos and key frames compared, for the record of what was checked.
COMPARED = {"videos": 0, "keyframes": 0}


def probed(data: bytes) -> MediaFacts:
    facts = probe(RangeReader.from_bytes(data))
    assert facts.error is None, facts.error
    return facts


def assert_matches_cvat(data: bytes) -> MediaFacts:
    """The probe's key frames, length and resolution equal what CVAT records by decoding the whole video."""
    facts = probed(data)
    reference = cvat_reference(data)
    assert facts.keyframes is not None, facts.notes
    assert [(row["number"], row["pts"]) for row in facts.keyframes] == reference.keyframes
    assert facts.decoded_frames == reference.length
    assert (facts.width, facts.height) == reference.resolution
    COMPARED["videos"] += 1
    COMPARED["keyframes"] += len(reference.keyframes)
    return facts


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"bframes": 2, "gop": 5}, id="h264-bframes2-gop5-moov-last"),
        pytest.param({"bframes": 2, "gop": 5, "moov_last": False}, id="h264-bframes2-gop5-faststart"),
        pytest.param({"bframes": 3, "gop": 7, "frames": 30}, id="h264-bframes3-gop7"),
        pytest.param({"bframes": 3, "gop": 12, "frames": 40, "moov_last": False}, id="h264-bframes3-gop12-faststart"),
        pytest.param({"bframes": 1, "gop": 2, "frames": 11}, id="h264-bframes1-gop2"),
        pytest.param({"bframes": 2, "gop": 1, "frames": 8}, id="h264-all-intra-with-bframes-allowed"),
        pytest.param({"bframes": 0, "gop": 6, "frames": 20}, id="h264-no-bframes"),
        pytest.param({"bframes": 2, "gop": 25, "frames": 120, "fps": 30}, id="h264-long-gop"),
        pytest.param({"codec": "mpeg4", "bframes": 2, "gop": 6, "frames": 14}, id="mpeg4-bframes"),
        pytest.param({"codec": "mpeg4", "bframes": 0, "gop": 4, "frames": 13, "moov_last": False}, id="mpeg4-ip"),
        pytest.param({"bframes": 2, "gop": 12, "frames": 40, "width": 72, "height": 40}, id="h264-cropped-72x40"),
        pytest.param({"bframes": 2, "gop": 5, "rotation": 90}, id="h264-rotated-90"),
        pytest.param({"bframes": 2, "gop": 5, "audio": True}, id="h264-with-audio"),
        pytest.param({"bframes": 2, "gop": 5, "movflags": "+negative_cts_offsets"}, id="h264-negative-cts"),
    ],
)
def test_key_frames_match_a_full_decode(settings: dict[str, object]) -> None:
    data = encode(**settings)  # type: ignore[arg-type]
    facts = assert_matches_cvat(data)
    assert facts.keyframes  # every one of these files has seekable key frames
    assert facts.keyframes[0]["number"] == 0


def test_ffmpeg_writes_a_media_time_offset_for_bframes() -> None:
    """The default B-frame H.264 file has an edit list starting at the first frame's composition offset."""
    data = encode(bframes=2, gop=5)
    _, media_time = first_edit(data)
    assert media_time > 0
    assert probed(data).keyframes[0] == {"number": 0, "pts": 0}  # type: ignore[index]


def _edit_cases() -> list[object]:
    base = encode(bframes=2, gop=5, frames=12)  # 25 fps, track timescale 12800: one frame is 512 ticks
    duration, media_time = first_edit(base)
    ticks = movie_timescale(base)
    frame = 512
    half = duration // 2
    return [
        pytest.param(base, id="as-written"),
        pytest.param(set_edit_list(base, [(duration, media_time)], version=1), id="version-1"),
        pytest.param(set_edit_list(base, [(duration, media_time + frame)]), id="starts-one-frame-later"),
        pytest.param(set_edit_list(base, [(duration, media_time + frame // 2)]), id="starts-between-frames"),
        pytest.param(set_edit_list(base, [(duration, media_time + 3 * frame)]), id="starts-inside-a-gop"),
        pytest.param(set_edit_list(base, [(duration, 0)]), id="media-time-zero"),
        pytest.param(set_edit_list(base, [(ticks // 5, -1), (duration, media_time)]), id="empty-edit-first"),
        pytest.param(set_edit_list(base, [(100, -1), (60, -1), (duration, media_time)]), id="two-empty-edits"),
        pytest.param(set_edit_list(base, [(duration // 2, media_time)]), id="tail-trimmed"),
        pytest.param(
            set_edit_list(base, [(half, media_time), (duration - half, media_time + half * 12800 // ticks)]),
            id="split-in-two",
        ),
        pytest.param(
            set_edit_list(base, [(ticks // 10, media_time), (ticks // 10, -1), (duration, media_time + 7 * frame)]),
            id="with-a-gap",
        ),
        pytest.param(drop_edit_list(base), id="no-edit-list"),
        pytest.param(
            shift_composition_offsets(drop_edit_list(encode(bframes=2, gop=2, frames=10)), 2 * frame),
            id="no-edit-list-late-pts-seek-lands-on-a-later-key-frame",
        ),
    ]


@pytest.mark.parametrize("data", _edit_cases())
def test_edit_lists_match_a_full_decode(data: bytes) -> None:
    facts = probed(data)
    reference = cvat_reference(data)
    if not reference.keyframes:
        # CVAT would list no key frame (none can be reached by seeking): no manifest, and the notes say why.
        assert facts.keyframes is None
        assert any("no key frame can be reached" in note for note in facts.notes)
        return
    assert_matches_cvat(data)


def test_a_seek_that_lands_elsewhere_drops_the_row() -> None:
    """Presented long after their decode time, all but the last key frame are found by a seek to a later one."""
    data = shift_composition_offsets(drop_edit_list(encode(bframes=2, gop=2, frames=10)), 1024)
    facts = assert_matches_cvat(data)
    assert facts.keyframes is not None and len(facts.keyframes) == 1


def test_frames_presented_twice_are_refused_as_cvat_refuses_them() -> None:
    base = encode(bframes=2, gop=5, frames=12)
    duration, media_time = first_edit(base)
    backwards = set_edit_list(base, [(duration // 3, media_time + 1024), (duration // 3, media_time)])
    with pytest.raises(AssertionError, match="non-increasing"):
        cvat_reference(backwards)
    facts = probed(backwards)
    assert facts.keyframes is None
    assert any("CVAT refuses such a video" in note for note in facts.notes)


def test_moov_at_the_end_costs_two_requests() -> None:
    data = encode(bframes=3, gop=25, frames=250, width=320, height=240)
    facts = assert_matches_cvat(data)
    assert data.index(b"moov") > 64 * 1024
    assert facts.requests <= 3
    assert facts.bytes_read < len(data) / 4


def test_manifest_lines_follow_cvats_format() -> None:
    data = encode(bframes=2, gop=5, frames=12)
    facts = assert_matches_cvat(data)
    assert facts.keyframes is not None and facts.decoded_frames is not None
    lines = video_manifest_lines("clip.mp4", facts.width or 0, facts.height or 0, facts.decoded_frames, facts.keyframes)
    parsed = [json.loads(line) for line in lines]
    assert parsed[0] == {"version": "1.1"}
    assert parsed[1] == {"type": "video"}
    assert parsed[2] == {"properties": {"name": "clip.mp4", "resolution": [64, 48], "length": 12}}
    assert parsed[3:] == [{"number": 0, "pts": 0}, {"number": 5, "pts": 2560}, {"number": 10, "pts": 5120}]
    # CVAT's structure check (is_video_manifest): the types of the first four lines.
    properties = parsed[2]["properties"]
    assert isinstance(properties["name"], str) and isinstance(properties["resolution"], list)
    assert isinstance(properties["length"], int) and properties["length"] > 0
    assert all(isinstance(parsed[3][field], int) for field in ("number", "pts"))
    assert all(" " not in line for line in lines)  # compact, one JSON object per line


# -- the pure computation on hand-made tables --------------------------------------------------------------------


def tables(**overrides: object) -> SampleTables:
    values: dict[str, object] = {
        "sample_count": 6,
        "time_to_sample": [(6, 100)],
        "composition_offsets": None,
        "sync_samples": [1, 4],
        "edits": [],
        "track_timescale": 1000,
        "movie_timescale": 1000,
    }
    values.update(overrides)
    return SampleTables(**values)  # type: ignore[arg-type]


def test_without_ctts_or_edits_frames_are_presented_in_decode_order() -> None:
    found = cvat_keyframes(tables())
    assert found.keyframes == [{"number": 0, "pts": 0}, {"number": 3, "pts": 300}]
    assert found.length == 6


def test_without_stss_every_sample_is_a_key_frame() -> None:
    found = cvat_keyframes(tables(sync_samples=None, sample_count=3, time_to_sample=[(3, 40)]))
    assert [row["pts"] for row in found.keyframes] == [0, 40, 80]


def test_an_empty_stss_makes_only_the_first_sample_a_key_frame() -> None:
    assert cvat_keyframes(tables(sync_samples=[])).keyframes == [{"number": 0, "pts": 0}]


def test_a_short_stts_keeps_its_last_delta() -> None:
    found = cvat_keyframes(tables(time_to_sample=[(2, 100), (1, 50)]))
    assert found.keyframes[1] == {"number": 3, "pts": 250}


def test_empty_edit_moves_the_first_frame_later() -> None:
    found = cvat_keyframes(tables(edits=[Edit(500, -1), Edit(600, 0)]))
    assert found.keyframes[0] == {"number": 0, "pts": 500}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sample_count": 0}, "holds no samples"),
        ({"time_to_sample": []}, "no decode times"),
        ({"track_timescale": 0}, "no timescale"),
        ({"edits": [Edit(100, 10_000)]}, "leaves no frame to show"),
        ({"edits": [Edit(600, 0)], "movie_timescale": 0}, "no movie timescale"),
    ],
)
def test_tables_that_cannot_give_key_frames_say_why(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(KeyFrameError, match=reason):
        cvat_keyframes(tables(**overrides))


def test_a_video_too_long_to_index_keeps_its_facts_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from media import mp4

    monkeypatch.setattr(mp4, "MAX_INDEXED_SAMPLES", 10)
    facts = probed(encode(bframes=2, gop=5, frames=12))
    assert (facts.frames, facts.keyframes) == (12, None)
    assert "no CVAT video manifest: its 12 frames are more than a probe indexes (10)" in facts.notes


def test_sample_tables_over_the_read_limit_keep_the_facts_and_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from media import mp4

    monkeypatch.setattr(mp4, "MAX_TABLE_BYTES", 64)
    facts = probed(encode(bframes=2, gop=5, frames=12))
    assert facts.frames == 12 and facts.keyframes is None
    assert any(note.startswith("no CVAT video manifest: its sample tables are larger than") for note in facts.notes)
