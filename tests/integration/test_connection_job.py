"""The `test_connection` job that the UI's Launchpad runs: one status, and a red run unless AVAILABLE."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, ExecuteInProcessResult

from pipelines.definitions import defs
from tests.conftest import Workspace

pytestmark = pytest.mark.integration


def run(name: str, instance: DagsterInstance) -> ExecuteInProcessResult:
    job = defs.resolve_job_def("test_connection")
    return job.execute_in_process(
        run_config={"ops": {"connection_test": {"config": {"connection": name}}}},
        instance=instance,
        raise_on_error=False,
    )


def test_available_connection_passes_with_its_status_in_metadata(
    workspace: Workspace, dagster_instance: DagsterInstance, tmp_path: Path
) -> None:
    workspace.write_catalog({"name": "disk", "provider": "local", "root": str(tmp_path)})
    result = run("disk", dagster_instance)
    assert result.success
    assert result.output_for_node("connection_test") == "AVAILABLE"


@pytest.mark.parametrize(
    ("entry", "status", "remedy"),
    [
        ({"provider": "local", "root": "/definitely/not/here"}, "NOT_FOUND", "create the folder"),
        (
            {
                "provider": "s3",
                "bucket": "some-bucket",
                "auth": {"mode": "keys", "access_key_id_env": "BS_UNSET_KEY", "secret_access_key_env": "BS_UNSET_S"},
            },
            "MISCONFIGURED",
            "set the variable",
        ),
    ],
)
def test_failing_connection_fails_the_run_with_status_and_remedy(
    workspace: Workspace,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    entry: dict[str, object],
    status: str,
    remedy: str,
) -> None:
    monkeypatch.delenv("BS_UNSET_KEY", raising=False)
    workspace.write_catalog({"name": "bad", **entry})
    result = run("bad", dagster_instance)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"{status}:") and remedy in description
