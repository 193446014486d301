"""The local provider stays inside its root: what a symlink or a key points at outside it is never listed or read.

A folder used as a bucket is often a working directory full of links. Links within the root behave like the files
they point at; links that lead out (to a file or a folder), links that loop, and keys with `..` segments or an
absolute path are refused, so a catalog entry can never expose more than its root.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from assets.probes import probe_object
from demo import synth
from media.facts import MediaFacts
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


# -- what a file system has and an object store has not ----------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def shared_tree() -> Iterator[Path]:
    """A tree an unprivileged user can walk (pytest's tmp_path is private to root): root/ with a locked folder."""
    base = Path(tempfile.mkdtemp(prefix="bucket-sync-gaps-"))
    root = base / "root"
    (root / "open").mkdir(parents=True)
    (root / "locked" / "inner").mkdir(parents=True)
    for name in ("open/a.jpg", "locked/b.jpg", "locked/inner/c.jpg", "top.jpg"):
        (root / name).write_bytes(synth.jpeg(16, 16))
    for path in [base, *root.rglob("*"), root]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "locked").chmod(0o000)
    try:
        yield root
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(base)


def list_without_privileges(root: Path) -> tuple[list[str], list[str]]:
    """(keys, listing_gaps) of a walk by a user the permission bits apply to.

    Root reads a chmod 000 folder anyway, and CI runs as root: there the walk runs in a forked child that has
    dropped to `nobody` with setuid, so the scandir failure is real, not simulated.
    """

    def walk() -> tuple[list[str], list[str]]:
        bucket = LocalBucket(connection="gaps", root=str(root))
        listed = [k for batch in bucket.iter_listing("") for k in batch.column("key").to_pylist()]
        return listed, bucket.listing_gaps()

    if os.geteuid() != 0:
        return walk()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, walk, report, and leave without running any pytest machinery
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write_end, json.dumps(walk()).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert "error" not in report, report
    listed, gaps = report
    return listed, gaps


def test_an_unreadable_folder_is_reported_as_a_gap_and_not_as_deleted_files(shared_tree: Path) -> None:
    listed, gaps = list_without_privileges(shared_tree)
    assert listed == ["open/a.jpg", "top.jpg"]
    assert gaps == ["locked/"]
    print(f"\nas uid {os.geteuid() or NOBODY}: {len(listed)} keys listed, gaps {gaps}")


def probe_with_timeout(bucket: LocalBucket, key: str, size: int, etag: str | None) -> MediaFacts:
    """probe_object in a thread: a read that blocks fails the test instead of hanging it."""
    result: list[MediaFacts] = []
    worker = threading.Thread(target=lambda: result.append(probe_object(bucket, key, size, etag)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), f"probe of {key!r} blocked"
    return result[0]


def test_a_fifo_swapped_in_after_listing_is_an_unreadable_object_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "clip.jpg").write_bytes(synth.jpeg(32, 32))
    bucket = LocalBucket(connection="fifo", root=str(tmp_path))
    (row,) = [r for batch in bucket.iter_listing("") for r in batch.to_pylist()]
    (tmp_path / "clip.jpg").unlink()
    os.mkfifo(tmp_path / "clip.jpg")  # no writer: a blocking open would wait forever
    facts = probe_with_timeout(bucket, row["key"], row["size"], row["etag"])
    assert facts.error == "'clip.jpg' is not a regular file (it is a FIFO); only regular files are read"
    assert facts.requests == 0
    assert [k for batch in bucket.iter_listing("") for k in batch.column("key").to_pylist()] == []


def test_a_sync_of_a_folder_with_names_that_are_not_utf8_completes(
    tmp_path: Path, workspace: Workspace, dagster_instance: DagsterInstance
) -> None:
    root = tmp_path / "names"
    root.mkdir()
    raw = os.fsencode(root)
    (root / "good.jpg").write_bytes(synth.jpeg(64, 48))
    Path(os.fsdecode(raw + b"/bad\xff.jpg")).write_bytes(synth.jpeg(64, 48))
    Path(os.fsdecode(raw + b"/folder\xe9")).mkdir()  # Latin-1 "folder\u00e9": a folder name from an old system
    Path(os.fsdecode(raw + b"/folder\xe9/inside.jpg")).write_bytes(synth.jpeg(64, 48))
    name = unique_name("local")
    workspace.write_catalog({"name": name, "provider": "local", "root": str(root)})
    outcome = run_sync(name, dagster_instance, log_level="WARNING")
    assert outcome.ok, outcome.failures
    errors = dict(workspace.query("SELECT key, error FROM media WHERE connection = $c", {"c": name}))
    rename = "rename it to UTF-8 so it can be read and keyed exactly"
    assert errors == {
        "good.jpg": None,
        "bad\\xff.jpg": f"file name is not valid UTF-8 (b'bad\\xff.jpg'); {rename}",
        "folder\\xe9/inside.jpg": f"file name is not valid UTF-8 (b'folder\\xe9/inside.jpg'); {rename}",
    }
    print(f"\n{len(errors)} objects indexed, {sum(e is not None for e in errors.values())} unreadable by name")
