"""Publishing a sync: what people and tools read (the index, the manifest, the next sync's baseline) moves together.

A sync commits in one index transaction (objects, facts, violations, history). Only after that commit does the
manifest that the same run staged replace the published one, and the run's listing become the baseline of the next
diff. A run that fails before the commit leaves the published manifest, the index and the baseline exactly as the
last good sync left them.

A process killed between the commit and the end of publishing leaves its staged manifest behind; the next sync of the
connection finishes the job before it lists (`recover`): a staged manifest whose run reached the index is published,
any other is discarded.
"""

from __future__ import annotations

from collections.abc import Callable

from assets.snapshots import BaselineState, ListingState, SnapshotKeys
from resources.index_resource import MediaIndex
from resources.state import StateStore


def publish(store: StateStore, connection: str, run_id: str) -> None:
    """Make run `run_id`'s sync the published one. Call only after its index transaction committed. Idempotent.

    The staged manifest is moved last: while it exists, publishing is unfinished and `recover` will redo it.
    """
    keys = SnapshotKeys(connection)
    state = ListingState.load(store, connection)
    if state is not None and state.run_id == run_id:
        with store.scratch_dir(connection, "publish") as scratch:
            if store.fetch(keys.listing, scratch / "baseline.parquet"):
                store.put(keys.baseline, scratch / "baseline.parquet")
                BaselineState(run_id=run_id, fingerprint=state.fingerprint).save(store, connection)
    staged = keys.staged_manifest(run_id)
    if store.exists(staged):
        store.move(staged, keys.manifest)


def recover(store: StateStore, index: MediaIndex, connection: str, log: Callable[[str], None]) -> None:
    """Finish or discard what an earlier run of `connection` left half-published. Run before a new listing."""
    keys = SnapshotKeys(connection)
    for key in store.list(keys.prefix):
        run_id = keys.staged_run(key)
        if run_id is None:
            continue
        if index.committed(connection, run_id):
            log(f"'{connection}': run {run_id} reached the index but did not finish publishing; publishing it now")
            publish(store, connection, run_id)
        else:
            store.delete(key)
