"""The local Dagster instance that `make demo`, `make ui` and the CLI share: `DAGSTER_HOME`, default `./.dagster/`.

Sharing it is what lets a person open the UI after `make demo` and find the demo's run, partition and check results.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

# Pools cap concurrent steps across runs: every DuckDB index writer shares `duckdb_index`, one at a time.
# The run queue starts at most one run per partition (connection), so a double click or a sensor firing during a
# scheduled sync queues the second sync instead of racing the first; different connections still run side by side.
# Run monitoring fails runs whose worker died, so a crash never leaves a connection looking busy, and the daemon frees
# the pool slots of runs that ended (however they ended) so a killed run never holds `duckdb_index` for good.
# In-process runs (the CLI) are reaped by assets/overlap.py instead, which needs no daemon.
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 30
concurrency:
  pools:
    default_limit: 1
  runs:
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at ./.dagster unless it is set, and give a new home our instance settings."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve()))).resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def local_instance() -> DagsterInstance:
    ensure_dagster_home()
    return DagsterInstance.get()


if __name__ == "__main__":
    print(ensure_dagster_home())
