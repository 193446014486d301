"""A folder on disk as a bucket: the embedded default for the demo and for datasets that already sit on disk.

Listing and reads use the operating system directly; obstore's LocalStore would add nothing here and follows
symlinks wherever they lead, while this provider must stay inside its root.

A file system is not an object store, and the differences are handled here: a folder the walk cannot read is a gap
in the listing (`listing_gaps`), not a folder of deleted files; only regular files are listed and read (a FIFO or a
device swapped in would block a read forever); a name that is not valid UTF-8 is listed under an escaped key and
read as a verdict ("rename it"), never a crash; and a root on a pseudo file system (/proc, /sys, /dev) is refused.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from media.cvat import MANIFEST_FILE
from resources.bucket import (
    BucketError,
    ConnectionMisconfigured,
    ConnectionStatus,
    ConnectionTest,
    ObjectGone,
    ObjectUnreadable,
    ObjectVersion,
    WriteConflict,
    WriteDenied,
    batch_from_rows,
    changed,
    gone,
)

log = logging.getLogger(__name__)

#: Roots on these mount points are kernel views, not data: /proc alone lists thousands of zero-byte "files".
_PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
#: File system types that are kernel views wherever they are mounted (read from /proc/self/mountinfo).
_PSEUDO_FS_TYPES = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs",
     "pstore", "bpf", "mqueue", "hugetlbfs", "fusectl", "binfmt_misc", "efivarfs", "autofs", "rpc_pipefs"}
)  # fmt: skip
#: Roots that work but are almost always a mistake: the whole disk, or a system folder full of non-media files.
_SYSTEM_ROOTS = frozenset(
    Path(p) for p in ("/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/var", "/run")
)
#: How backslashreplace spells an undecodable byte; only bytes >= 0x80 can be undecodable in UTF-8.
_ESCAPED_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")


def local_etag(st: os.stat_result) -> str:
    """Changes whenever the file is replaced or rewritten; survives a rename (same inode), which move detection uses."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def key_name(name: str) -> str:
    """The key segment for a file name: itself when it is valid UTF-8, else its bytes with the bad ones escaped.

    `os.scandir` hands back undecodable bytes as surrogates, which no Parquet/Arrow string and no log line can
    hold; `\\xNN` keeps the key readable and unique, and `read_range` recognises it to say what to rename.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _sort_key(entry: os.DirEntry[str]) -> str:
    """An entry's key as a bucket orders it (a folder as `name/`); a symlink loop or dangling link is a plain name."""
    name = key_name(entry.name)
    try:
        return name + "/" if entry.is_dir() else name
    except OSError:
        return name


#: A key made of plain segments: no empty, `.` or `..` segment, no leading or trailing `/`, no NUL.
_PLAIN_KEY = re.compile(r"(?!\.\.?(?:/|$))[^/\x00]+(?:/(?!\.\.?(?:/|$))[^/\x00]+)*")
#: Paged listings one instance keeps walks for; more would only be abandoned pagings holding folder listings.
_MAX_CURSORS = 4


def _plain_path_mode(root_prefix: str, key: str) -> int | None:
    """The mode of the file at a plain `key` under the resolved root when no segment on the way is a symlink, else None.

    Only the key's own segments are checked (one lstat each): the root is resolved once, when the bucket is opened.
    """
    path = root_prefix
    *folders, _ = key.split("/")
    for folder in folders:
        path += folder
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return None  # a symlink (or no folder at all): the full resolution decides
        path += "/"
    mode = os.lstat(root_prefix + key).st_mode
    return None if stat.S_ISLNK(mode) else mode


def _root_warnings(root: Path) -> list[str]:
    """What is odd about a resolved root that still works (see `LocalBucket.root_warnings`)."""
    if root == Path("/"):
        return ["root is / : a sync would walk the whole disk; point `root` at the folder that holds the media"]
    if root in _SYSTEM_ROOTS:
        return [f"root is the system folder {root}: it holds system files, not media; is `root` a mistake?"]
    return []


class _Root(NamedTuple):
    """A bucket's root, resolved: as a path, and as the text every key is appended to."""

    path: Path
    prefix: str


class _Walk:
    """A walk in progress: its entries, the one already read to learn whether more follow, and its gaps."""

    __slots__ = ("_entries", "_pending", "gaps")

    def __init__(self, entries: Iterator[tuple[str, os.stat_result | None]], gaps: list[str]) -> None:
        self._entries, self.gaps = entries, gaps
        self._pending: tuple[str, os.stat_result | None] | None = None

    def rows(
        self, count: int, row: Callable[[str, os.stat_result | None], dict[str, object]]
    ) -> list[dict[str, object]]:
        """Up to `count` listing rows, continuing where the last call stopped."""
        out: list[dict[str, object]] = []
        if self._pending is not None:
            out.append(row(*self._pending))
            self._pending = None
        for key, st in islice(self._entries, count - len(out)):
            out.append(row(key, st))
        return out

    def more(self) -> bool:
        """Whether another entry follows (it is read now and served first by the next `rows`)."""
        if self._pending is None:
            self._pending = next(self._entries, None)
        return self._pending is not None


def _mount_fs_type(path: Path) -> str | None:
    """The type of the file system `path` lies on, from the longest matching mount point; None if unknown."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, fs_type = -1, None
    for line in lines:
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        mount = Path(fields[4].replace("\\040", " "))
        if (path == mount or mount in path.parents) and len(mount.parts) > best:
            best, fs_type = len(mount.parts), line.split(" - ", 1)[1].split(" ")[0]
    return fs_type


class LocalBucket(ConfigurableResource):
    """A local folder served through the Bucket protocol."""

    connection: str
    root: str
    #: The connection's prefix when it publishes its manifests (`publish_manifest`), else None: no write at all.
    publish_prefix: str | None = None

    # Folders (keys ending in "/") the walk that served the last listing or page could not read.
    _gaps: list[str] = PrivateAttr(default_factory=list)
    # The root, resolved and vetted once per open (per instance): resolving it again on every read was most of a
    # read's CPU, more than the I/O.
    _resolved_root: _Root | None = PrivateAttr(default=None)
    # Paged listings in progress, by (prefix, token of their next page): a page resumes its walk where the last one
    # stopped instead of reading the tree again.
    _cursors: dict[tuple[str, str], _Walk] = PrivateAttr(default_factory=dict)

    @property
    def connection_name(self) -> str:
        return self.connection

    @property
    def provider(self) -> str:
        return "local"

    def _vetted_root(self) -> _Root:
        """The root, resolved and vetted on first use; every later call returns the same one."""
        resolved = self._resolved_root
        if resolved is None:
            root = Path(self.root).resolve()
            problem = self._pseudo_fs_problem(root)
            if problem:
                raise ConnectionMisconfigured(f"connection '{self.connection}', field 'root': {problem}")
            for warning in _root_warnings(root):
                log.warning("connection '%s': %s", self.connection, warning)
            resolved = self._resolved_root = _Root(root, str(root).rstrip("/") + "/")
        return resolved

    @property
    def _root(self) -> Path:
        return self._vetted_root().path

    @staticmethod
    def _pseudo_fs_problem(root: Path) -> str | None:
        """Why `root` cannot be a bucket (it is a kernel view such as /proc), or None."""
        for pseudo in _PSEUDO_ROOTS:
            if root == pseudo or pseudo in root.parents:
                return f"{root} is on the {pseudo} pseudo file system, not a folder of files; point `root` at your data"
        fs_type = _mount_fs_type(root)
        if fs_type in _PSEUDO_FS_TYPES:
            return f"{root} is on a '{fs_type}' pseudo file system, not a folder of files; point `root` at your data"
        return None

    def root_warnings(self) -> list[str]:
        """What is odd about a root that still works: the whole disk or a system folder, almost always a mistake.

        Shown in the connection test's detail and logged when the root is first used; the caller decides whether
        to go on.
        """
        return _root_warnings(Path(self.root).resolve())

    def cors_rules(self) -> None:
        """A folder is not served to browsers: CORS does not apply."""
        return None

    def listing_gaps(self) -> list[str]:
        """Folders (keys ending in "/") the last full walk could not read, after `iter_listing` is exhausted.

        An unreadable folder lists as empty; without this its files would read as deleted. The listing asset keeps
        what it last knew under these prefixes instead.
        """
        return list(self._gaps)

    def _gap(self, gaps: list[str], rel: str, exc: OSError) -> None:
        if rel not in gaps:
            gaps.append(rel)
            log.warning(
                "connection '%s': cannot read folder '%s' (%s); its objects are not listed",
                self.connection,
                rel,
                exc.strerror or exc,
            )

    def _inside(self, path: Path) -> bool:
        root = self._root
        return path == root or root in path.parents

    def _resolved_inside(self, path: str) -> bool:
        """Whether `path`, with every symlink resolved, stays inside the root. A symlink loop or an unreadable link
        counts as outside: it is skipped, never followed."""
        try:
            return self._inside(Path(path).resolve(strict=True))
        except (OSError, RuntimeError):
            return False

    def _walk(
        self,
        folder: str,
        rel: str,
        gaps: list[str],
        ancestors: frozenset[tuple[int, int]] = frozenset(),
        after: str | None = None,
    ) -> Iterator[tuple[str, os.stat_result | None]]:
        """Depth-first in key order, never leaving the root: symlinks are followed only where they stay inside it.

        Entries sort by their key as a bucket would list it (a folder as `name/`), so the walk yields keys in the
        same byte order as S3, GCS and Azure, and a listing can resume after any key. `ancestors` holds the
        (device, inode) of every folder on the way down, so a symlink back to one of them (a cycle) is not followed:
        without it a link to its own parent would list the same files under ever longer keys.

        Each folder is read once, when the walk reaches it; a paged listing keeps this generator between pages
        (`_Walk`), so paging reads the tree once, like one full listing. A folder that cannot be read (permissions,
        I/O error) is recorded in `gaps`, never walked as empty. `after` (a page token, when no walk is kept for it)
        skips, without descending, every folder whose keys all sort before it, so a resumed walk reads only the
        folders on the token's path and those after it. Only regular files and folders are listed: FIFOs, sockets
        and devices are not objects.
        """
        try:
            here = Path(folder).stat()
            if (here.st_dev, here.st_ino) in ancestors:
                return
            ancestors = ancestors | {(here.st_dev, here.st_ino)}
            with os.scandir(folder) as listing:
                entries = [(_sort_key(entry), entry) for entry in listing]
        except (FileNotFoundError, NotADirectoryError):
            return  # gone since its parent was read: a real deletion
        except OSError as exc:
            self._gap(gaps, rel, exc)
            return
        if not entries and rel and (after is None or rel > after):
            yield rel, None  # an empty folder is this provider's folder marker
        entries.sort(key=itemgetter(0))
        if after is not None and after.startswith(rel):
            # Skip what sorts before the token without looking at it: only the entry just before the token's place
            # can be the folder that holds it.
            entries = entries[max(bisect_left(entries, after[len(rel) :], key=itemgetter(0)) - 1, 0) :]
        for name, entry in entries:
            key = rel + name
            if entry.is_symlink() and not self._resolved_inside(entry.path):
                continue
            try:
                if entry.is_dir():
                    if after is not None and key < after and not after.startswith(key):
                        continue  # every key under it sorts before the token
                    yield from self._walk(entry.path, key, gaps, ancestors, after)
                elif entry.is_file() and (after is None or key > after):
                    yield key, entry.stat()
            except FileNotFoundError:
                continue  # deleted while the folder was being read
            except OSError as exc:
                self._gap(gaps, rel, exc)  # listed but not stat-able (a folder without search permission): not deleted
                continue

    @staticmethod
    def _row(key: str, st: os.stat_result | None) -> dict[str, object]:
        if st is None:
            return {"key": key, "size": 0}  # a folder marker: its key already ends in "/"
        return {
            "key": key,
            "size": st.st_size,
            "etag": local_etag(st),
            "last_modified": datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC),
            # The change time moves on every write, even one that restores size and mtime afterwards (metadata tools
            # rewrite in place, then put the mtime back). It is not in the etag: a rename changes it too, and move
            # detection pairs renames by etag.
            "version": f"{st.st_ctime_ns:x}",
        }

    def _start(self, prefix: str, after: str | None = None) -> _Walk:
        """A new walk of the tree under `prefix` (resuming after the key `after`); its gaps become `listing_gaps`."""
        root = self._vetted_root()
        gaps: list[str] = []
        self._gaps = gaps
        start = str(root.path / prefix)
        entries = self._walk(start, prefix, gaps, after=after) if Path(start).is_dir() else iter(())
        return _Walk(entries, gaps)

    def iter_listing(self, prefix: str, page_size: int = 1000) -> Iterator[pa.RecordBatch]:
        walk = self._start(prefix)
        while rows := walk.rows(page_size, self._row):
            yield batch_from_rows(rows)

    def list_page(self, prefix: str, token: str | None, page_size: int = 1000) -> tuple[pa.RecordBatch, str | None]:
        """The token is the last key served. The walk that served it is kept, so the next page carries on from
        where it stopped: a paged listing reads every folder once, as a full listing does.

        A token this instance has no walk for (a new process, a sensor's next tick) starts a walk after it, which
        reads only the folders on the token's path and those after it. Walking the tree from the top for every page
        made paging quadratic in the number of files.
        """
        walk = self._cursors.pop((prefix, token), None) if token is not None else None
        if walk is None:
            walk = self._start(prefix, after=token)
        self._gaps = walk.gaps
        rows = walk.rows(max(page_size, 1), self._row)
        if not rows or not walk.more():
            return batch_from_rows(rows), None
        next_token = str(rows[-1]["key"])
        self._cursors[(prefix, next_token)] = walk
        while len(self._cursors) > _MAX_CURSORS:  # abandoned pagings: drop the oldest
            del self._cursors[next(iter(self._cursors))]
        return batch_from_rows(rows), next_token

    def _path(self, key: str) -> tuple[str, int]:
        """The file behind `key`, refused unless it lies inside the root, and its mode (the link itself not followed).

        A key of plain segments is checked with one lstat per segment from the resolved root: when no segment is a
        symlink, the path is its own resolution. Anything else (a symlink on the way, `.` or `..` segments, an empty
        segment) is resolved in full: absolute keys, `..` segments and symlinks (to files or folders) that lead out
        are all caught on the resolved path, because that is the path the read will open.
        """
        root = self._vetted_root()
        if _PLAIN_KEY.fullmatch(key):
            path = root.prefix + key
            try:
                mode = _plain_path_mode(root.prefix, key)
            except FileNotFoundError:
                raise gone(key) from None
            except OSError:
                mode = None  # not a folder on the way, a name too long: let the full resolution decide
            if mode is not None:
                return path, mode
        try:
            resolved = (root.path / key).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, an embedded NUL
            raise ObjectGone(f"'{key}' cannot be resolved inside the connection's root ({exc})") from None
        if not self._inside(resolved):
            raise ObjectGone(f"'{key}' resolves outside the connection's root; refusing to read it")
        try:
            return str(resolved), resolved.stat().st_mode
        except FileNotFoundError:
            raise gone(key) from None

    def _undecodable_name(self, key: str) -> bytes | None:
        """The real (not UTF-8) relative path behind an escaped key from `key_name`, when such a file exists.

        A key with `\\xNN` escapes whose own path does not exist, while the path with the escapes turned back into
        bytes does, is a name the listing had to escape; a literal backslash in a real name keeps its own path.
        """
        raw = key.encode("utf-8")
        if not _ESCAPED_BYTE.search(raw):
            return None
        unescaped = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
        try:
            unescaped.decode("utf-8")
            return None
        except UnicodeDecodeError:
            pass
        if os.path.lexists(self._root / key) or not os.path.lexists(os.fsencode(self._root) + b"/" + unescaped):
            return None
        return unescaped

    def head(self, key: str) -> dict[str, object] | None:
        """The row the listing gives for `key` (one stat, following a symlink inside the root as the walk does), or
        None when there is no regular file there: gone, a folder, a FIFO, or a path that leads out of the root."""
        raw_name = self._undecodable_name(key)
        try:
            if raw_name is not None:  # a name the listing had to escape: stat the real bytes
                st = os.stat(os.fsencode(self._root) + b"/" + raw_name)  # noqa: PTH116 (a bytes path)
            else:
                st = Path(self._path(key)[0]).stat()
        except (ObjectGone, FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BucketError(f"connection '{self.connection}': reading the state of '{key}' failed: {exc}") from None
        return self._row(key, st) if stat.S_ISREG(st.st_mode) else None

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        raw_name = self._undecodable_name(key)
        if raw_name is not None:
            raise ObjectUnreadable(
                f"file name is not valid UTF-8 ({raw_name!r}); rename it to UTF-8 so it can be read and keyed exactly"
            )
        path, mode = self._path(key)
        # Refuse what is not a regular file before opening it: opening some devices has side effects.
        _refuse_unless_regular(key, mode)
        try:
            # O_NOFOLLOW: the path is already resolved, so a symlink here was swapped in after the check.
            # O_NONBLOCK: a FIFO swapped in after that check must not block the open (and the sync) forever.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError as exc:
            raise gone(key) from exc
        try:
            st = os.fstat(fd)
            _refuse_unless_regular(key, st.st_mode)  # what was opened, whatever the path said
            if etag and local_etag(st) != etag:
                raise changed(key)
            return os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)

    # --- the one write: a manifest, for a connection that publishes ----------------------------------------------

    def _manifest_path(self, key: str) -> Path:
        """Where `key` is written: a `.jsonl` under the prefix of a connection that publishes, inside the root with
        every symlink resolved; anything else is refused."""
        prefix = self.publish_prefix
        if prefix is None:
            raise BucketError(
                f"connection '{self.connection}': refusing to write '{key}': publish_manifest is off, and a "
                "connection that does not publish never writes to its folder"
            )
        plain = all(part not in ("", ".", "..") for part in key.split("/"))
        if not (key.startswith(prefix) and key.endswith(".jsonl") and plain):
            raise BucketError(
                f"connection '{self.connection}': refusing to write '{key}': only manifests (.jsonl) under the "
                f"prefix '{prefix}' are ever written"
            )
        folder = (self._root / key).parent.resolve()
        if not self._inside(folder):
            raise BucketError(f"connection '{self.connection}': refusing to write '{key}': it lies outside the root")
        return folder / key.rsplit("/", 1)[-1]

    def put_manifest(self, key: str, data: bytes, expected: ObjectVersion | None) -> ObjectVersion:
        """Written beside the target and renamed over it, so a reader sees the old file or the new one, whole. A
        folder has no conditional rename: the version is checked just before, which holds because one connection is
        synced by one run at a time."""
        target = self._manifest_path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            current = local_etag(target.lstat()) if target.exists() or target.is_symlink() else None
            if current != (expected.etag if expected else None) or target.is_symlink():
                raise WriteConflict(f"connection '{self.connection}': '{key}' is not the version bucket-sync wrote")
            staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            staged.write_bytes(data)
            try:
                if expected is None:
                    os.link(staged, target)  # fails if a file appeared meanwhile: create only
                else:
                    staged.replace(target)
            finally:
                staged.unlink(missing_ok=True)
            return ObjectVersion(etag=local_etag(target.stat()))
        except FileExistsError:
            raise WriteConflict(f"connection '{self.connection}': '{key}' appeared while it was written") from None
        except PermissionError:
            raise WriteDenied(
                f"connection '{self.connection}': writing '{key}' is not allowed: {self._write_remedy(target)}"
            ) from None

    def read_manifest(self, key: str) -> tuple[bytes, ObjectVersion] | None:
        target = self._manifest_path(key)
        try:
            with target.open("rb") as file:
                return file.read(), ObjectVersion(etag=local_etag(os.fstat(file.fileno())))
        except FileNotFoundError:
            return None

    @staticmethod
    def _write_remedy(target: Path) -> str:
        return f"grant the user that runs Dagster write permission on the folder {target.parent} (and on {target})"

    def _test_write(self) -> tuple[ConnectionStatus, str, str]:
        """Whether the manifest may be written, from permissions alone: nothing is created."""
        key = f"{self.publish_prefix or ''}{MANIFEST_FILE}"
        target = self._manifest_path(key)
        folder = next((p for p in (target.parent, *target.parent.parents) if p.exists()), target.parent)
        writable = os.access(target, os.W_OK) if target.exists() else os.access(folder, os.W_OK | os.X_OK)
        if writable:
            return ConnectionStatus.AVAILABLE, f"may write the manifest {target} (publish_manifest)", ""
        return (
            ConnectionStatus.FORBIDDEN,
            f"may not write the manifest {target}, which publish_manifest needs",
            self._write_remedy(target),
        )

    def test(self) -> ConnectionTest:
        root = Path(self.root)
        status, detail, remedy = ConnectionStatus.AVAILABLE, f"folder {root} is readable", ""
        problem = self._pseudo_fs_problem(root.resolve())
        if problem:
            return ConnectionTest(
                self.connection,
                "local",
                ConnectionStatus.MISCONFIGURED,
                f"field 'root': {problem}",
                "point `root` at a folder of media files",
            )
        if not root.exists():
            status, detail = ConnectionStatus.NOT_FOUND, f"folder {root} does not exist"
            remedy = "create the folder or fix `root` in the catalog (relative roots resolve from the catalog's folder)"
        elif not root.is_dir():
            status, detail, remedy = (
                ConnectionStatus.MISCONFIGURED,
                f"{root} is not a folder",
                "point `root` at a folder",
            )
        elif not os.access(root, os.R_OK | os.X_OK):
            status, detail = ConnectionStatus.FORBIDDEN, f"folder {root} cannot be listed by this user"
            remedy = "grant read and execute permission on the folder to the user that runs Dagster"
        if status is ConnectionStatus.AVAILABLE and self.publish_prefix is not None:
            status, written, remedy = self._test_write()
            detail = f"{detail}; {written}" if status is ConnectionStatus.AVAILABLE else f"{detail}, but {written}"
        warnings = self.root_warnings()
        if warnings and status is ConnectionStatus.AVAILABLE:
            detail = f"{detail}; warning: {'; '.join(warnings)}"
        return ConnectionTest(self.connection, "local", status, detail, remedy)


def _refuse_unless_regular(key: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise ObjectUnreadable(
            f"'{key}' is not a regular file (it is a {_file_type(mode)}); only regular files are read"
        )


def _file_type(mode: int) -> str:
    """A file type in words, for a message about why it was not read."""
    for check, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "folder"),
    ):
        if check(mode):
            return name
    return f"file of type {stat.S_IFMT(mode):o}"
