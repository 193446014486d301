"""The local provider where a file system differs from an object store: unreadable folders, in-place rewrites,
FIFOs and devices, names that are not UTF-8, pseudo file systems, and paging through a big tree.

The unreadable-folder test here replaces `os.scandir` for one folder (tests run as root in CI, and root reads a
chmod 000 folder anyway); tests/integration/test_local_root.py checks the same with a real permission failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from resources.bucket import ConnectionMisconfigured, ConnectionStatus, ObjectUnreadable
from resources.local_bucket import LocalBucket


def keys(bucket: LocalBucket, prefix: str = "") -> list[str]:
    return [k for batch in bucket.iter_listing(prefix) for k in batch.column("key").to_pylist()]


def rows(bucket: LocalBucket) -> dict[str, dict[str, object]]:
    return {r["key"]: r for batch in bucket.iter_listing("") for r in batch.to_pylist()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for folder in ("a", "locked", "locked/inner", "z"):
        (root / folder).mkdir(parents=True)
    for name in ("a/1.jpg", "locked/2.jpg", "locked/inner/3.jpg", "z/4.jpg", "top.jpg"):
        (root / name).write_bytes(b"\xff\xd8\xff" + name.encode())
    return root


def test_an_unreadable_folder_is_a_gap_not_an_empty_folder(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_scandir = os.scandir
    locked = root / "locked"

    def scandir(path: os.PathLike[str] | str) -> object:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    bucket = LocalBucket(connection="gaps", root=str(root))
    monkeypatch.setattr("resources.local_bucket.os.scandir", scandir)
    assert keys(bucket) == ["a/1.jpg", "top.jpg", "z/4.jpg"]
    assert bucket.listing_gaps() == ["locked/"]
    batch, token = bucket.list_page("", None, page_size=10)
    assert (batch.column("key").to_pylist(), token, bucket.listing_gaps()) == (
        ["a/1.jpg", "top.jpg", "z/4.jpg"],
        None,
        ["locked/"],
    )
    monkeypatch.setattr("resources.local_bucket.os.scandir", real_scandir)
    assert keys(bucket) == ["a/1.jpg", "locked/2.jpg", "locked/inner/3.jpg", "top.jpg", "z/4.jpg"]
    assert bucket.listing_gaps() == []  # reset by every walk


def test_an_unreadable_root_is_a_gap_too(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def scandir(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    bucket = LocalBucket(connection="gaps", root=str(root))
    monkeypatch.setattr("resources.local_bucket.os.scandir", scandir)
    assert keys(bucket, "a/") == []
    assert bucket.listing_gaps() == ["a/"]


def test_version_changes_when_a_rewrite_restores_size_inode_and_mtime(root: Path) -> None:
    path = root / "top.jpg"
    bucket = LocalBucket(connection="ctime", root=str(root))
    before = rows(bucket)["top.jpg"]
    st = path.stat()
    time.sleep(0.05)  # the kernel stamps ctime from a coarse clock: let it tick before the rewrite
    with path.open("r+b") as f:  # in place: same inode, same size, other bytes
        f.write(b"\x00\x00\x00")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # what metadata tools do afterwards
    after = rows(bucket)["top.jpg"]
    assert (after["etag"], after["size"], after["last_modified"]) == (
        before["etag"],
        before["size"],
        before["last_modified"],
    )
    assert after["version"] != before["version"]
    assert after["version"] == f"{path.stat().st_ctime_ns:x}"


def test_fifos_sockets_and_devices_are_not_listed(root: Path) -> None:
    os.mkfifo(root / "a" / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "a" / "sock.jpg"))
    try:
        # S_IFCHR: /dev/null's twin. Not root: the FIFO and the socket still make the point.
        with contextlib.suppress(PermissionError):
            os.mknod(root / "a" / "null.jpg", 0o600 | 0o020000, os.makedev(1, 3))
        assert keys(LocalBucket(connection="kinds", root=str(root)), "a/") == ["a/1.jpg"]
    finally:
        sock.close()


@pytest.mark.parametrize("name", ["pipe.jpg", "null.jpg"])
def test_read_range_refuses_what_is_not_a_regular_file(root: Path, name: str) -> None:
    path = root / "a" / name
    if name == "pipe.jpg":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, 0o600 | 0o020000, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root")
    kind = "FIFO" if name == "pipe.jpg" else "character device"
    bucket = LocalBucket(connection="kinds", root=str(root))
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(bucket.read_range(f"a/{name}", 0, 16))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)  # a blocking open fails the test instead of hanging it
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "read_range blocked"
    assert isinstance(outcome[0], ObjectUnreadable), outcome
    assert str(outcome[0]) == f"'a/{name}' is not a regular file (it is a {kind}); only regular files are read"


def test_a_name_that_is_not_utf8_is_listed_escaped_and_read_as_a_verdict(root: Path) -> None:
    raw_root = os.fsencode(root)
    Path(os.fsdecode(raw_root + b"/bad\xff.jpg")).write_bytes(b"\xff\xd8\xff")
    Path(os.fsdecode(raw_root + b"/dir\xfe")).mkdir()
    Path(os.fsdecode(raw_root + b"/dir\xfe/x.jpg")).write_bytes(b"\xff\xd8\xff")
    (root / "lit\\xff.jpg").write_bytes(b"real")  # a valid name with a literal backslash: read as itself
    bucket = LocalBucket(connection="names", root=str(root))
    listed = keys(bucket)
    assert {"bad\\xff.jpg", "dir\\xfe/x.jpg", "lit\\xff.jpg"} <= set(listed)
    assert all(k.encode("utf-8") for k in listed)  # every key encodes: no surrogates reach Arrow or a log line
    with pytest.raises(ObjectUnreadable) as caught:
        bucket.read_range("bad\\xff.jpg", 0, 3)
    assert str(caught.value).startswith("file name is not valid UTF-8 (b'bad\\xff.jpg'); rename it to UTF-8")
    with pytest.raises(ObjectUnreadable, match=r"\(b'dir\\xfe/x.jpg'\)"):
        bucket.read_range("dir\\xfe/x.jpg", 0, 3)
    assert bucket.read_range("lit\\xff.jpg", 0, 4) == b"real"


@pytest.mark.parametrize("bad_root", ["/proc", "/proc/self", "/sys", "/dev", "/sys/kernel"])
def test_pseudo_file_system_roots_are_refused(bad_root: str) -> None:
    bucket = LocalBucket(connection="kernel", root=bad_root)
    outcome = bucket.test()
    assert outcome.status is ConnectionStatus.MISCONFIGURED
    assert outcome.detail.startswith("field 'root': ")
    assert "pseudo file system" in outcome.detail
    with pytest.raises(ConnectionMisconfigured, match=r"connection 'kernel', field 'root': .* pseudo file system"):
        keys(bucket)
    with pytest.raises(ConnectionMisconfigured, match="field 'root'"):
        bucket.read_range("cpuinfo", 0, 10)


@pytest.mark.parametrize("odd_root", ["/", "/etc", "/usr", "/var"])
def test_the_whole_disk_or_a_system_folder_as_root_warns(odd_root: str) -> None:
    bucket = LocalBucket(connection="odd", root=odd_root)
    assert bucket.root_warnings()
    outcome = bucket.test()
    assert outcome.status is ConnectionStatus.AVAILABLE
    assert "warning: root is" in outcome.detail


def test_an_ordinary_root_has_no_warnings(root: Path) -> None:
    bucket = LocalBucket(connection="fine", root=str(root))
    assert bucket.root_warnings() == []
    assert "warning" not in bucket.test().detail


def count_scandir(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every folder the local provider reads from now on, in order."""
    real_scandir, calls = os.scandir, []

    def scandir(path: object) -> object:
        calls.append(path)
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr("resources.local_bucket.os.scandir", scandir)
    return calls


def page_through(bucket: LocalBucket, prefix: str, page_size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        batch, token = bucket.list_page(prefix, token, page_size=page_size)
        pages.append(batch.column("key").to_pylist())
        if token is None:
            return pages


@pytest.mark.parametrize("page_size", [1, 7, 100, 250, 1000])
def test_a_paged_listing_reads_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page_size: int
) -> None:
    files = 1000
    (tmp_path / "flat").mkdir()
    for i in range(files):
        (tmp_path / "flat" / f"IMG_{i:05d}.jpg").write_bytes(b"x")
    bucket = LocalBucket(connection="pages", root=str(tmp_path))
    calls = count_scandir(monkeypatch)
    pages = page_through(bucket, "flat/", page_size)
    keys = [k for page in pages for k in page]
    assert keys == [f"flat/IMG_{i:05d}.jpg" for i in range(files)]  # every key once, in key order
    assert [len(page) for page in pages] == [page_size] * (files // page_size) + [files % page_size] * bool(
        files % page_size
    )
    # The walk that served a page is kept for the next: the folder is read once, however many pages it takes.
    assert calls == [str(tmp_path / "flat")]


def test_a_paged_tree_reads_each_folder_once_and_matches_the_full_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = [f"d{i:02d}" for i in range(12)] + [f"d03/sub{j}" for j in range(3)] + ["empty"]
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    for folder in folders[:-1]:
        for j in range(9):
            (tmp_path / folder / f"f{j}.jpg").write_bytes(b"x")
    bucket = LocalBucket(connection="pages", root=str(tmp_path))
    expected = keys(bucket)
    calls = count_scandir(monkeypatch)
    paged = [k for page in page_through(bucket, "", 4) for k in page]
    assert paged == expected and len(set(paged)) == len(paged)
    assert "empty/" in paged  # the empty folder's marker comes through a page boundary too
    assert len(calls) == len(set(calls)) == len(folders) + 1  # each folder and the root, once


def test_two_pagings_of_one_bucket_do_not_disturb_each_other(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"{i:02d}.jpg").write_bytes(b"x")
    bucket = LocalBucket(connection="pages", root=str(tmp_path))
    first, token_a = bucket.list_page("", None, page_size=10)
    second, token_b = bucket.list_page("", None, page_size=4)
    rest_a, _ = bucket.list_page("", token_a, page_size=10)
    rest_b, _ = bucket.list_page("", token_b, page_size=4)
    assert first.column("key").to_pylist() + rest_a.column("key").to_pylist() == [f"{i:02d}.jpg" for i in range(20)]
    assert second.column("key").to_pylist() + rest_b.column("key").to_pylist() == [f"{i:02d}.jpg" for i in range(8)]


def test_paging_starts_at_the_token_instead_of_walking_the_tree_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token without a kept walk (a new process, the sensor's next tick) resumes from the token alone."""
    folders, files = 40, 5
    for i in range(folders):
        (tmp_path / f"d{i:02d}").mkdir()
        for j in range(files):
            (tmp_path / f"d{i:02d}" / f"f{j}.jpg").write_bytes(b"x")
    expected = keys(LocalBucket(connection="pages", root=str(tmp_path)))
    calls = count_scandir(monkeypatch)
    paged: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        # A new instance for every page: nothing is carried over but the token.
        batch, token = LocalBucket(connection="pages", root=str(tmp_path)).list_page("", token, page_size=files)
        paged += batch.column("key").to_pylist()
        pages += 1
        if token is None:
            break
    assert paged == expected
    # Each page reads the root, the folder the token is in, the one it fills and the next (to know more follow);
    # walking from the top for every page read all 41 folders per page.
    assert len(calls) <= 4 * pages, (len(calls), pages)
    print(f"\n{pages} pages of {files}: {len(calls)} folder reads (a walk from the top per page: {pages * 41})")


def test_the_root_is_resolved_once_per_open(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads resolve only the key's own segments: resolving the root again was most of a read's CPU."""
    real_realpath, resolved = os.path.realpath, []

    def realpath(path: object, *args: object, **kwargs: object) -> str:
        resolved.append(os.fspath(path))  # type: ignore[arg-type]
        return real_realpath(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os.path, "realpath", realpath)
    bucket = LocalBucket(connection="once", root=str(root))
    listed = keys(bucket)
    for _ in range(3):
        for key in listed:
            assert bucket.read_range(key, 0, 3) == b"\xff\xd8\xff"
    page_through(bucket, "", 2)
    assert resolved == [str(root)]
    reopened = LocalBucket(connection="once", root=str(root))
    reopened.read_range("a/1.jpg", 0, 3)
    assert resolved == [str(root), str(root)]  # once per open, not once per process
