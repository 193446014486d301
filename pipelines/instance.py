"""The local Dagster instance that `make demo`, `make ui` and the CLI share: `DAGSTER_HOME`, default `./.dagster/`.

Sharing it is what lets a person open the UI after `make demo` and find the demo's run, partition and check results.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance

#: The pool every DuckDB index writer holds (assets/index.py, checks/): one writer at a time on one machine.
INDEX_POOL = "duckdb_index"
INDEX_POOL_LIMIT = 1

#: The first line of every dagster.yaml bucket-sync writes: a file that carries it is ours to complete.
MARKER = "# Written by bucket-sync (pipelines/instance.py)."

# Pools cap concurrent steps across runs. dagster.yaml cannot name a pool, so `default_limit: 1` covers any pool that
# has no limit of its own, and local_instance() sets `duckdb_index` to 1 explicitly in the instance's storage (what
# `dagster instance concurrency set duckdb_index 1` does); the UI shows it under Deployment > Concurrency.
# The run queue starts at most one run per partition (connection), so a double click or a sensor firing during a
# scheduled sync queues the second sync instead of racing the first; different connections still run side by side,
# at most `max_concurrent_runs` at once so that run processes starting together on a small machine do not starve the
# code server the queue talks to. The daemon looks at the queue every 2 s (default 5) and launches in threads, so one
# slow launch does not hold up the others; a dequeue that cannot reach the code server is retried (`run_queue`)
# instead of failing the run, and a slow-importing code server gets time to start (`code_servers`).
# Run monitoring fails runs whose worker died, so a crash never leaves a connection looking busy, and the daemon frees
# the pool slots of runs that ended (however they ended) so a killed run never holds `duckdb_index` for good.
# In-process runs (the CLI) are reaped by assets/overlap.py instead, which needs no daemon.
DAGSTER_YAML = f"""\
{MARKER}
# Settings missing from this file are added back by the next `bucket-sync` command or `make ui`; your values are kept.
telemetry:
  enabled: false
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  free_slots_after_run_end_seconds: 30
run_queue:
  dequeue_interval_seconds: 2
  dequeue_use_threads: true
  max_user_code_failure_retries: 3
  user_code_failure_retry_delay: 5
code_servers:
  local_startup_timeout: 300
  reload_timeout: 300
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


def _missing(ours: Any, theirs: Any) -> bool:
    """Whether `theirs` lacks a setting that `ours` has (a list is one setting)."""
    if isinstance(ours, dict):
        return not isinstance(theirs, dict) or any(k not in theirs or _missing(v, theirs[k]) for k, v in ours.items())
    return False


def _only_ours(theirs: Any, ours: Any) -> bool:
    """Whether every setting of `theirs` is one we write with the same value: an unmarked file of an earlier release."""
    if isinstance(theirs, dict):
        return isinstance(ours, dict) and all(k in ours and _only_ours(v, ours[k]) for k, v in theirs.items())
    return theirs == ours


def _complete(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """`theirs` with every setting it lacks taken from `ours`; a value it has is never changed."""
    merged = dict(theirs)
    for key, value in ours.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = _complete(value, merged[key])
    return merged


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at ./.dagster unless it is set, and make sure its dagster.yaml has our settings.

    A missing file is written whole. A file bucket-sync wrote (marked, or holding nothing but settings an earlier
    release wrote) gets the settings it lacks and keeps the values a person changed. A file someone else wrote is
    left alone; if it lacks settings, one line on stderr says which.
    """
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve()))).resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
        return home
    text = config.read_text()
    ours, theirs = yaml.safe_load(DAGSTER_YAML), yaml.safe_load(text) or {}
    if not isinstance(theirs, dict) or not _missing(ours, theirs):
        return home
    if text.startswith(MARKER) or _only_ours(theirs, ours):
        merged = _complete(ours, theirs)
        body = DAGSTER_YAML if merged == ours else MARKER + "\n" + yaml.safe_dump(merged, sort_keys=False)
        config.write_text(body)
    else:
        print(
            f"note: {config} was not written by bucket-sync and lacks some of its settings (see DAGSTER_YAML in "
            "pipelines/instance.py); move it aside to get them",
            file=sys.stderr,
        )
    return home


def ensure_index_pool(instance: DagsterInstance) -> None:
    """Give the `duckdb_index` pool its limit of 1 explicitly, unless a person has set a limit of their own."""
    storage = instance.event_log_storage
    explicit = {pool.name for pool in storage.get_pool_limits() if not pool.from_default}
    if INDEX_POOL not in explicit:
        storage.set_concurrency_slots(INDEX_POOL, INDEX_POOL_LIMIT)


def initialize_index_pool(instance: DagsterInstance) -> None:
    """Create the `duckdb_index` pool's row at its default limit before a run claims it, unless it exists.

    Dagster creates it on a step's first claim, and on Postgres two runs doing that at once fail one of them: its
    INSERT loses the race, and the UPDATE it falls back to runs inside the transaction that the lost INSERT aborted.
    Eight syncs started together on a fresh instance hit exactly that (tests/integration/test_many_machines.py).
    Doing it here, before the run starts, and taking a lost race as "the other process made it", leaves the claim
    nothing to create.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or instance.global_op_concurrency_default_limit is None:
        return
    for _ in range(3):
        if any(pool.name == INDEX_POOL for pool in storage.get_pool_limits()):
            return
        try:
            storage.initialize_concurrency_limit_to_default(INDEX_POOL)
            return
        except Exception:  # the database's own error for a lost race (sqlalchemy's, per backend): look again
            time.sleep(0.2)


def local_instance() -> DagsterInstance:
    ensure_dagster_home()
    instance = DagsterInstance.get()
    ensure_index_pool(instance)
    return instance


if __name__ == "__main__":
    local_instance()
    print(os.environ["DAGSTER_HOME"])
