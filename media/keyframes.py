"""The rows of a CVAT video manifest, computed from an MP4's sample tables instead of by decoding the video.

CVAT writes a video manifest (utils/dataset_manifest/core.py, `VideoStreamReader`) by decoding every frame with PyAV:
it numbers the frames in the order the decoder outputs them, and for each frame the decoder flags as a key frame it
seeks a second reader to that frame's pts and keeps the row only when the first frame decoded there is the same
frame. It later finds frame N by seeking to the nearest key frame at or before N and counting frames from there, so
a row whose `number` or `pts` is off by one shifts every annotation that follows it. Matching CVAT therefore means
reproducing what FFmpeg's MP4 demuxer (libavformat/mov.c) does with the tables, not what the specification says:

- decode times are the running sum of `stts`; presentation times add the `ctts` offset, and negative offsets shift
  every decode time down by the largest of them (`dts_shift`);
- an edit list rebuilds the index: samples whose presentation time falls outside an edit are kept for decoding but
  marked to be discarded after it, decode times are renumbered on the edit's timeline, and the whole timeline moves
  so the first presented frame has pts 0 (plus the duration of leading empty edits);
- a seek treats the requested time as a pts, subtracts the same correction, and lands on the last sync sample whose
  decode time is not later: with B-frames that can be a later key frame than the one asked for, and then CVAT drops
  the row.

Pure arithmetic on integers: the tables come from `media/mp4.py`, which reads them from the `moov` box; nothing here
reads media data or decodes a frame. Limits, said plainly: sync samples are taken from `stss` (partial sync `stps`
and `rap ` sample groups are not read); a decoder is assumed to flag exactly the sync samples as key frames and to
drop the leading pictures of an open GOP after a seek, as FFmpeg's H.264 and MPEG-4 Part 2 decoders do (the tests
check both); FFmpeg's extra seek rule for HEVC open-GOP (CRA) samples is not modelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TypedDict


class KeyFrameError(ValueError):
    """The tables describe a video whose key frames cannot be listed as CVAT would; the message says why."""


class KeyFrame(TypedDict):
    """One row of a CVAT video manifest: the frame's number in decoding output order, and its pts in stream units."""

    number: int
    pts: int


@dataclass(frozen=True, slots=True)
class Edit:
    """One `elst` entry: `duration` in the movie's timescale, `media_time` in the track's (-1: an empty edit)."""

    duration: int
    media_time: int


@dataclass(frozen=True, slots=True)
class SampleTables:
    """The tables of one video track, run-length encoded as stored.

    `time_to_sample`: `stts` (count, delta) pairs. `composition_offsets`: `ctts` (count, offset) pairs, offsets signed,
    None without a `ctts` box. `sync_samples`: the 1-based numbers in `stss`, None without an `stss` box (then every
    sample is a sync sample).
    """

    sample_count: int
    time_to_sample: Sequence[tuple[int, int]]
    composition_offsets: Sequence[tuple[int, int]] | None
    sync_samples: Sequence[int] | None
    edits: Sequence[Edit]
    track_timescale: int
    movie_timescale: int


@dataclass(frozen=True, slots=True)
class VideoKeyFrames:
    """What a CVAT video manifest says besides the name and resolution: every key frame row, and the frame count."""

    keyframes: list[KeyFrame]
    length: int


@dataclass(slots=True)
class _Entry:
    """One entry of the demuxer's index: a sample, its decode time on the edited timeline, and its flags."""

    sample: int
    dts: int
    offset: int
    key: bool
    discard: bool


#: FFmpeg gives up on a `ctts` whose offsets are this large (mov_read_ctts): the file is broken, the offsets ignored.
_CTTS_LIMIT = 1 << 28


def _expand(runs: Sequence[tuple[int, int]], count: int, *, pad_last: bool) -> list[int]:
    """Per-sample values from (count, value) runs, cut or padded to `count` samples.

    FFmpeg keeps using the last `stts` delta for samples the table does not cover, and uses 0 for samples past the end
    of `ctts`.
    """
    values: list[int] = []
    for run, value in runs:
        take = min(run, count - len(values))
        if take <= 0:
            break
        values.extend([value] * take)
    if len(values) < count:
        fill = runs[-1][1] if pad_last and runs else 0
        values.extend([fill] * (count - len(values)))
    return values


def _sync_flags(sync: Sequence[int] | None, count: int) -> list[bool]:
    """Which samples the demuxer marks as key frames, matched against `stss` the way mov_build_index does it.

    An empty `stss` means only the first sample is one; numbers are 1-based unless the first is 0 (some writers).
    The table is walked in step with the samples, so an unsorted `stss` loses entries, exactly as in FFmpeg.
    """
    if sync is None:
        return [True] * count
    flags = [False] * count
    if not sync:
        if count:
            flags[0] = True
        return flags
    key_off = 1 if sync[0] > 0 else 0
    index = 0
    for sample in range(count):
        if sample + key_off == sync[index]:
            flags[sample] = True
            if index + 1 < len(sync):
                index += 1
    return flags


def rescale(value: int, to_scale: int, from_scale: int) -> int:
    """`value * to_scale / from_scale` rounded half away from zero, as av_rescale does."""
    num = value * to_scale
    half = from_scale // 2
    return (num + half) // from_scale if num >= 0 else -((-num + half) // from_scale)


def _search_backward(entries: Sequence[_Entry], wanted: int, *, any_frame: bool = False) -> int:
    """The last entry whose dts is not after `wanted`, stepped back to a key entry unless `any_frame`; -1 if none.

    ff_index_search_timestamp with AVSEEK_FLAG_BACKWARD: the binary search steps over entries marked for discarding,
    as FFmpeg's does, so a seek never lands on a frame the decoder would throw away unless nothing else is left.
    """
    count = len(entries)
    low, high = -1, count
    if count and entries[-1].dts < wanted:
        low = count - 1
    while high - low > 1:
        mid = (low + high) >> 1
        while entries[mid].discard and mid < high and mid < count - 1:
            mid += 1
            if mid == high and entries[mid].dts >= wanted:
                mid = high - 1
                break
        dts = entries[mid].dts
        if dts >= wanted:
            high = mid
        if dts <= wanted:
            low = mid
    found = low
    while not any_frame and found >= 0 and not entries[found].key:
        found -= 1
    return found


class _Index:
    """The demuxer's index of one track after its edit list is applied (mov_build_index, then mov_fix_index)."""

    def __init__(self, tables: SampleTables) -> None:
        count = tables.sample_count
        if count <= 0:
            raise KeyFrameError("the video track holds no samples")
        if not tables.time_to_sample:
            raise KeyFrameError("the video track has no decode times (empty stts)")
        if tables.track_timescale <= 0:
            raise KeyFrameError("the video track has no timescale (mdhd)")
        durations = _expand(tables.time_to_sample, count, pad_last=True)
        runs = tables.composition_offsets
        if runs and any(abs(offset) > _CTTS_LIMIT for _, offset in runs[:-2]):
            runs = None  # FFmpeg drops such a ctts and presents in decode order
        self.offsets = _expand(runs, count, pad_last=False) if runs else [0] * count
        self.dts_shift = max(0, -min(self.offsets))
        keys = _sync_flags(tables.sync_samples, count)
        # Decode times before the edit list, shifted down so negative composition offsets give non-negative pts.
        self._raw: list[_Entry] = []
        dts = -self.dts_shift
        for sample in range(count):
            self._raw.append(_Entry(sample, dts, self.offsets[sample], keys[sample], False))
            dts += durations[sample]
        self._has_ctts = bool(runs)
        self.min_corrected_pts = 0
        self.entries = self._raw
        if tables.edits:
            if tables.movie_timescale <= 0:
                raise KeyFrameError("the file has an edit list but no movie timescale (mvhd)")
            self._apply_edits(tables)

    def _apply_edits(self, tables: SampleTables) -> None:
        """Rebuild the index on the edit list's timeline, as mov_fix_index does for a video track."""
        old = self._raw
        shift = self.dts_shift
        new: list[_Entry] = []
        entry_end = -shift
        empty_edits = 0
        found_non_empty = False
        min_corrected: int | None = None
        for edit in tables.edits:
            duration = rescale(edit.duration, tables.track_timescale, tables.movie_timescale)
            media_time = edit.media_time
            counter = entry_end
            entry_end += duration
            if not found_non_empty and media_time == -1:
                empty_edits += duration
                continue
            found_non_empty = True
            start = self._edit_start(media_time)
            started = False
            waiting: list[tuple[_Entry, int]] = []  # entries dropped before the edit starts, with their durations
            key_after_edit = False
            for position in range(start, len(old)):
                current = old[position]
                frame_duration = old[position + 1].dts - current.dts if position + 1 < len(old) else duration
                cts = current.dts + shift + current.offset
                entry = _Entry(current.sample, counter, current.offset, current.key, False)
                if cts < media_time or cts >= media_time + duration:
                    entry.discard = True
                    if not started:
                        waiting.append((entry, frame_duration))
                else:
                    corrected = counter + current.offset + shift
                    # FFmpeg's own comparison: a negative minimum is replaced, not kept.
                    if min_corrected is None or min_corrected < 0:
                        min_corrected = corrected
                    else:
                        min_corrected = min(min_corrected, corrected)
                    if not started:
                        started = True
                        # Frames dropped before the edit's start get decode times counting back from its first.
                        back = counter
                        for dropped, dropped_duration in reversed(waiting):
                            back -= dropped_duration
                            dropped.dts = back
                        waiting = []
                new.append(entry)
                if started:
                    counter += frame_duration
                if cts + frame_duration >= media_time + duration and current.key:
                    # With B-frames, the frames after the first key frame past the edit may still belong to it.
                    if self._has_ctts and not key_after_edit:
                        key_after_edit = True
                        continue
                    break
        corrected = (-1 if min_corrected is None else min_corrected) - empty_edits
        self.min_corrected_pts = corrected
        if corrected > 0:
            for entry in new:
                entry.dts -= corrected
        self.entries = new

    def _edit_start(self, media_time: int) -> int:
        """The entry decoding must start from to present `media_time` (find_prev_closest_index): the closest key frame
        at or before it, or any frame when there is none, or the first."""
        for any_frame in (False, True):
            found = self._closest_before(media_time, any_frame=any_frame)
            if found >= 0:
                return found
        return 0

    def _closest_before(self, media_time: int, *, any_frame: bool) -> int:
        old = self._raw
        wanted = media_time - self.dts_shift if self.dts_shift > 0 else media_time
        found = _search_backward(old, wanted, any_frame=any_frame)
        position = found
        while position > 0 and old[position].dts == old[position - 1].dts:
            if any_frame or old[position - 1].key:
                found = position - 1
            position -= 1
        if found >= 0 and self._has_ctts:
            # Step back to a key frame presented at or before the edit's start, so its B-frames can be decoded.
            while found >= 0 and not (old[found].dts + old[found].offset <= wanted and old[found].key):
                found -= 1
        return found

    def pts(self, entry: _Entry) -> int:
        return entry.dts + self.dts_shift + entry.offset


def _first_output(index: _Index, start: int) -> int | None:
    """The pts of the first frame a decoder outputs after a seek lands on entry `start`.

    Frames marked for discarding are dropped, and so are the leading pictures of the GOP the seek landed in (presented
    before its key frame, they reference the GOP before it, which was never decoded); from the next GOP on, every frame
    decodes. The first output is the earliest-presented frame of the first GOP that outputs any.
    """
    entries = index.entries
    position = start
    while position < len(entries):
        gop_end = position + 1
        while gop_end < len(entries) and not entries[gop_end].key:
            gop_end += 1
        head = index.pts(entries[position])
        shown = [
            index.pts(entry)
            for entry in entries[position:gop_end]
            if not entry.discard and (position != start or index.pts(entry) >= head)
        ]
        if shown:
            return min(shown)
        position = gop_end
    return None


def cvat_keyframes(tables: SampleTables) -> VideoKeyFrames:
    """The key frame rows and frame count CVAT's `VideoStreamReader` would record for this track.

    Raises KeyFrameError when the frames would not come out of a decoder with strictly increasing presentation times
    (CVAT refuses such a video), or when no frame would be shown at all.
    """
    index = _Index(tables)
    shown = [entry for entry in index.entries if not entry.discard]
    if not shown:
        raise KeyFrameError("the edit list leaves no frame to show")
    order = sorted(shown, key=index.pts)
    times = [index.pts(entry) for entry in order]
    for earlier, later in pairwise(times):
        if later <= earlier:
            raise KeyFrameError(f"two frames share the presentation time {later}: CVAT refuses such a video")
    number_of = {id(entry): number for number, entry in enumerate(order)}
    correction = index.min_corrected_pts + index.dts_shift
    rows: list[KeyFrame] = []
    for entry in order:
        if not entry.key:
            continue
        pts = index.pts(entry)
        landed = _search_backward(index.entries, pts - correction)
        if landed < 0 and index.entries and pts - correction < index.entries[0].dts:
            landed = 0
        if landed < 0 or _first_output(index, landed) != pts:
            continue  # a seek to this pts shows another frame first: CVAT leaves the row out
        rows.append({"number": number_of[id(entry)], "pts": pts})
    return VideoKeyFrames(keyframes=rows, length=len(order))
