"""Publishing a sync: what people and tools read (the index, the manifest, the next sync's baseline) moves together.

A sync commits in one DuckDB transaction (objects, facts, violations, history). Only after that commit does the
manifest that the same run staged replace the published one, and the run's listing become the baseline of the next
diff. A run that fails before the commit leaves the published manifest, the index and the baseline exactly as the
last good sync left them.

A process killed between the commit and the end of publishing leaves its staged manifest behind; the next sync of the
connection finishes the job before it lists (`recover`): a staged manifest whose run reached the index is published,
any other is discarded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

from resources.index import MediaIndex
from resources.storage import SyncHome, atomic_path


def publish(home: SyncHome, connection: str, run_id: str) -> None:
    """Make run `run_id`'s sync the published one. Call only after its index transaction committed. Idempotent.

    The staged manifest is moved last: while it exists, publishing is unfinished and `recover` will redo it.
    """
    state = home.snapshot(connection, "state")
    listing = home.snapshot(connection, "listing")
    if state.exists() and json.loads(state.read_text()).get("run_id") == run_id and listing.exists():
        with atomic_path(home.snapshot(connection, "baseline")) as tmp:
            shutil.copyfile(listing, tmp)
    staged = home.staged_manifest(connection, run_id)
    if staged.exists():
        target = home.manifest_path(connection)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(target)


def recover(home: SyncHome, index: MediaIndex, connection: str, log: Callable[[str], None]) -> None:
    """Finish or discard what an earlier run of `connection` left half-published. Run before a new listing."""
    for staged in home.staged_manifests(connection):
        run_id = staged.name.removeprefix("manifest.").removesuffix(".jsonl")
        if index.committed(connection, run_id):
            log(f"'{connection}': run {run_id} reached the index but did not finish publishing; publishing it now")
            publish(home, connection, run_id)
        else:
            staged.unlink(missing_ok=True)
