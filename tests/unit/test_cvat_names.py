"""Manifest names are cut from keys as text, stay unique, and keys CVAT cannot address stay out with a reason."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.probes import PROBES_SCHEMA, VIOLATIONS_SCHEMA, reject_name_collisions
from media.cvat import NAME_SQL, split_name, unaddressable_reason
from media.facts import MediaFacts
from media.rules import judge


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a/b.jpg", ("a/b", ".jpg")),
        ("a//b.jpg", ("a//b", ".jpg")),
        ("odd/a.JPG", ("odd/a", ".JPG")),
        ("x.tar.gz", ("x.tar", ".gz")),
        ("dir/.hidden", ("dir/.hidden", "")),
        ("trailing.", ("trailing.", "")),
        ("b..jpg", ("b.", ".jpg")),
        ("folder.d/noext", ("folder.d/noext", "")),
    ],
)
def test_names_keep_every_character_of_the_key(key: str, expected: tuple[str, str]) -> None:
    name, extension = split_name(key)
    assert (name, extension) == expected
    assert name + extension == key  # the name maps back to exactly one key
    if "//" not in key:
        assert extension == PurePosixPath(key).suffix  # same extension rule as a path library, without normalising


@pytest.mark.parametrize("key", ["a/b.jpg", "a//b.jpg", "odd/a.JPG", "dir/.hidden", "b..jpg", "x.tar.gz", "é/ü.png"])
def test_the_sql_name_is_the_python_name(key: str) -> None:
    (name,) = duckdb.execute(f"SELECT {NAME_SQL} FROM (SELECT $k AS key)", {"k": key}).fetchone()
    assert name == split_name(key)[0]


@pytest.mark.parametrize(
    ("key", "word"),
    [
        ("/lead.jpg", "absolute"),
        ("a//b.jpg", "empty"),
        ("a/../b.jpg", "'..'"),
        ("./a.jpg", "'.'"),
        ("a\x1bb.jpg", "control"),
    ],
)
def test_unaddressable_keys_get_a_manifest_name_violation(key: str, word: str) -> None:
    reason = unaddressable_reason(key)
    assert reason is not None and word in reason
    facts = MediaFacts(kind="image", format="jpeg", width=10, height=10, display_width=10, display_height=10)
    found = [v for v in judge(facts, key, "cvat") if v.rule == "manifest_name"]
    assert len(found) == 1 and "left out of the manifest" in found[0].message and "rename" in found[0].remediation


def test_plain_keys_are_addressable() -> None:
    assert unaddressable_reason("photos/2024/a b.jpg") is None


def test_keys_that_share_a_name_keep_only_the_first(tmp_path: Path) -> None:
    probes, violations = tmp_path / "probes.parquet", tmp_path / "violations.parquet"
    rows = [
        {"key": k, "size": 1, "accepted": True, "kind": "image", "manifest_width": 4, "manifest_height": 3}
        for k in ("odd/a.jpg", "odd/a.JPG", "odd/a.jpeg", "odd/b.jpg")
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROBES_SCHEMA), probes)
    pq.write_table(pa.Table.from_pylist([], schema=VIOLATIONS_SCHEMA), violations)
    assert reject_name_collisions(duckdb.connect(), probes, violations) == 2
    accepted = {r["key"]: r["accepted"] for r in pq.read_table(probes, columns=["key", "accepted"]).to_pylist()}
    assert accepted == {"odd/a.JPG": True, "odd/a.jpeg": False, "odd/a.jpg": False, "odd/b.jpg": True}
    found = pq.read_table(violations).to_pylist()
    assert {v["key"] for v in found} == {"odd/a.jpeg", "odd/a.jpg"}
    assert all(v["rule"] == "manifest_name" and "'odd/a.JPG'" in v["message"] for v in found)


def test_no_collision_leaves_the_snapshots_untouched(tmp_path: Path) -> None:
    probes, violations = tmp_path / "probes.parquet", tmp_path / "violations.parquet"
    rows = [{"key": k, "size": 1, "accepted": True, "kind": "image"} for k in ("a.jpg", "b.jpg")]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROBES_SCHEMA), probes)
    pq.write_table(pa.Table.from_pylist([], schema=VIOLATIONS_SCHEMA), violations)
    before = probes.stat().st_mtime_ns
    assert reject_name_collisions(duckdb.connect(), probes, violations) == 0
    assert probes.stat().st_mtime_ns == before
