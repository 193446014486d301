"""Metadata the Dagster UI can draw: tables with a schema, and int/float values it plots across materializations.

Read back from where the UI reads it: the instance's event log, and the webserver's GraphQL API of a real
`dagster dev` on the same instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    FloatMetadataValue,
    IntMetadataValue,
    TableMetadataValue,
)

from demo import synth
from pipelines.executor import VARIABLE
from pipelines.instance import ensure_dagster_home, ensure_index_pool
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.dagster_ui import DagsterUI, start_dagster_dev
from tests.integration.buckets import LocalTestBucket

pytestmark = pytest.mark.integration

ROTATED = ["a-rotated-3.jpg", "b-rotated-6.jpg"]


def _bucket(root: Path) -> LocalTestBucket:
    bucket = LocalTestBucket(root)
    bucket.put("upright.jpg", synth.jpeg(320, 240, orientation=1))
    for i, key in enumerate(ROTATED):
        bucket.put(key, synth.jpeg(320, 240, orientation=(3, 6)[i], seed=i + 2))
    bucket.put("broken/notes.jpg", b"not a picture\n")
    return bucket


def _decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text else 0


def test_materializations_and_check_results_carry_tables_and_plottable_numbers(
    workspace: Workspace, tmp_path: Path, dagster_instance: DagsterInstance
) -> None:
    bucket = _bucket(tmp_path / "bucket")
    workspace.write_catalog(bucket.entry("typed", profile="strict"))
    outcome = run_sync("typed", dagster_instance, log_level="WARNING")
    assert outcome.ok

    def metadata(asset: str) -> dict:
        event = dagster_instance.get_latest_materialization_event(AssetKey(asset))
        assert event is not None and event.asset_materialization is not None
        return event.asset_materialization.metadata

    listing = metadata("object_listing")
    preview = listing["preview"]
    assert isinstance(preview, TableMetadataValue) and preview.schema is not None
    assert [c.name for c in preview.schema.columns] == ["key"]
    assert {r.data["key"] for r in preview.records} == {"upright.jpg", *ROTATED, "broken/notes.jpg"}
    assert isinstance(listing["extensions"], TableMetadataValue)
    assert isinstance(listing["listed"], IntMetadataValue) and listing["listed"].value == 4

    probes = metadata("media_probes")
    for name in ("objects_per_second", "bytes_read_per_probe", "seconds"):
        value = probes[name]
        assert isinstance(value, FloatMetadataValue), name
        assert value.value is not None and value.value > 0 and _decimals(value.value) <= 2, (name, value.value)
    assert isinstance(probes["accepted"], IntMetadataValue) and probes["accepted"].value == 1
    assert isinstance(probes["violations_exif_orientation"], IntMetadataValue)
    assert probes["violations_exif_orientation"].value == 2
    assert probes["violations_readable"].value == 1
    by_rule = probes["violations_by_rule"]
    assert isinstance(by_rule, TableMetadataValue) and by_rule.schema is not None
    assert {r.data["rule"]: r.data["count"] for r in by_rule.records}["exif_orientation"] == 2

    index = metadata("media_index")
    assert isinstance(index["violations"], IntMetadataValue) and index["violations"].value == 3

    # The examples sit on the check's own result, as a table with a schema: key, problem and fix of each object.
    evaluations = {
        entry.dagster_event.event_specific_data.check_name: entry.dagster_event.event_specific_data
        for entry in dagster_instance.all_logs(outcome.result.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    examples = evaluations["exif_orientation"].metadata["examples"]
    assert isinstance(examples, TableMetadataValue) and examples.schema is not None
    assert [c.name for c in examples.schema.columns] == ["key", "problem", "fix"]
    assert [r.data["key"] for r in examples.records] == ROTATED
    assert all("mogrify -auto-orient" in r.data["fix"] for r in examples.records)
    assert isinstance(evaluations["exif_orientation"].metadata["count"], IntMetadataValue)
    assert evaluations["mp4_brand"].metadata["examples"].records == []


# -- through the webserver ------------------------------------------------------------------------------------------

MATERIALIZATIONS = """
query($k: AssetKeyInput!, $p: [String!]) {
  assetOrError(assetKey: $k) { __typename ... on Asset {
    assetMaterializations(partitions: $p, limit: 10) { partition metadataEntries { __typename label
      ... on IntMetadataEntry { intValue }
      ... on FloatMetadataEntry { floatValue }
      ... on TableMetadataEntry { table { schema { columns { name type } } records } } } } } }
}
"""
CHECK_EXECUTIONS = """
query($k: AssetKeyInput!, $c: String!) {
  assetCheckExecutions(assetKey: $k, checkName: $c, limit: 5) { status evaluation { metadataEntries {
    __typename label ... on TableMetadataEntry { table { schema { columns { name } } records } } } } }
}
"""


@pytest.fixture
def dagster_ui(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_logs: Path
) -> Iterator[tuple[DagsterUI, DagsterInstance]]:
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster-home"))
    home = ensure_dagster_home()
    with DagsterInstance.from_config(str(home)) as instance:
        ensure_index_pool(instance)
        ui = start_dagster_dev(server_logs, {})
        try:
            yield ui, instance
        finally:
            ui.stop()


def test_the_webserver_serves_int_float_and_table_entries_for_each_materialization(
    workspace: Workspace, tmp_path: Path, dagster_ui: tuple[DagsterUI, DagsterInstance]
) -> None:
    ui, instance = dagster_ui
    bucket = _bucket(tmp_path / "bucket")
    workspace.write_catalog(bucket.entry("plotted", profile="strict"))
    assert run_sync("plotted", instance, log_level="WARNING").ok
    bucket.put("c-rotated-8.jpg", synth.jpeg(320, 240, orientation=8, seed=9))  # a change: a second point per plot
    assert run_sync("plotted", instance, log_level="WARNING").ok

    data = ui.query(MATERIALIZATIONS, {"k": {"path": ["media_probes"]}, "p": ["plotted"]})
    materializations = data["assetOrError"]["assetMaterializations"]
    assert len(materializations) == 2
    for materialization in materializations:
        entries = {e["label"]: e for e in materialization["metadataEntries"]}
        assert entries["objects_per_second"]["__typename"] == "FloatMetadataEntry"
        assert entries["bytes_read_per_probe"]["__typename"] == "FloatMetadataEntry"
        assert entries["violations_exif_orientation"]["__typename"] == "IntMetadataEntry"
        assert entries["accepted"]["__typename"] == "IntMetadataEntry"
        assert entries["violations_by_rule"]["__typename"] == "TableMetadataEntry"
        assert [c["name"] for c in entries["violations_by_rule"]["table"]["schema"]["columns"]] == ["rule", "count"]
    # Newest first: the second sync found the third rotated photo.
    counts = [
        next(e["intValue"] for e in m["metadataEntries"] if e["label"] == "violations_exif_orientation")
        for m in materializations
    ]
    assert counts == [3, 2]

    listing = ui.query(MATERIALIZATIONS, {"k": {"path": ["object_listing"]}, "p": ["plotted"]})
    entries = {e["label"]: e for e in listing["assetOrError"]["assetMaterializations"][0]["metadataEntries"]}
    assert entries["preview"]["__typename"] == "TableMetadataEntry"
    assert entries["listed"]["__typename"] == "IntMetadataEntry" and entries["listed"]["intValue"] == 5

    checks = ui.query(CHECK_EXECUTIONS, {"k": {"path": ["media_probes"]}, "c": "exif_orientation"})
    latest = checks["assetCheckExecutions"][0]["evaluation"]["metadataEntries"]
    examples = next(e for e in latest if e["label"] == "examples")
    assert examples["__typename"] == "TableMetadataEntry"
    assert [c["name"] for c in examples["table"]["schema"]["columns"]] == ["key", "problem", "fix"]
    assert len(examples["table"]["records"]) == 3
