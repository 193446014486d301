"""The local provider stays inside its root: what a symlink or a key points at outside it is never listed or read.

A folder used as a bucket is often a working directory full of links. Links within the root behave like the files
they point at; links that lead out (to a file or a folder), links that loop, and keys with `..` segments or an
absolute path are refused, so a catalog entry can never expose more than its root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance

from media import synth
from pipelines.runner import run_sync
from resources.bucket import ObjectGone
from resources.local_bucket import LocalBucket
from tests.conftest import Workspace
from tests.integration.buckets import unique_name

pytestmark = pytest.mark.integration

SECRET = b"outside the root: must never be read\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with real files, links that stay inside, and links that lead out or loop; outside/ next to it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (outside / "folder").mkdir(parents=True)
    (root / "inside.jpg").write_bytes(synth.jpeg(64, 48))
    (root / "sub" / "nested.png").write_bytes(synth.png(20, 10))
    (outside / "secret.jpg").write_bytes(SECRET)
    (outside / "folder" / "also-secret.jpg").write_bytes(SECRET)
    (root / "link-to-inside.jpg").symlink_to(root / "inside.jpg")  # stays inside: listed and read
    (root / "linked-sub").symlink_to(root / "sub")  # a folder link inside: listed and read
    (root / "link-out.jpg").symlink_to(outside / "secret.jpg")  # leads out: not listed
    (root / "sub" / "linked-out-folder").symlink_to("../../outside/folder")  # relative, leads out: not listed
    (root / "sub" / "cycle").symlink_to(root)  # back to an ancestor: not walked again
    (root / "loop-a").symlink_to(root / "loop-b")  # a loop: skipped, no error
    (root / "loop-b").symlink_to(root / "loop-a")
    return root


def test_listing_skips_links_that_leave_the_root(tree: Path) -> None:
    bucket = LocalBucket(connection="local-root", root=str(tree))
    keys = sorted(k for batch in bucket.iter_listing("") for k in batch.column("key").to_pylist())
    assert keys == ["inside.jpg", "link-to-inside.jpg", "linked-sub/nested.png", "sub/nested.png"]


@pytest.mark.parametrize(
    "key",
    [
        "../outside/secret.jpg",
        "sub/../../outside/secret.jpg",
        "link-out.jpg",
        "sub/linked-out-folder/also-secret.jpg",
        "/etc/hostname",
        "loop-a",
        "inside.jpg\x00",
    ],
)
def test_no_key_reads_outside_the_root(tree: Path, key: str) -> None:
    bucket = LocalBucket(connection="local-root", root=str(tree))
    with pytest.raises(ObjectGone, match="root"):
        bucket.read_range(key, 0, 64)


def test_links_inside_the_root_still_work(tree: Path) -> None:
    bucket = LocalBucket(connection="local-root", root=str(tree))
    assert bucket.read_range("link-to-inside.jpg", 0, 3) == b"\xff\xd8\xff"
    assert bucket.read_range("linked-sub/nested.png", 0, 4) == b"\x89PNG"
    assert bucket.read_range("sub/../inside.jpg", 0, 3) == b"\xff\xd8\xff"  # `..` that stays inside is fine


def test_a_sync_of_the_root_indexes_only_what_is_inside(
    tree: Path, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    name = unique_name("local")
    workspace.write_catalog({"name": name, "provider": "local", "root": str(tree)})
    outcome = run_sync(name, dagster_instance, log_level="WARNING")
    assert outcome.ok, outcome.failures
    keys = {k for (k,) in workspace.query("SELECT key FROM objects WHERE connection = $c", {"c": name})}
    assert keys == {"inside.jpg", "link-to-inside.jpg", "linked-sub/nested.png", "sub/nested.png"}
    errors = workspace.query("SELECT key, error FROM media WHERE connection = $c AND error IS NOT NULL", {"c": name})
    assert errors == []
