"""Fixtures every test may use: an isolated BUCKET_SYNC home and catalog, and a real Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, instance_for_test

from assets.snapshots import SnapshotKeys
from resources.catalog import dump_catalog
from resources.index_resource import MediaIndex
from resources.state import StateStore, default_state_url
from tests.cvat_manifest_rules import LEDGER

REPO = Path(__file__).resolve().parents[1]

# Emulator fixtures (fake-gcs-server, Azurite, moto) live in one plugin module so any test can ask for them.
pytest_plugins = ["tests.integration.provider_fixtures"]


@dataclass
class Workspace:
    """A private BUCKET_SYNC_HOME and catalog file, set in the environment for the test's duration."""

    home: Path
    catalog: Path

    def write_catalog(self, *entries: dict[str, Any]) -> Path:
        self.catalog.write_text(dump_catalog(list(entries)))
        return self.catalog

    @property
    def index(self) -> MediaIndex:
        return MediaIndex(url=str(self.home / "index.duckdb"))

    @property
    def state_store(self) -> StateStore:
        return StateStore(url=str(self.home))

    def manifest(self, connection: str) -> str:
        """The published manifest of `connection`, read from the state store ("" when there is none)."""
        data = self.state_store.read_bytes(SnapshotKeys(connection).manifest)
        return "" if data is None else data.decode()

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.index.connect(read_only=True) as con:
            return con.execute(sql, params or {}).fetchall()


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """As the test ends, every manifest its syncs published is held to CVAT's manifest rules
    (tests/cvat_manifest_rules.py): in the workspace's own store, and in the store BUCKET_SYNC_STATE named, if the test
    pointed it elsewhere (the environment is still the test's here: monkeypatch undoes it after this)."""
    home, catalog = tmp_path / "home", tmp_path / "connections.yaml"
    monkeypatch.setenv("BUCKET_SYNC_HOME", str(home))
    monkeypatch.setenv("BUCKET_SYNC_CATALOG", str(catalog))
    monkeypatch.delenv("BUCKET_SYNC_VERBOSE", raising=False)
    yield Workspace(home=home, catalog=catalog)
    stores = {store.location: store for store in (StateStore(url=str(home)), StateStore(url=default_state_url()))}
    for store in stores.values():
        LEDGER.check_store(store)


@pytest.fixture
def dagster_instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many manifests the session held to CVAT's rules: a figure that shows the check ran."""
    if LEDGER.checked:
        refused = f"{len(LEDGER.refused)} refused" if LEDGER.refused else "all valid"
        terminalreporter.write_line(f"CVAT manifest rules: {len(LEDGER.checked)} manifest(s) checked, {refused}")


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")
