"""Sensors, schedules and the no-overlap rule, evaluated against a real Dagster test instance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    DeleteDynamicPartitionsRequest,
    RunsFilter,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)
from dagster._core.definitions.schedule_definition import ScheduleExecutionData
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.test_utils import create_run_for_test

from assets.overlap import HOST_TAG, PID_TAG
from demo import synth
from pipelines import sensors
from pipelines.definitions import defs
from pipelines.runner import run_sync
from pipelines.schedules import build_connection_schedules, schedule_name
from resources.catalog_resource import CatalogResource
from resources.index_resource import MediaIndex
from resources.state import StateStore
from tests.conftest import Workspace

pytestmark = pytest.mark.integration


def local_entry(name: str, root: Path, **fields: object) -> dict[str, object]:
    return {"name": name, "provider": "local", "root": str(root), **fields}


def fill(root: Path, count: int) -> None:
    for i in range(count):
        path = root / f"img-{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synth.png(16 + i, 16))


def resources(ws: Workspace) -> dict[str, object]:
    return {"catalog": CatalogResource(), "state_store": StateStore(), "index": MediaIndex()}


def in_flight_run(instance: DagsterInstance, name: str) -> str:
    run = create_run_for_test(
        instance, job_name="sync_connection", status=DagsterRunStatus.STARTED, tags={PARTITION_NAME_TAG: name}
    )
    return run.run_id


def test_registry_adds_partitions_and_drops_those_of_removed_connections_keeping_their_rows(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    fill(tmp_path / "a", 1)
    workspace.write_catalog(local_entry("alpha", tmp_path / "a"), local_entry("beta", tmp_path / "a"))
    context = build_sensor_context(instance=dagster_instance, resources=resources(workspace))
    result = sensors.connection_registry(context)
    assert isinstance(result, SensorResult)
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["alpha", "beta"]]
    dagster_instance.add_dynamic_partitions("connections", ["alpha", "beta"])
    assert isinstance(sensors.connection_registry(context), SkipReason)

    assert run_sync("alpha", dagster_instance, log_level="ERROR").ok
    workspace.write_catalog(local_entry("beta", tmp_path / "a"))
    before = workspace.index.file.read_bytes()
    removal = sensors.connection_registry(
        build_sensor_context(instance=dagster_instance, resources=resources(workspace))
    )
    assert workspace.index.file.read_bytes() == before, "a sensor wrote the index outside the duckdb_index pool"
    assert isinstance(removal, SensorResult)
    deletes = [r for r in removal.dynamic_partitions_requests if isinstance(r, DeleteDynamicPartitionsRequest)]
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in deletes] == [("connections", ["alpha"])]
    for request in deletes:  # what the daemon does with the sensor's result
        for key in request.partition_keys:
            dagster_instance.delete_dynamic_partition(request.partitions_def_name, key)
    assert isinstance(sensors.connection_registry(context), SkipReason), "a dropped partition is dropped once"
    assert run_sync("beta", dagster_instance, log_level="ERROR").ok  # the next sync flags what left the catalog
    assert workspace.query("SELECT name, detached FROM connections ORDER BY name") == [("alpha", True), ("beta", False)]
    assert workspace.query("SELECT count(*) FROM objects WHERE connection = 'alpha'") == [(1,)]
    assert dagster_instance.get_dynamic_partitions("connections") == ["beta"]
    assert dagster_instance.get_run_records(RunsFilter(tags={PARTITION_NAME_TAG: "alpha"})), "its runs are kept"


def test_change_sensor_pages_across_ticks_and_requests_one_run_per_change(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "bucket"
    fill(root, 7)
    workspace.write_catalog(local_entry("watched", root, watch=True), local_entry("quiet", root))
    monkeypatch.setattr(sensors, "KEYS_PER_TICK", 3)
    monkeypatch.setattr(sensors, "PAGE_SIZE", 2)

    def tick(cursor: str | None) -> tuple[SensorResult | SkipReason, str | None]:
        context = build_sensor_context(instance=dagster_instance, resources=resources(workspace), cursor=cursor)
        result = sensors.bucket_changes(context)
        return result, context.cursor

    # 7 keys at 3 per tick: two ticks carry the walk forward, the third completes it and sees a never-synced bucket.
    cursor = None
    for _ in range(2):
        result, cursor = tick(cursor)
        assert isinstance(result, SkipReason) and "continuing next tick" in str(result.skip_message)
    result, cursor = tick(cursor)
    assert isinstance(result, SensorResult)
    (request,) = result.run_requests
    assert request.partition_key == "watched"

    assert run_sync("watched", dagster_instance, log_level="ERROR").ok
    for _ in range(3):
        result, cursor = tick(cursor)
    assert isinstance(result, SkipReason) and "unchanged (7 objects)" in str(result.skip_message)

    (root / "img-03.png").write_bytes(synth.png(99, 99))
    keys = []
    for _ in range(2):  # the same change seen on two passes: one run key, so Dagster starts one run
        for _ in range(3):
            result, cursor = tick(cursor)
        assert isinstance(result, SensorResult)
        keys.append(result.run_requests[0].run_key)
    assert keys[0] == keys[1]

    in_flight_run(dagster_instance, "watched")
    for _ in range(3):
        result, cursor = tick(cursor)
    assert isinstance(result, SkipReason) and "already queued or running" in str(result.skip_message)


def test_schedule_per_connection_requests_one_run_per_tick(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    workspace.write_catalog(local_entry("nightly", tmp_path, schedule="0 2 * * *"), local_entry("manual", tmp_path))
    schedules = {s.name: s for s in build_connection_schedules(str(workspace.catalog))}
    assert set(schedules) == {schedule_name("nightly")}
    nightly = schedules[schedule_name("nightly")]
    assert nightly.cron_schedule == "0 2 * * *"
    when = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    dagster_instance.add_dynamic_partitions("connections", ["nightly"])
    repository = Definitions.merge(defs, Definitions(schedules=[nightly])).get_repository_def()

    def evaluate() -> ScheduleExecutionData:
        context = build_schedule_context(dagster_instance, scheduled_execution_time=when, repository_def=repository)
        return nightly.evaluate_tick(context)

    first, again = evaluate(), evaluate()
    (request,) = first.run_requests
    assert request.partition_key == "nightly"
    assert request.run_key == again.run_requests[0].run_key

    in_flight_run(dagster_instance, "nightly")
    skipped = evaluate()
    assert not skipped.run_requests and "already queued or running" in skipped.skip_message


def test_invalid_catalog_builds_no_schedules_instead_of_breaking_the_location(workspace: Workspace) -> None:
    workspace.catalog.write_text("connections: [")
    assert build_connection_schedules(str(workspace.catalog)) == []


def test_two_syncs_of_one_connection_never_overlap(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    fill(tmp_path / "b", 2)
    workspace.write_catalog(local_entry("busy", tmp_path / "b"), local_entry("free", tmp_path / "b"))
    other = in_flight_run(dagster_instance, "busy")
    blocked = run_sync("busy", dagster_instance, log_level="ERROR")
    assert not blocked.ok
    assert any(f"already being synced by run {other}" in f for f in blocked.failures)
    assert run_sync("free", dagster_instance, log_level="ERROR").ok  # other connections still sync


def test_instance_config_queues_one_run_per_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.instance import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    ensure_dagster_home()
    instance = DagsterInstance.from_config(str(tmp_path / "dh"))
    limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": PARTITION_NAME_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits


def test_a_sync_whose_process_died_does_not_wedge_its_connection(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    import socket
    import subprocess
    import sys

    fill(tmp_path / "c", 1)
    workspace.write_catalog(local_entry("crashed", tmp_path / "c"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = create_run_for_test(
        dagster_instance,
        job_name="sync_connection",
        status=DagsterRunStatus.STARTED,
        tags={
            PARTITION_NAME_TAG: "crashed",
            HOST_TAG: socket.gethostname(),
            PID_TAG: str(gone.pid),
        },
    )
    assert run_sync("crashed", dagster_instance, log_level="ERROR").ok
    assert dagster_instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
