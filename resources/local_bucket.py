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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from media.cvat import MANIFEST_FILE
from resources.bucket import (
    BucketError,
    ConnectionMisconfigured,
    ConnectionStatus,
    ConnectionTest,
    ObjectChanged,
    ObjectGone,
    ObjectUnreadable,
    ObjectVersion,
    WriteConflict,
    WriteDenied,
    batch_from_rows,
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

    # Folders (keys ending in "/") the last walk could not read; reset at the start of every walk.
    _gaps: list[str] = PrivateAttr(default_factory=list)
    # The root, resolved and vetted once: every read used to resolve it twice.
    _resolved_root: Path | None = PrivateAttr(default=None)

    @property
    def connection_name(self) -> str:
        return self.connection

    @property
    def provider(self) -> str:
        return "local"

    @property
    def _root(self) -> Path:
        if self._resolved_root is None:
            root = Path(self.root).resolve()
            problem = self._pseudo_fs_problem(root)
            if problem:
                raise ConnectionMisconfigured(f"connection '{self.connection}', field 'root': {problem}")
            self._resolved_root = root
            for warning in self.root_warnings():
                log.warning("connection '%s': %s", self.connection, warning)
        return self._resolved_root

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
        root = Path(self.root).resolve()
        if root == Path("/"):
            return ["root is / : a sync would walk the whole disk; point `root` at the folder that holds the media"]
        if root in _SYSTEM_ROOTS:
            return [f"root is the system folder {root}: it holds system files, not media; is `root` a mistake?"]
        return []

    def listing_gaps(self) -> list[str]:
        """Folders (keys ending in "/") the last full walk could not read, after `iter_listing` is exhausted.

        An unreadable folder lists as empty; without this its files would read as deleted. The listing asset keeps
        what it last knew under these prefixes instead.
        """
        return list(self._gaps)

    def _gap(self, rel: str, exc: OSError) -> None:
        if rel not in self._gaps:
            self._gaps.append(rel)
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
        folder: Path,
        rel: str,
        ancestors: frozenset[tuple[int, int]] = frozenset(),
        after: str | None = None,
    ) -> Iterator[tuple[str, os.stat_result | None]]:
        """Depth-first in key order, never leaving the root: symlinks are followed only where they stay inside it.

        Entries sort by their key as a bucket would list it (a folder as `name/`), so the walk yields keys in the
        same byte order as S3, GCS and Azure, and a listing can resume after any key. `ancestors` holds the
        (device, inode) of every folder on the way down, so a symlink back to one of them (a cycle) is not followed:
        without it a link to its own parent would list the same files under ever longer keys.

        A folder that cannot be read (permissions, I/O error) is recorded as a gap, never walked as empty. `after`
        (a page token) skips, without descending, every folder whose keys all sort before it. Only regular files and
        folders are listed: FIFOs, sockets and devices are not objects.
        """
        try:
            here = folder.stat()
            if (here.st_dev, here.st_ino) in ancestors:
                return
            ancestors = ancestors | {(here.st_dev, here.st_ino)}
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return  # gone since its parent was read: a real deletion
        except OSError as exc:
            self._gap(rel, exc)
            return
        if not entries and rel and (after is None or rel > after):
            yield rel, None  # an empty folder is this provider's folder marker
        for entry in sorted(entries, key=_sort_key):
            key = f"{rel}{key_name(entry.name)}"
            if entry.is_symlink() and not self._resolved_inside(entry.path):
                continue
            try:
                if entry.is_dir():
                    sub = key + "/"
                    if after is not None and sub < after and not after.startswith(sub):
                        continue  # every key under it sorts before the token
                    yield from self._walk(Path(entry.path), sub, ancestors, after)
                elif entry.is_file() and (after is None or key > after):
                    yield key, entry.stat()
            except FileNotFoundError:
                continue  # deleted while the folder was being read
            except OSError as exc:
                self._gap(rel, exc)  # listed but not stat-able (a folder without search permission): not deleted
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

    def _keys(self, prefix: str, after: str | None = None) -> Iterator[tuple[str, os.stat_result | None]]:
        self._gaps = []
        root = self._root
        start = root / prefix if prefix else root
        if start.is_dir():
            yield from self._walk(start, prefix, after=after)

    def iter_listing(self, prefix: str, page_size: int = 1000) -> Iterator[pa.RecordBatch]:
        rows: list[dict[str, object]] = []
        for key, st in self._keys(prefix):
            rows.append(self._row(key, st))
            if len(rows) >= page_size:
                yield batch_from_rows(rows)
                rows = []
        if rows:
            yield batch_from_rows(rows)

    def list_page(self, prefix: str, token: str | None, page_size: int = 1000) -> tuple[pa.RecordBatch, str | None]:
        """The token is the last key served; the walk starts there, skipping whole folders that sort before it.

        Walking the tree from the top for every page made paging quadratic in the number of files.
        """
        rows: list[dict[str, object]] = []
        for key, st in self._keys(prefix, after=token):
            row = self._row(key, st)
            if len(rows) == page_size:
                return batch_from_rows(rows), str(rows[-1]["key"])
            rows.append(row)
        return batch_from_rows(rows), None

    def _path(self, key: str) -> Path:
        """The file behind `key`, with every symlink resolved, refused unless it lies inside the root.

        An absolute key, `..` segments and symlinks (to files or folders) that lead out are all caught here, on the
        resolved path, because that is the path the read will open.
        """
        try:
            path = (self._root / key).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, an embedded NUL
            raise ObjectGone(f"'{key}' cannot be resolved inside the connection's root ({exc})") from None
        if not self._inside(path):
            raise ObjectGone(f"'{key}' resolves outside the connection's root; refusing to read it")
        return path

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

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        raw_name = self._undecodable_name(key)
        if raw_name is not None:
            raise ObjectUnreadable(
                f"file name is not valid UTF-8 ({raw_name!r}); rename it to UTF-8 so it can be read and keyed exactly"
            )
        path = self._path(key)
        try:
            # Refuse what is not a regular file before opening it: opening some devices has side effects.
            _refuse_unless_regular(key, path.stat().st_mode)
            # O_NOFOLLOW: the path is already resolved, so a symlink here was swapped in after the check.
            # O_NONBLOCK: a FIFO swapped in after that check must not block the open (and the sync) forever.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError as exc:
            raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)") from exc
        try:
            _refuse_unless_regular(key, os.fstat(fd).st_mode)  # what was opened, whatever the path said
            if etag and local_etag(os.fstat(fd)) != etag:
                raise ObjectChanged(f"'{key}' was overwritten after it was listed")
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
