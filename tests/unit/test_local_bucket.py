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


def test_paging_starts_at_the_token_instead_of_walking_the_tree_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders, files = 40, 5
    for i in range(folders):
        (tmp_path / f"d{i:02d}").mkdir()
        for j in range(files):
            (tmp_path / f"d{i:02d}" / f"f{j}.jpg").write_bytes(b"x")
    bucket = LocalBucket(connection="pages", root=str(tmp_path))
    expected = keys(bucket)
    real_scandir, calls = os.scandir, []

    def scandir(path: object) -> object:
        calls.append(path)
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr("resources.local_bucket.os.scandir", scandir)
    paged: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        batch, token = bucket.list_page("", token, page_size=files)
        paged += batch.column("key").to_pylist()
        pages += 1
        if token is None:
            break
    assert paged == expected
    # Each page reads the root, the folder the token is in, the one it fills and the next (to know more follow);
    # walking from the top for every page read all 41 folders per page.
    assert len(calls) <= 4 * pages, (len(calls), pages)
    print(f"\n{pages} pages of {files}: {len(calls)} folder reads (a walk from the top per page: {pages * 41})")
