"""Publishing a sync: what people and tools read (the index, the manifest, the next sync's baseline) moves together.

A sync commits in one index transaction (objects, facts, violations, history). Only after that commit does the
manifest that the same run staged replace the published one, and the run's listing become the baseline of the next
diff. A run that fails before the commit leaves the published manifest, the index and the baseline exactly as the
last good sync left them.

A process killed between the commit and the end of publishing leaves its staged manifests behind; the next sync of the
connection finishes the job before it lists (`recover`): staged manifests whose run reached the index are published,
any others are discarded.

A run that accepted no image stages an empty file: CVAT refuses a manifest without items, so publishing it withdraws
the published manifest instead of replacing it with one CVAT would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from assets.snapshots import BaselineState, ListingState, SnapshotKeys
from resources.index_resource import MediaIndex
from resources.state import StateStore


def publish(store: StateStore, connection: str, run_id: str) -> None:
    """Make run `run_id`'s sync the published one. Call only after its index transaction committed. Idempotent.

    The staged image manifest is moved last: while it exists, publishing is unfinished and `recover` will redo it.
    """
    keys = SnapshotKeys(connection)
    state = ListingState.load(store, connection)
    if state is not None and state.run_id == run_id:
        with store.scratch_dir(connection, "publish") as scratch:
            if store.fetch(keys.listing, scratch / "baseline.parquet"):
                store.put(keys.baseline, scratch / "baseline.parquet")
                BaselineState(run_id=run_id, fingerprint=state.fingerprint).save(store, connection)
        # The index now holds what these batches named; a later delta run must not sync them again.
        for batch_id in state.covered_batches:
            store.delete(keys.event_batch(batch_id))
    publish_video_manifests(store, keys, run_id)
    staged = keys.staged_manifest(run_id)
    size = store.size(staged)
    if size == 0:  # no image accepted: no manifest rather than one CVAT refuses; the staged file goes last
        store.delete(keys.manifest)
        store.delete(staged)
    elif size is not None:
        store.move(staged, keys.manifest)


def publish_video_manifests(store: StateStore, keys: SnapshotKeys, run_id: str) -> None:
    """Write each video manifest the run staged to its own key, and remove those of videos no longer accepted.

    The staged bundle is removed only once every manifest in it is written and the stale ones are gone, so a run
    killed halfway is finished by `recover` from the same bundle.
    """
    bundle = keys.staged_video_manifests(run_id)
    with store.scratch_dir(keys.connection, "publish-videos") as scratch:
        local = scratch / "video-manifests.jsonl"
        if not store.fetch(bundle, local):
            return
        published: set[str] = set()
        with local.open(encoding="utf-8") as lines:
            for line in lines:
                item = json.loads(line)
                key = keys.video_manifest(item["video"])
                store.write_bytes(key, item["manifest"].encode())
                published.add(key)
    for key in store.list(keys.video_manifest_prefix):
        if key not in published:
            store.delete(key)
    store.delete(bundle)


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
