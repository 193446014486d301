"""CPU time of probing pathological files that cost work per byte: JPEG 0xFF fill, PNG and GIF made of tiny blocks.

A JPEG start-of-image marker followed by megabytes of 0xFF used to cost about 4 us of Python per byte (one two-byte
read per fill byte), some 40 s of CPU for one object, until it hit the per-object deadline and was recorded as a
read failure. This script prints, per case, the CPU seconds of `probe()` on the current code, the reads it made and
the reason it recorded. `--before` also times the pre-fix JPEG fill walk (one two-byte read per fill byte through
the same RangeReader), reproduced here, so one run shows both figures. Run:
`python benchmarks/hostile_probe.py [--mib 8] [--before]`. CPU seconds depend on the machine; compare on one.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from media.probe import probe  # noqa: E402
from media.ranges import RangeReader  # noqa: E402


def jpeg_fill(size: int) -> bytes:
    """SOI, then 0xFF to the end: every byte is a legal-looking fill byte before a marker that never comes."""
    return b"\xff\xd8" + b"\xff" * (size - 2)


def png_tiny_chunks(size: int) -> bytes:
    """A valid IHDR, then empty ancillary chunks (12 bytes each) until `size`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0))
    return head + chunk(b"zzZz", b"") * ((size - len(head)) // 12)


def gif_tiny_subblocks(size: int) -> bytes:
    """A comment extension made of one-byte sub-blocks (two bytes each) until `size`."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
    return screen + b"\x21\xfe" + b"\x01a" * ((size - len(screen)) // 2) + b"\x00;"


def cpu(fn: object) -> tuple[float, object]:
    start = time.process_time()
    result = fn()  # type: ignore[operator]
    return time.process_time() - start, result


def old_jpeg_fill_walk(data: bytes) -> int:
    """The pre-fix loop over fill bytes: one two-byte read_at per 0xFF, until the reader's budget or the end."""
    reader = RangeReader.from_bytes(data)
    pos, steps = 2, 0
    try:
        while True:
            marker = reader.read_at(pos, 2)
            if len(marker) < 2 or marker[1] != 0xFF:
                return steps
            pos, steps = pos + 1, steps + 1
    except Exception:
        return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=8.0, help="size of each pathological file (MiB)")
    parser.add_argument("--before", action="store_true", help="also time the pre-fix JPEG fill walk")
    args = parser.parse_args()
    size = int(args.mib * 1024 * 1024)
    cases = {"jpeg 0xFF fill": jpeg_fill, "png tiny chunks": png_tiny_chunks, "gif tiny sub-blocks": gif_tiny_subblocks}
    print(f"object size {size} bytes")
    if args.before:
        seconds, steps = cpu(lambda: old_jpeg_fill_walk(jpeg_fill(size)))
        print(f"  pre-fix fill walk (jpeg)      cpu {seconds:8.4f} s  ({steps} fill bytes walked one read each)")
    for name, make in cases.items():
        data = make(size)
        reader = RangeReader.from_bytes(data)
        seconds, facts = cpu(lambda reader=reader: probe(reader))
        print(
            f"  probe() {name:<20}  cpu {seconds:8.4f} s  bytes_read {facts.bytes_read:>8}  "  # type: ignore[attr-defined]
            f"requests {facts.requests}  error: {facts.error}"  # type: ignore[attr-defined]
        )


if __name__ == "__main__":
    main()
