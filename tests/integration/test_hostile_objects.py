"""Objects nobody made on purpose, on every provider: each is recorded with its reason and none stops the sync.

One bucket holds all of them at once, because that is how they arrive: odd keys (spaces, unicode, percent signs,
`..` segments, 1024 bytes long), an empty object, an image header declaring 100000 x 100000 pixels, MP4s whose box
sizes point past the end of the file or cannot advance, files whose extension lies, and two objects that change
between listing and probe (one deleted, one overwritten). The listing runs first, then the bucket changes, then the
rest of the sync runs; the test asserts the recorded reason, or the right facts, for each one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import pytest
from dagster import DagsterInstance

from demo import synth
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.integration.buckets import BucketUnderTest, unique_name

pytestmark = pytest.mark.integration

PREFIX = "hostile/"
#: No probe of any of these may read more than this, whatever the file claims (the reader's budget is 8 MiB).
READ_CEILING = 1024 * 1024


def box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">I", 8 + len(payload) if size is None else size) + kind + payload


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_bomb() -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 65_000, 65_000, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + bytes([1, 0, 2, 0x11, 3, 0x11, 0, 63, 0])
    return b"\xff\xd8" + sof + sos + bytes(200) + b"\xff\xd9"


def mp4_box_past_the_end() -> bytes:
    stsd = box(b"stsd", bytes(8), size=99_999_999)
    moov = box(b"moov", box(b"trak", box(b"mdia", box(b"minf", box(b"stbl", stsd)))), size=0)
    return box(b"ftyp", b"isom" + bytes(4)) + moov


def mp4_box_that_cannot_advance() -> bytes:
    """A box whose size (4) is smaller than its own header: a parser that trusted it would never move on."""
    return box(b"ftyp", b"mp42" + bytes(4)) + box(b"moov", bytes(16), size=4)


def mp4_endless_boxes() -> bytes:
    """Thousands of empty boxes: a walk that never ends unless it is bounded."""
    return box(b"ftyp", b"mp42" + bytes(4)) + box(b"moov", box(b"free") * 10_500)


def long_key(total_bytes: int = 1024) -> str:
    """A key of exactly `total_bytes` UTF-8 bytes (S3's and GCS's limit), in segments a file system accepts."""
    head = PREFIX + "long/"
    body_len = total_bytes - len(head.encode()) - len(".jpg")
    segments, left = [], body_len
    while left > 0:
        take = min(200, left)
        if left - take == 1:  # never leave a one-byte tail that would need a lone "/"
            take -= 1
        segments.append("x" * (take - 1) + "/" if left - take > 0 else "x" * take)
        left -= take
    key = head + "".join(segments) + ".jpg"
    assert len(key.encode()) == total_bytes, len(key.encode())
    return key


@dataclass
class Hostile:
    data: bytes
    error: str | None = None  # expected start of media.error; None: readable, with `facts`
    facts: dict[str, Any] | None = None
    rules: frozenset[str] = frozenset()
    message: str | None = None  # expected fragment of a violation message


def hostile_objects(provider: str) -> dict[str, Hostile]:
    small = synth.jpeg(64, 48, orientation=1)
    fine = {"format": "jpeg", "width": 64, "height": 48}
    objects = {
        PREFIX + "with spaces/a photo  with  spaces .jpg": Hostile(small, facts=fine),
        PREFIX + "unicode/фото-日本語-é-🙂.jpg": Hostile(small, facts=fine),
        PREFIX + "percent/100% off %20 %2F %25.jpg": Hostile(small, facts=fine),
        long_key(): Hostile(small, facts=fine),
        PREFIX + "empty.jpg": Hostile(b"", error="empty object (0 bytes)", rules=frozenset({"readable"})),
        PREFIX + "bomb.png": Hostile(
            png_bomb(),
            error="image declares 100000 x 100000 pixels, over the decompression-bomb limit",
            facts={"width": 100_000, "height": 100_000},
            rules=frozenset({"readable"}),
        ),
        PREFIX + "bomb.jpg": Hostile(
            jpeg_bomb(), error="image declares 65000 x 65000 pixels", rules=frozenset({"readable"})
        ),
        PREFIX + "past-the-end.mp4": Hostile(
            mp4_box_past_the_end(),
            error="box 'stsd' at offset 56 claims 99999999 bytes, past the end of the file (72 bytes)",
            rules=frozenset({"readable"}),
        ),
        PREFIX + "stuck.mp4": Hostile(
            mp4_box_that_cannot_advance(),
            error="box 'moov' at offset 16 has an invalid size of 4 bytes",
            rules=frozenset({"readable"}),
        ),
        PREFIX + "endless.mp4": Hostile(
            mp4_endless_boxes(), error="more than 10000 boxes: refusing to walk further", rules=frozenset({"readable"})
        ),
        PREFIX + "lies/really-a-jpeg.png": Hostile(
            small,
            facts=fine,
            rules=frozenset({"supported_format"}),
            message="the name ends in .png but the content is jpeg",
        ),
        PREFIX + "lies/text.mp4": Hostile(
            b"just some text, not a video\n",
            error="not a recognised image or video",
            rules=frozenset({"readable"}),
        ),
        PREFIX + "gone.jpg": Hostile(
            small, error="read failed: ", rules=frozenset({"readable"}), message="deleted after it was listed"
        ),
        PREFIX + "overwritten.jpg": Hostile(
            small, error="read failed: ", rules=frozenset({"readable"}), message="was overwritten after it was listed"
        ),
    }
    if provider in ("s3", "gcs"):
        # Object stores keep `.` and `..` segments as plain characters, and the key must not escape anything. Not
        # on disk (a folder cannot hold them) and not on Azure: its naming rules forbid path segments that end in
        # a dot, and the SDK's URL for such a name is normalised on the way (Azurite then rejects the signature).
        # They are read and judged like any key, and kept out of the manifest: CVAT would resolve them elsewhere.
        dots = frozenset({"manifest_name"})
        objects[PREFIX + "dots/../escape.jpg"] = Hostile(small, facts=fine, rules=dots, message="'.' or '..' segment")
        objects[PREFIX + "dots/./here.jpg"] = Hostile(small, facts=fine, rules=dots, message="'.' or '..' segment")
    return objects


def test_hostile_objects_are_recorded_with_their_reason(
    test_bucket: BucketUnderTest, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    objects = hostile_objects(test_bucket.provider)
    for key, item in objects.items():
        test_bucket.put(key, item.data)
    name = unique_name(test_bucket.provider)
    workspace.write_catalog(test_bucket.entry(name, prefix=PREFIX, profile="strict"))

    listed = run_sync(name, dagster_instance, log_level="WARNING", only=["object_listing"])
    assert listed.ok, listed.failures
    # Between listing and probe: one object disappears, one is replaced by different bytes.
    test_bucket.delete(PREFIX + "gone.jpg")
    test_bucket.put(PREFIX + "overwritten.jpg", synth.png(10, 10))
    rest = run_sync(name, dagster_instance, log_level="WARNING", only=["media_probes", "cvat_manifest", "media_index"])
    assert rest.ok, rest.failures

    keys = {k for (k,) in workspace.query("SELECT key FROM objects WHERE connection = $c", {"c": name})}
    assert keys == set(objects), keys ^ set(objects)
    with workspace.index.connect(read_only=True) as con:
        cur = con.execute("SELECT * FROM media WHERE connection = $c", {"c": name})
        cols = [d[0] for d in cur.description]
        media = {row[cols.index("key")]: dict(zip(cols, row, strict=True)) for row in cur.fetchall()}
    violations: dict[str, dict[str, str]] = {}
    for key, rule, message in workspace.query(
        "SELECT key, rule, message FROM violations WHERE connection = $c", {"c": name}
    ):
        violations.setdefault(key, {})[rule] = message

    problems = []
    for key, item in objects.items():
        row = media[key]
        error = row["error"] or ""
        if item.error is None and row["error"] is not None:
            problems.append(f"{key!r}: unexpected error {error!r}")
        if item.error is not None and not error.startswith(item.error):
            problems.append(f"{key!r}: error {error!r}, expected it to start with {item.error!r}")
        for fact, expected in (item.facts or {}).items():
            if row[fact] != expected:
                problems.append(f"{key!r}: {fact} = {row[fact]!r}, expected {expected!r}")
        if set(violations.get(key, {})) != set(item.rules):
            problems.append(f"{key!r}: rules {sorted(violations.get(key, {}))}, expected {sorted(item.rules)}")
        if item.message and not any(item.message in m for m in violations.get(key, {}).values()):
            problems.append(f"{key!r}: no violation says {item.message!r}: {violations.get(key)}")
        if row["bytes_read"] is not None and row["bytes_read"] > READ_CEILING:
            problems.append(f"{key!r}: read {row['bytes_read']} bytes")
    assert not problems, "\n".join(problems)
    print(f"\n{test_bucket.provider}: {len(objects)} hostile objects, each recorded with its reason")
