"""The connection catalog as the code location's `catalog` resource.

Only the Dagster face lives here: what the catalog is and how it is read and validated is resources/catalog.py,
which does not import Dagster, so the CLI can read the catalog without paying for Dagster's import.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from resources.catalog import CatalogFile


class CatalogResource(ConfigurableResource, CatalogFile):
    """The catalog as a Dagster resource, so assets, sensors and schedules all read the same file."""
