"""The index as the code location's `index` resource: its settings are resource config, shown in the Launchpad.

Only the Dagster face lives here. Where the index is, how it is opened, its tables and its writes are
resources/index.py, which does not import Dagster, so `bucket-sync status` and `query` can read the index without
paying for Dagster's import.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from resources.index import IndexAccess


class MediaIndex(ConfigurableResource, IndexAccess):
    """The index, opened briefly per write so other readers and writers get their turn."""
