"""A folder on disk as a bucket: the embedded default for the demo and for datasets that already sit on disk.

Listing and reads use the operating system directly; obstore's LocalStore would add nothing here and follows
symlinks wherever they lead, while this provider must stay inside its root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from dagster import ConfigurableResource

from resources.bucket import (
    ConnectionStatus,
    ConnectionTest,
    ObjectChanged,
    ObjectGone,
    StrictModel,
    batch_from_rows,
)


class LocalSettings(StrictModel):
    """`options` and `auth` of a local connection: there is nothing to authenticate."""

    class Options(StrictModel):
        concurrency: int = 8

    options: Options = Options()
    auth: dict[str, str] = {}


def local_etag(st: os.stat_result) -> str:
    """Changes whenever the file is replaced or rewritten; survives a rename (same inode), which move detection uses."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _sort_key(entry: os.DirEntry[str]) -> str:
    """An entry's key as a bucket orders it (a folder as `name/`); a symlink loop or dangling link is a plain name."""
    try:
        return entry.name + "/" if entry.is_dir() else entry.name
    except OSError:
        return entry.name


class LocalBucket(ConfigurableResource):
    """A local folder served through the Bucket protocol."""

    connection: str
    root: str

    @property
    def connection_name(self) -> str:
        return self.connection

    @property
    def provider(self) -> str:
        return "local"

    @property
    def _root(self) -> Path:
        return Path(self.root).resolve()

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
        self, folder: Path, rel: str, ancestors: frozenset[tuple[int, int]] = frozenset()
    ) -> Iterator[tuple[str, os.stat_result | None]]:
        """Depth-first in key order, never leaving the root: symlinks are followed only where they stay inside it.

        Entries sort by their key as a bucket would list it (a folder as `name/`), so the walk yields keys in the
        same byte order as S3, GCS and Azure, and a listing can resume after any key. `ancestors` holds the
        (device, inode) of every folder on the way down, so a symlink back to one of them (a cycle) is not followed:
        without it a link to its own parent would list the same files under ever longer keys.
        """
        try:
            here = folder.stat()
            if (here.st_dev, here.st_ino) in ancestors:
                return
            ancestors = ancestors | {(here.st_dev, here.st_ino)}
            entries = list(os.scandir(folder))
        except OSError:
            return
        if not entries and rel:
            yield rel, None  # an empty folder is this provider's folder marker
        for entry in sorted(entries, key=_sort_key):
            key = f"{rel}{entry.name}"
            if entry.is_symlink() and not self._resolved_inside(entry.path):
                continue
            try:
                if entry.is_dir():
                    yield from self._walk(Path(entry.path), key + "/", ancestors)
                elif entry.is_file():
                    yield key, entry.stat()
            except OSError:
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
        }

    def _keys(self, prefix: str) -> Iterator[tuple[str, os.stat_result | None]]:
        start = self._root / prefix if prefix else self._root
        if start.is_dir():
            yield from self._walk(start, prefix)

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
        """The token is the last key served; the walk skips up to it (a folder walk has no server-side cursor)."""
        rows: list[dict[str, object]] = []
        for key, st in self._keys(prefix):
            row = self._row(key, st)
            if token is not None and str(row["key"]) <= token:
                continue
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

    def listing_gaps(self) -> list[str]:
        """Folders the last listing could not read (none: a provider that cannot list part fails the listing)."""
        return []

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        path = self._path(key)
        try:
            # O_NOFOLLOW: the path is already resolved, so a symlink here was swapped in after the check.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError as exc:
            raise ObjectGone(f"'{key}' no longer exists (deleted after it was listed)") from exc
        try:
            if etag and local_etag(os.fstat(fd)) != etag:
                raise ObjectChanged(f"'{key}' was overwritten after it was listed")
            return os.pread(fd, max(0, end - start), start)
        finally:
            os.close(fd)

    def test(self) -> ConnectionTest:
        root = Path(self.root)
        status, detail, remedy = ConnectionStatus.AVAILABLE, f"folder {root} is readable", ""
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
        return ConnectionTest(self.connection, "local", status, detail, remedy)
