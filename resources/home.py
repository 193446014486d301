"""Where bucket-sync keeps its own files unless told otherwise: `$BUCKET_SYNC_HOME`, default `./.bucket-sync/`.

A module of its own, with nothing but `os` behind it, because the state store (a Dagster resource) and the index
reader that `bucket-sync status` and `query` open (which must not import Dagster) both derive their defaults from it.
"""

from __future__ import annotations

import os


def default_home() -> str:
    return os.environ.get("BUCKET_SYNC_HOME", ".bucket-sync")


def default_state_url() -> str:
    """The state store: `$BUCKET_SYNC_STATE` (a folder or an object-store URL), else the home folder."""
    return os.environ.get("BUCKET_SYNC_STATE") or default_home()
