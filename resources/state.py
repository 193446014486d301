"""The state store: where everything a later step or a later sync needs is kept, named by one URL.

`BUCKET_SYNC_STATE` (resource config `url`) is a local folder (the embedded default, `$BUCKET_SYNC_HOME`, itself
default `./.bucket-sync/`) or an object-store URL: `s3://bucket/prefix` (S3 and S3-compatible stores through
`AWS_ENDPOINT_URL`), `gs://bucket/prefix`, `az://account/container/prefix`. Credentials come from each cloud's
standard environment variables (AWS_*, GOOGLE_*, AZURE_STORAGE_*), never from the URL.

A step never shares local files with another step or another run: it fetches what it reads into its own scratch
folder, works there (DuckDB needs local files), and puts back what it made, each object written whole. On a local
folder the same calls cost nothing: fetching is a hard link, putting is a rename, both within one file system.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dagster import ConfigurableResource
from pydantic import Field

from resources.home import default_home, default_state_url
from resources.secrets import remember

_REMOTE_SCHEMES = ("s3", "s3a", "gs", "az", "azure", "abfs", "abfss")
#: Standard variables whose values are credentials: remembered so no message ever carries them.
_CREDENTIAL_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_SECRET",
)


class StateStoreError(ValueError):
    """The state store setting cannot be used as written. The message names the setting and the fix."""


def _is_remote(url: str) -> bool:
    return urlsplit(url).scheme.lower() in _REMOTE_SCHEMES


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise StateStoreError(
            "BUCKET_SYNC_STATE holds credentials inside its URL; remove the user-info and give the credentials in "
            "the provider's standard environment variables (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY, ...)"
        )
    if not parts.netloc:
        raise StateStoreError(f"BUCKET_SYNC_STATE '{url}' names no bucket; write it as {parts.scheme}://bucket/prefix")


@cache
def _remote_store(url: str) -> Any:
    """One obstore client per URL and process: clients hold connection pools worth reusing across steps."""
    from obstore.store import from_url

    for variable in _CREDENTIAL_VARIABLES:
        if os.environ.get(variable):
            remember(os.environ[variable])
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "") if urlsplit(url).scheme.startswith("s3") else ""
    return from_url(url.rstrip("/"), client_options={"allow_http": endpoint.startswith("http://")})


class StateStore(ConfigurableResource):
    """Snapshots, baselines, checkpoints, facts, violations and manifests of every connection."""

    url: str | None = Field(None, description="default $BUCKET_SYNC_STATE, else $BUCKET_SYNC_HOME (./.bucket-sync)")
    scratch: str | None = Field(
        None, description="local scratch space for a step's working copies; default $BUCKET_SYNC_HOME/scratch"
    )

    @property
    def location(self) -> str:
        """The resolved setting, for messages: a folder path or a URL (never with credentials)."""
        url = self.url or default_state_url()
        return url if _is_remote(url) else str(Path(url).resolve())

    @property
    def local_root(self) -> Path | None:
        """The folder that is the store, or None for an object store."""
        url = self.url or default_state_url()
        if _is_remote(url):
            return None
        return Path(url.removeprefix("file://")).resolve()

    def _remote(self) -> Any:
        url = self.url or default_state_url()
        _check_url(url)
        return _remote_store(url)

    def _local(self, key: str) -> Path:
        root = self.local_root
        assert root is not None
        return root / key

    # -- scratch ---------------------------------------------------------------------------------------------------

    @property
    def _scratch_base(self) -> Path:
        return Path(self.scratch) if self.scratch else (self.local_root or Path(default_home()).resolve()) / "scratch"

    @contextmanager
    def scratch_dir(self, connection: str, step: str) -> Iterator[Path]:
        """A private local folder for one step's working copies, removed when the step is done.

        For a local store it sits inside the store, so fetches and puts are links and renames on one file system.
        Named `<connection>@<step>-...`: '@' cannot occur in a connection name, so `remove_stale_scratch` finds exactly
        one connection's folders.
        """
        base = self._scratch_base
        base.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{connection}@{step}-", dir=base))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- objects ---------------------------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        if self.local_root is not None:
            return self._local(key).is_file()
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.head(self._remote(), key)
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    def size(self, key: str) -> int | None:
        """The size of object `key` in bytes, or None when it does not exist; reads no content."""
        if self.local_root is not None:
            try:
                return self._local(key).stat().st_size
            except FileNotFoundError:
                return None
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            return int(obstore.head(self._remote(), key)["size"])
        except (FileNotFoundError, NotFoundError):
            return None

    def fetch(self, key: str, dest: Path) -> bool:
        """Copy object `key` to local file `dest` (a hard link on a local store). False when it does not exist.

        A link is a stable snapshot: a later put of `key` replaces the store's file, not the one the link names.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        if self.local_root is not None:
            source = self._local(key)
            try:
                os.link(source, dest)
            except FileNotFoundError:
                return False
            except OSError:  # another file system (an explicit scratch elsewhere): copy instead
                try:
                    shutil.copyfile(source, dest)
                except FileNotFoundError:
                    return False
            return True
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            result = obstore.get(self._remote(), key)
        except (FileNotFoundError, NotFoundError):
            return False
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        with partial.open("wb") as out:
            for chunk in result.stream():
                out.write(chunk)
        partial.replace(dest)
        return True

    def put(self, key: str, source: Path) -> None:
        """Store local file `source` as `key`, whole: a rename on a local store, one PUT on an object store.

        `source` is consumed (moved) on a local store; callers write it in scratch and do not read it afterwards.
        """
        if self.local_root is not None:
            target = self._local(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                source.replace(target)
            except OSError:  # scratch on another file system: copy beside the target, then rename
                staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                shutil.copyfile(source, staged)
                staged.replace(target)
            return
        import obstore

        obstore.put(self._remote(), key, source)

    def read_bytes(self, key: str) -> bytes | None:
        if self.local_root is not None:
            try:
                return self._local(key).read_bytes()
            except FileNotFoundError:
                return None
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            return bytes(obstore.get(self._remote(), key).bytes())
        except (FileNotFoundError, NotFoundError):
            return None

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write `data` as `key`, whole (write-then-rename on a local store, one PUT on an object store)."""
        if self.local_root is not None:
            target = self._local(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            staged.write_bytes(data)
            staged.replace(target)
            return
        import obstore

        obstore.put(self._remote(), key, data)

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix` (a folder ending in '/'), sorted; temporary files of unfinished writes excluded."""
        if self.local_root is not None:
            folder = self._local(prefix)
            if not folder.is_dir():
                return []
            return sorted(
                str(p.relative_to(self.local_root))
                for p in folder.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            )
        import obstore

        keys = [meta["path"] for batch in obstore.list(self._remote(), prefix) for meta in batch]
        return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith("."))

    def delete(self, key: str) -> None:
        if self.local_root is not None:
            self._local(key).unlink(missing_ok=True)
            return
        import obstore
        from obstore.exceptions import NotFoundError

        with suppress(FileNotFoundError, NotFoundError):
            obstore.delete(self._remote(), key)

    def move(self, source: str, target: str) -> None:
        """Rename object `source` to `target`: atomic on a local store; a copy then a delete on an object store,
        where a reader sees either the old or the new object whole, and a crash in between leaves both (never none).
        """
        if self.local_root is not None:
            path = self._local(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._local(source).replace(path)
            return
        import obstore

        obstore.copy(self._remote(), source, target)
        obstore.delete(self._remote(), source)

    def remove_stale_scratch(self, connection: str) -> int:
        """Delete scratch folders that killed runs of `connection` left on this machine. Call only while no other run
        syncs the connection. Returns how many folders it removed."""
        base = self._scratch_base
        stale = list(base.glob(f"{connection}@*")) if base.is_dir() else []
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        return len(stale)

    def remove_leftovers(self, prefix: str) -> int:
        """Delete temporary files that killed runs left under `prefix` on a local store (object stores have none:
        every object there is written whole by one PUT). Returns how many it removed."""
        if self.local_root is None:
            return 0
        folder = self._local(prefix)
        if not folder.is_dir():
            return 0
        removed = 0
        for path in folder.rglob(".*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        return removed
