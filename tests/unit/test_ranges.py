"""RangeReader: the request policy (head, grow, aligned lazy blocks), caching, clipping and the byte budget."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from media.ranges import FIRST_READ, GROW_TO, ProbeBudgetExceeded, RangeReader, RangeReadError

KIB = 1024
#: The mechanics (head, grow, blocks) are pinned on a 16 KiB head and a 64 KiB grow window, where the arithmetic is
#: easy to follow; the production sizes are pinned by test_default_first_read_is_64k_and_grows_to_128k.
SMALL = {"head": 16 * KIB, "grow_to": 64 * KIB}


class Recorder:
    """A fetch over in-memory bytes that logs every request, so tests assert the exact ranges asked for."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        assert 0 <= start < end <= len(self.data), f"bad range {start}-{end}"
        self.calls.append((start, end))
        return bytes(self.data[start:end])


def make(size: int, **policy: int) -> tuple[RangeReader, Recorder, bytes]:
    data = random.Random(size).randbytes(size)
    recorder = Recorder(data)
    return RangeReader(recorder, size, **policy), recorder, data


def test_first_read_fetches_the_head_only() -> None:
    reader, rec, data = make(1024 * KIB, **SMALL)
    assert reader.read_at(10, 20) == data[10:30]
    assert rec.calls == [(0, 16 * KIB)]
    assert (reader.requests, reader.bytes_read) == (1, 16 * KIB)
    assert reader.head_bytes() == data[: 16 * KIB]
    assert reader.requests == 1


def test_read_past_head_grows_by_the_need_plus_slack_in_one_request() -> None:
    reader, rec, data = make(1024 * KIB, **SMALL)
    assert reader.read_at(16 * KIB - 4, 10) == data[16 * KIB - 4 : 16 * KIB + 6]
    assert rec.calls == [(0, 16 * KIB), (16 * KIB, 16 * KIB + 6 + 16 * KIB)]
    # Anything inside the grown window is now free.
    assert reader.read_at(20 * KIB, 10 * KIB) == data[20 * KIB : 30 * KIB]
    assert reader.requests == 2
    # Past it, the rest of the first 64 KiB block comes in one more request, never more than 64 KiB in all.
    assert reader.read_at(50 * KIB, 10 * KIB) == data[50 * KIB : 60 * KIB]
    assert rec.calls[-1] == (32 * KIB + 6, 64 * KIB)
    assert (reader.requests, reader.bytes_read) == (3, 64 * KIB)


def test_grow_is_capped_at_64k() -> None:
    reader, rec, data = make(1024 * KIB, **SMALL)
    assert reader.read_at(10 * KIB, 50 * KIB) == data[10 * KIB : 60 * KIB]
    assert rec.calls == [(0, 16 * KIB), (16 * KIB, 64 * KIB)]


def test_far_reads_fetch_aligned_blocks_and_skip_the_grow() -> None:
    reader, rec, data = make(1024 * KIB, **SMALL)
    offset = 700 * KIB + 123
    assert reader.read_at(offset, 100) == data[offset : offset + 100]
    assert rec.calls == [(0, 16 * KIB), (640 * KIB, 704 * KIB)]
    # A read spanning two blocks, one cached, fetches only the missing one.
    assert reader.read_at(703 * KIB, 2 * KIB) == data[703 * KIB : 705 * KIB]
    assert rec.calls[-1] == (704 * KIB, 768 * KIB)
    # Two missing contiguous blocks are one request.
    assert reader.read_at(800 * KIB, 100 * KIB) == data[800 * KIB : 900 * KIB]
    assert rec.calls[-1] == (768 * KIB, 960 * KIB)
    before = (reader.requests, reader.bytes_read)
    assert reader.read_at(650 * KIB, 250 * KIB) == data[650 * KIB : 900 * KIB]
    assert (reader.requests, reader.bytes_read) == before


def test_exact_reads_fetch_only_what_is_asked() -> None:
    reader, rec, data = make(3000 * KIB, **SMALL)
    assert reader.read_at(3000 * KIB - 2, 2, exact=True) == data[-2:]
    assert rec.calls == [(0, 16 * KIB), (3000 * KIB - 2, 3000 * KIB)]
    assert reader.bytes_read == 16 * KIB + 2


def test_default_first_read_is_64k_and_grows_to_128k() -> None:
    assert (FIRST_READ, GROW_TO) == (64 * KIB, 128 * KIB)
    reader, rec, data = make(1024 * KIB)
    assert reader.read_at(60 * KIB, 4 * KIB) == data[60 * KIB : 64 * KIB]
    assert rec.calls == [(0, 64 * KIB)]
    assert reader.read_at(100 * KIB, 10) == data[100 * KIB : 100 * KIB + 10]
    assert rec.calls[-1] == (64 * KIB, 100 * KIB + 10 + 16 * KIB)


def test_reads_are_clipped_to_the_object() -> None:
    reader, rec, data = make(5000)
    assert reader.read_at(4990, 100) == data[4990:]
    assert reader.read_at(5000, 10) == b""
    assert reader.read_at(10**9, 10) == b""
    # A small object is read whole by the first request and never again.
    assert rec.calls == [(0, 5000)]
    assert reader.size == 5000


def test_object_between_head_and_grow_size_is_read_in_two_requests_at_most() -> None:
    reader, rec, data = make(40 * KIB, **SMALL)
    assert reader.read_at(0, 40 * KIB) == data
    assert rec.calls == [(0, 16 * KIB), (16 * KIB, 40 * KIB)]


def test_budget_stops_a_reader_before_it_fetches_too_much() -> None:
    size = 100 * 1024 * KIB
    rec = Recorder(b"")
    rec.data = memoryview(bytes(size))  # zeros: cheap to make at this size
    reader = RangeReader(rec, size, max_bytes=256 * KIB)
    reader.read_at(1024 * KIB, 100 * KIB)  # head + two blocks = 144 KiB
    with pytest.raises(ProbeBudgetExceeded, match=r"over its budget of 262144 bytes"):
        reader.read_at(50 * 1024 * KIB, 200 * KIB)
    assert reader.bytes_read <= 256 * KIB
    assert sum(end - start for start, end in rec.calls) == reader.bytes_read


def test_every_read_returns_the_right_bytes() -> None:
    rng = random.Random(7)
    reader, _, data = make(900 * KIB + 17, block=8 * KIB)
    for _ in range(300):
        offset = rng.randrange(0, len(data) + 100)
        length = rng.randrange(0, 40 * KIB)
        assert reader.read_at(offset, length, exact=rng.random() < 0.3) == data[offset : offset + length]
    assert reader.bytes_read <= len(data)


def test_failed_or_short_fetch_is_a_read_error() -> None:
    def broken(start: int, end: int) -> bytes:
        raise ConnectionError("reset by peer")

    with pytest.raises(RangeReadError, match="ConnectionError: reset by peer"):
        RangeReader(broken, 100).read_at(0, 1)
    with pytest.raises(RangeReadError, match="returned 3 bytes instead of 100"):
        RangeReader(lambda s, e: b"abc", 100).read_at(0, 1)


def test_file_object_seeks_reads_and_serves_pillow() -> None:
    image = Image.new("RGB", (40, 30), (1, 2, 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    data = out.getvalue()
    reader = RangeReader.from_bytes(data)
    fp = reader.file()
    assert fp.readable() and fp.seekable()
    assert fp.read(8) == data[:8]
    assert fp.tell() == 8
    assert fp.seek(-4, io.SEEK_END) == len(data) - 4
    assert fp.read() == data[-4:]
    assert not fp.hit_eof
    assert fp.read(10) == b""
    assert fp.hit_eof
    fp.seek(0)
    buffer = bytearray(5)
    assert fp.readinto(buffer) == 5 and bytes(buffer) == data[:5]
    fp.seek(0)
    assert Image.open(fp).size == (40, 30)


def test_tail_read_started_ahead_is_cached_and_counted_with_the_head() -> None:
    reader, rec, data = make(1024 * KIB)
    assert reader.start_tail_read(32)
    assert reader.read_at(0, 10) == data[:10]
    assert sorted(rec.calls) == [(0, FIRST_READ), (1024 * KIB - 32, 1024 * KIB)]
    assert (reader.requests, reader.bytes_read) == (2, FIRST_READ + 32)
    assert reader.read_at(1024 * KIB - 32, 32, exact=True) == data[-32:]
    assert reader.requests == 2  # served from the cache


def test_no_tail_read_when_the_head_covers_it_or_once_reading_has_begun() -> None:
    reader, rec, _ = make(FIRST_READ)
    assert not reader.start_tail_read(32)
    reader, rec, _ = make(FIRST_READ + 10)
    assert reader.start_tail_read(32)  # only the 10 bytes past the head
    reader.read_at(0, 1)
    assert sorted(rec.calls) == [(0, FIRST_READ), (FIRST_READ, FIRST_READ + 10)]
    assert not reader.start_tail_read(32)


def test_failed_tail_read_is_forgotten_and_read_again_when_needed() -> None:
    data = random.Random(1).randbytes(1024 * KIB)
    calls: list[tuple[int, int]] = []
    failures = [ConnectionError("reset by peer")]

    def flaky_tail(start: int, end: int) -> bytes:
        calls.append((start, end))
        if start > 0 and failures:
            raise failures.pop()
        return data[start:end]

    reader = RangeReader(flaky_tail, len(data))
    reader.start_tail_read(32)
    reader.read_at(0, 10)
    assert (reader.requests, reader.bytes_read) == (1, FIRST_READ)
    assert reader.read_at(len(data) - 32, 32, exact=True) == data[-32:]
    assert (reader.requests, reader.bytes_read) == (2, FIRST_READ + 32)
    assert calls.count((len(data) - 32, len(data))) == 2


def test_tail_read_that_answered_counts_even_when_the_head_read_failed() -> None:
    data = bytes(1024 * KIB)

    def head_fails(start: int, end: int) -> bytes:
        if start == 0:
            raise ConnectionError("reset by peer")
        return data[start:end]

    reader = RangeReader(head_fails, len(data))
    reader.start_tail_read(32)
    with pytest.raises(RangeReadError, match="reset by peer"):
        reader.read_at(0, 10)
    assert (reader.requests, reader.bytes_read) == (1, 32)


def test_end_check_of_an_object_a_little_larger_than_the_head_reads_only_the_tail() -> None:
    # 80 KB: the exact tail read must not grow the head window over the 16 KB between the two.
    reader, rec, data = make(80 * KIB)
    reader.read_at(0, 10)
    assert reader.read_at(80 * KIB - 32, 32, exact=True) == data[-32:]
    assert rec.calls == [(0, FIRST_READ), (80 * KIB - 32, 80 * KIB)]
    reader, rec, data = make(80 * KIB)
    reader.start_tail_read(32)
    reader.read_at(0, 10)
    assert reader.read_at(80 * KIB - 32, 32, exact=True) == data[-32:]
    assert sorted(rec.calls) == [(0, FIRST_READ), (80 * KIB - 32, 80 * KIB)]
    assert (reader.requests, reader.bytes_read) == (2, FIRST_READ + 32)
