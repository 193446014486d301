"""A lazy, caching reader over an object that can only be fetched by byte range.

Probing must answer "what is this file" from the fewest bytes and the fewest round trips, because a bucket
holds millions of objects and every request costs latency and money. The policy (DESIGN.md, "Providers and the
data plane"): the first request reads a head big enough for a camera JPEG's whole header (see FIRST_READ), a
second one grows the window for the rare header that runs on, and anything further (a TIFF IFD, an MP4 moov
box at the end) is fetched in aligned blocks where it is needed. A caller that knows it will need the object's
last bytes (the end-of-file check) asks for them up front, and they are fetched at the same time as the head,
in a second request that costs no extra round trip. A hard byte budget makes sure a hostile file can never make
us download a whole large object.
"""

from __future__ import annotations

import io
import time
from bisect import bisect_right
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from media.errors import ProbeError

Fetch = Callable[[int, int], bytes]


class ProbeBudgetExceeded(ProbeError):
    """Reading on would pass the reader's byte budget; raised instead of downloading a large object."""


class ProbeWorkExceeded(ProbeBudgetExceeded):
    """The parser asked for more reads, or more bytes in total, than any real file needs; raised to stop it.

    The byte budget bounds what is fetched, not what parsers do with it: a file of millions of tiny blocks (PNG
    chunks, GIF sub-blocks) or a structure that points back at the same bytes again and again makes a parser call
    `read_at` millions of times on cached bytes, seconds of CPU per object with no request to stop it. Bounding
    the calls and the bytes served bounds every parser's work, including Pillow's, whatever its own loops do.
    """


class UnreadableObject(ProbeError):
    """Raised by a fetch callable: the object can never be read as it stands (not a regular file, a name that
    is not valid UTF-8), so the reader lets it through unwrapped and the probe records a verdict on the object,
    not a transient "read failed" that the next sync would retry forever.
    """


class RangeReadError(Exception):
    """The underlying fetch failed or returned the wrong number of bytes.

    Kept distinct from format errors so a caller can tell "the network failed" from "the file is broken".
    """


class ProbeDeadlineExceeded(RangeReadError):
    """The probe of one object ran past its deadline; raised before the next request instead of sending it.

    A read failure, not a verdict on the file (a slow or throttled service caused it), so the prober records it as
    "read failed: ..." and the next sync probes the object again.
    """


#: Seconds one object's probe may take, across all its requests, before it gives up. Each request is bounded by its
#: provider's timeout and retry window (resources/bucket.py), so one stuck object costs at most this plus one
#: request's retries and never stalls a sync.
DEFAULT_DEADLINE_S = 120.0

#: Bytes the first request reads. A GET's cost is its round trip, not its bytes: a cloud store takes tens of
#: milliseconds to the first byte, and 48 KiB more then stream in about a millisecond. A camera JPEG carries 20-60 KB
#: of EXIF (maker notes, a thumbnail) before its frame header, so a 16 KiB head needed a second, sequential GET for
#: most photos; 64 KiB (also the most one JPEG APP1 segment can hold) answers a typical JPEG, PNG or WebP in one.
#: benchmarks/probe_requests.py measured it: a 64 KiB GET ran at 0.7-1.0x the rate of a 16 KiB one on the emulators
#: over loopback (where bytes cost CPU, not wire time) and at the same rate with a modelled 400 ms round trip, and
#: at 1.8-2.6x the rate of a 16 KiB GET followed by the second GET those photos then need. Objects smaller than
#: this are read whole, in one request.
FIRST_READ = 64 * 1024
#: How far the one grow request may reach for a header that runs past the first read (a big ICC profile, a
#: maker note split over several segments); past it, aligned blocks are fetched where the parser reads.
GROW_TO = 128 * 1024

#: Reads started ahead of the head read (the end-of-file check) run here, so the caller's thread can send the head
#: read meanwhile. Threads are made only on demand; 256 is the highest probe concurrency a connection may set
#: (assets/probes.py), so a read started ahead never waits for a free thread.
_AHEAD = ThreadPoolExecutor(max_workers=256, thread_name_prefix="probe-ahead")

#: `read_at` calls one probe may make. A real header is read in tens of calls (hundreds for a TIFF with many
#: tags); each call costs microseconds, so this caps a hostile file at a fraction of a second of CPU.
MAX_READS = 50_000
#: Bytes `read_at` may hand out in total, cached or not: four times the fetch budget leaves room for parsers
#: that re-read a header, and none for one that reads the same megabytes thousands of times.
MAX_SERVED = 32 * 1024 * 1024


class RangeReader:
    """Serve `read_at(offset, length)` from as few ranged fetches as the policy allows, caching what was
    fetched.
    """

    def __init__(
        self,
        fetch: Fetch,
        size: int,
        *,
        head: int = FIRST_READ,
        grow_to: int = GROW_TO,
        block: int = 64 * 1024,
        max_bytes: int = 8 * 1024 * 1024,
        grow_slack: int = 16 * 1024,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
        max_reads: int = MAX_READS,
        max_served: int = MAX_SERVED,
        executor: Executor | None = None,
    ) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if head <= 0 or block <= 0 or grow_to < head:
            raise ValueError("need head > 0, block > 0 and grow_to >= head")
        self._fetch = fetch
        self._size = size
        self._head = min(size, head)
        self._grow_to = min(size, grow_to)
        self._block = block
        self._max_bytes = max_bytes
        self._grow_slack = grow_slack
        self._deadline_s = deadline_s
        self._clock = clock
        self._max_reads = max_reads
        self._max_served = max_served
        self._started: float | None = None  # the clock starts at the first request, not at construction
        self._head_done = False
        self._grow_done = False
        self._executor = executor or _AHEAD
        #: A read started ahead of the head read: (start, end, its future), until it is collected.
        self._ahead: tuple[int, int, Future[bytes]] | None = None
        # Disjoint, sorted cached segments: parallel lists of starts and their bytes.
        self._starts: list[int] = []
        self._chunks: list[bytes] = []
        self.bytes_read = 0
        self.requests = 0
        #: `read_at` calls and the bytes they returned: the parsers' work, which the fetch budget does not bound.
        self.reads = 0
        self.bytes_served = 0

    @classmethod
    def from_bytes(cls, data: bytes, **policy: int) -> RangeReader:
        """Serve an in-memory object through the same policy, so tests and benchmarks measure real costs."""
        view = memoryview(data)
        return cls(lambda start, end: bytes(view[start:end]), len(data), **policy)

    @property
    def size(self) -> int:
        return self._size

    def head_bytes(self) -> bytes:
        """The first min(size, head) bytes, fetched by the first request."""
        return self.read_at(0, self._head)

    def cached(self, offset: int, length: int) -> bytes | None:
        """The bytes at [offset, offset + length) if they were already read, else None: never fetches.

        For what can be had for free after a probe (the EXIF thumbnail, media.thumbnail), never for the probe itself.
        """
        end = min(offset + length, self._size)
        if offset < 0 or length <= 0 or offset >= end or self._missing(offset, end):
            return None
        return self._slice(offset, end)

    def start_tail_read(self, length: int) -> bool:
        """Start fetching the object's last `length` bytes now, so the head read can run at the same time.

        Called before the first read by a prober that will check the end of the file: the tail then costs a
        second request but no second round trip, where reading it after the header would add one. Nothing is
        started when the head read covers those bytes anyway (a small object). The tail is collected (cached
        and counted) as soon as the head read has answered; if it failed, it is forgotten, and a parser that
        needs those bytes fetches them again and reports that failure. Returns whether a read was started.
        """
        if self._head_done or self._ahead is not None or length <= 0:
            return False
        start, end = max(self._head, self._size - length), self._size
        if start >= end or self.bytes_read + (end - start) > self._max_bytes:
            return False
        try:
            future = self._executor.submit(self._fetch, start, end)
        except RuntimeError:  # the interpreter is shutting down: read the tail later, in line, if it is wanted
            return False
        self._ahead = (start, end, future)
        return True

    def read_at(self, offset: int, length: int, *, exact: bool = False) -> bytes:
        """Bytes [offset, offset + length) clipped to the object's size.

        `exact=True` fetches exactly the missing bytes instead of whole aligned blocks: for a tiny probe far
        from everything else (the last bytes of a JPEG) a 64 KiB block would be waste.
        """
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length: {offset}, {length}")
        self.reads += 1
        if self.reads > self._max_reads:
            raise ProbeWorkExceeded(
                f"parser made more than {self._max_reads} reads (the last at offset {offset}): a structure of "
                "this many tiny blocks is not a real file"
            )
        start = min(offset, self._size)
        end = min(offset + length, self._size)
        if start >= end:
            return b""
        self.bytes_served += end - start
        if self.bytes_served > self._max_served:
            raise ProbeWorkExceeded(
                f"parser asked for more than {self._max_served} bytes in total (the last {end - start} at offset "
                f"{start}): the file makes it read the same bytes over and over"
            )
        if self._head_done:
            # Fast path, most calls: a parser walking a header reads a few bytes at a time from the head it has.
            i = bisect_right(self._starts, start) - 1
            if i >= 0 and end <= self._starts[i] + len(self._chunks[i]):
                seg_start = self._starts[i]
                return self._chunks[i][start - seg_start : end - seg_start]
        self._ensure(start, end, exact=exact)
        return self._slice(start, end)

    def file(self) -> RangeFile:
        """A seekable file object over the object, for parsers (Pillow) that want one."""
        return RangeFile(self)

    # -- policy ------------------------------------------------------------------------------------------

    def _ensure(self, start: int, end: int, *, exact: bool) -> None:
        if not self._head_done:
            self._head_done = True
            try:
                self._fill(0, self._head)
            finally:
                # Even when the head read failed: the tail reached the wire and counts, and nothing is left running.
                self._collect_ahead()
        if exact:
            # Never a reason to grow: an exact read is a small probe far from the header (the end-of-file check),
            # and on an object a little larger than the head, growing would fetch everything between the two.
            self._fill(start, end)
            return
        if not self._grow_done and end > self._head and start < self._grow_to and self._missing(start, end):
            # Grow to what the parser asked for plus some slack (the segments after a big EXIF block are small),
            # capped at grow_to: a header that runs a little past the head costs one request of about its size.
            self._grow_done = True
            self._fill(self._head, min(self._grow_to, max(end, self._head) + self._grow_slack))
        aligned_start = start - start % self._block
        aligned_end = min(self._size, -(-end // self._block) * self._block)
        self._fill(aligned_start, aligned_end, need=(start, end))

    def _fill(self, start: int, end: int, need: tuple[int, int] | None = None) -> None:
        """Fetch every gap of [start, end) not yet cached, one request per contiguous gap.

        With `need`, nothing is fetched when [need) is already cached: blocks are only a rounding of a real
        miss.
        """
        if need is not None and not self._missing(*need):
            return
        for gap_start, gap_end in self._missing(start, end):
            self._request(gap_start, gap_end)

    def _missing(self, start: int, end: int) -> list[tuple[int, int]]:
        gaps: list[tuple[int, int]] = []
        pos = start
        i = max(0, bisect_right(self._starts, start) - 1)
        while pos < end and i < len(self._starts):
            seg_start = self._starts[i]
            seg_end = seg_start + len(self._chunks[i])
            if seg_end <= pos:
                i += 1
                continue
            if seg_start > pos:
                gaps.append((pos, min(seg_start, end)))
            pos = max(pos, seg_end)
            i += 1
        if pos < end:
            gaps.append((pos, end))
        return gaps

    def _request(self, start: int, end: int) -> None:
        n = end - start
        if self.bytes_read + n > self._max_bytes:
            raise ProbeBudgetExceeded(
                f"probe would read {self.bytes_read + n} bytes, over its budget of {self._max_bytes} bytes "
                f"(needed bytes {start}-{end} of a {self._size}-byte object)"
            )
        self._check_deadline(start, end)
        try:
            data = self._fetch(start, end)
        except UnreadableObject:
            raise
        except Exception as exc:
            raise RangeReadError(f"read failed for bytes {start}-{end}: {type(exc).__name__}: {exc}") from exc
        self.requests += 1
        if len(data) != n:
            raise RangeReadError(f"read of bytes {start}-{end} returned {len(data)} bytes instead of {n}")
        self.bytes_read += n
        self._insert(start, bytes(data))

    def _collect_ahead(self) -> None:
        """Cache and count the read started ahead, waiting for it if it is still running."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        start, end, future = ahead
        try:
            data = future.result()
        except Exception:  # forgotten: whoever needs these bytes fetches them again and reports that failure
            return
        if len(data) != end - start:
            return
        self.requests += 1
        self.bytes_read += end - start
        self._insert(start, bytes(data))

    def _check_deadline(self, start: int, end: int) -> None:
        now = self._clock()
        if self._started is None:
            self._started = now
            return
        elapsed = now - self._started
        if self._deadline_s is not None and elapsed > self._deadline_s:
            raise ProbeDeadlineExceeded(
                f"probe gave up after {elapsed:.0f} s (deadline {self._deadline_s:.0f} s), before reading bytes "
                f"{start}-{end}; {self.requests} requests had answered"
            )

    def _insert(self, start: int, data: bytes) -> None:
        i = bisect_right(self._starts, start)
        self._starts.insert(i, start)
        self._chunks.insert(i, data)

    def _slice(self, start: int, end: int) -> bytes:
        i = bisect_right(self._starts, start) - 1
        seg_start = self._starts[i]
        chunk = self._chunks[i]
        if end <= seg_start + len(chunk):
            return chunk[start - seg_start : end - seg_start]
        parts: list[bytes] = []
        pos = start
        while pos < end:
            seg_start = self._starts[i]
            chunk = self._chunks[i]
            parts.append(chunk[pos - seg_start : min(end, seg_start + len(chunk)) - seg_start])
            pos = seg_start + len(chunk)
            i += 1
        return b"".join(parts)


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over a RangeReader.

    `hit_eof` records whether a parser tried to read past the end, which is how the prober tells "truncated"
    from "malformed" when a library only raises a generic error.
    """

    def __init__(self, reader: RangeReader) -> None:
        super().__init__()
        self._reader = reader
        self._pos = 0
        self.hit_eof = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._reader.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._reader.size - self._pos)
        data = self._reader.read_at(self._pos, size) if size else b""
        if len(data) < size:
            self.hit_eof = True
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
