"""A real `dagster dev` (webserver, daemon, code server) on 127.0.0.1, driven through the webserver's GraphQL API.

This is the path a person's click in the UI takes: the webserver queues the run, the daemon dequeues it and asks the
code server to start it, and the run process executes the job with the definitions' executor. The integration test
of UI backfills and benchmarks/ui_vs_cli.py share it. Every process is stopped through its process group.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import REPO, VENV_BIN, Server, free_port, http_ok, start_server

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


class GraphQLError(RuntimeError):
    pass


@dataclass
class DagsterUI:
    server: Server
    location: str = ""
    repository: str = ""

    @property
    def url(self) -> str:
        return self.server.endpoint + "/graphql"

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": document, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]

    def stop(self) -> None:
        self.server.stop()

    # -- the location ---------------------------------------------------------------------------------------------

    def wait_loaded(self, timeout_s: float) -> None:
        """Wait until the code location has loaded, and remember its location and repository names."""
        deadline = time.monotonic() + timeout_s
        while True:
            data = self.query(
                "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
                "locationOrLoadError { __typename ... on PythonError { message } "
                "... on RepositoryLocation { repositories { name } } } } } } }"
            )
            entries = data["workspaceOrError"].get("locationEntries", [])
            loaded = [e for e in entries if e["loadStatus"] == "LOADED" and e["locationOrLoadError"]]
            if loaded:
                entry = loaded[0]
                if entry["locationOrLoadError"]["__typename"] == "PythonError":
                    raise GraphQLError(f"the code location failed to load: {entry['locationOrLoadError']['message']}")
                self.location = entry["name"]
                self.repository = entry["locationOrLoadError"]["repositories"][0]["name"]
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the code location did not load within {timeout_s:.0f}s: {entries}")
            time.sleep(1)

    @property
    def repository_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def add_partition(self, key: str, partitions: str = "connections") -> None:
        data = self.query(
            "mutation($r: RepositorySelector!, $p: String!, $k: String!) { addDynamicPartition("
            "repositorySelector: $r, partitionsDefName: $p, partitionKey: $k) { __typename "
            "... on PythonError { message } ... on UnauthorizedError { message } } }",
            {"r": self.repository_selector, "p": partitions, "k": key},
        )
        outcome = data["addDynamicPartition"]
        if outcome["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise GraphQLError(f"addDynamicPartition({key}): {outcome}")

    # -- launching --------------------------------------------------------------------------------------------------

    def launch_run(self, job: str, partition: str, run_config: dict[str, Any] | None = None) -> str:
        """Launch one partition of `job`, as the Launchpad's "Launch run" does; returns the run id."""
        data = self.query(
            "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } "
            "... on RunConfigValidationInvalid { errors { message } } ... on InvalidStepError { invalidStepKey } } }",
            {
                "p": {
                    "selector": {**self.repository_selector, "jobName": job},
                    "runConfigData": run_config or {},
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
                }
            },
        )
        outcome = data["launchRun"]
        if outcome["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRun: {outcome}")
        return outcome["run"]["runId"]

    def launch_backfill(self, partitions: list[str], assets: list[str]) -> str:
        """Backfill `partitions` of `assets`, as "Materialize > Launch backfill" on the asset graph does."""
        data = self.query(
            "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename "
            "... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } "
            "... on PartitionSetNotFoundError { message } ... on InvalidSubsetError { message } } }",
            {"p": {"partitionNames": partitions, "assetSelection": [{"path": [a]} for a in assets]}},
        )
        outcome = data["launchPartitionBackfill"]
        if outcome["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"launchPartitionBackfill: {outcome}")
        return outcome["backfillId"]

    def reexecute(self, parent_run_id: str, strategy: str = "ALL_STEPS") -> str:
        """Re-execute a run, as its "Re-execute all" button does; returns the new run's id."""
        data = self.query(
            "mutation($p: ReexecutionParams!) { launchRunReexecution(reexecutionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId } } ... on PythonError { message stack } "
            "... on RunConfigValidationInvalid { errors { message } } ... on InvalidStepError { invalidStepKey } "
            "... on InvalidSubsetError { message } ... on RunConflict { message } } }",
            {"p": {"parentRunId": parent_run_id, "strategy": strategy}},
        )
        outcome = data["launchRunReexecution"]
        if outcome["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRunReexecution: {outcome}")
        return outcome["run"]["runId"]

    # -- watching ---------------------------------------------------------------------------------------------------

    def run_status(self, run_id: str) -> str:
        data = self.query(
            "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }", {"id": run_id}
        )
        return data["runOrError"].get("status", data["runOrError"]["__typename"])

    def wait_run(self, run_id: str, timeout_s: float, poll_s: float = 0.25) -> str:
        deadline = time.monotonic() + timeout_s
        while (status := self.run_status(run_id)) not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {status} after {timeout_s:.0f}s")
            time.sleep(poll_s)
        return status

    def run_times(self, run_id: str) -> dict[str, float]:
        """When the run was created (queued), started (its process running) and ended, in epoch seconds."""
        data = self.query(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { creationTime startTime endTime } } }",
            {"id": run_id},
        )
        return data["runOrError"]

    def backfill(self, backfill_id: str) -> tuple[str, list[dict[str, Any]]]:
        """The backfill's status and its runs (id, status, partition)."""
        data = self.query(
            "query($id: String!, $tag: String!) { "
            "partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill { status } } "
            'runsOrError(filter: {tags: [{key: "dagster/backfill", value: $tag}]}) { __typename '
            "... on Runs { results { runId status tags { key value } } } } }",
            {"id": backfill_id, "tag": backfill_id},
        )
        runs = [
            {
                "run_id": r["runId"],
                "status": r["status"],
                "partition": next((t["value"] for t in r["tags"] if t["key"] == "dagster/partition"), None),
            }
            for r in data["runsOrError"]["results"]
        ]
        return data["partitionBackfillOrError"].get("status", "?"), runs

    def job_runs(self, job: str) -> list[dict[str, Any]]:
        """The runs of `job` as its Runs tab lists them: id, status, partition, and the code location they belong to."""
        data = self.query(
            "query($f: RunsFilter) { runsOrError(filter: $f) { __typename ... on Runs { results { runId status "
            "tags { key value } repositoryOrigin { repositoryLocationName repositoryName } } } } }",
            {"f": {"pipelineName": job}},
        )
        return [
            {
                "run_id": r["runId"],
                "status": r["status"],
                "partition": next((t["value"] for t in r["tags"] if t["key"] == "dagster/partition"), None),
                "origin": r["repositoryOrigin"],
            }
            for r in data["runsOrError"]["results"]
        ]

    def partitions(self, asset: str) -> dict[str, list[str]]:
        """The asset's partition keys and its partition statuses as the asset graph shows them."""
        data = self.query(
            "query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { __typename ... on AssetNode { "
            "partitionKeys assetPartitionStatuses { __typename ... on DefaultPartitionStatuses { "
            "materializedPartitions failedPartitions materializingPartitions } } } } }",
            {"k": {"path": [asset]}},
        )
        node = data["assetNodeOrError"]
        statuses = node["assetPartitionStatuses"]
        return {
            "keys": node["partitionKeys"],
            "materialized": statuses["materializedPartitions"],
            "failed": statuses["failedPartitions"],
        }

    def run_log(self, run_id: str, limit: int = 200) -> str:
        """The run's event messages, for a failure message."""
        data = self.query(
            "query($id: ID!, $n: Int) { logsForRun(runId: $id, limit: $n) { __typename "
            "... on EventConnection { events { __typename ... on MessageEvent { message } } } } }",
            {"id": run_id, "n": limit},
        )
        events = data["logsForRun"].get("events", [])
        return "\n".join(e.get("message", "") for e in events if e.get("message"))


def start_dagster_dev(log_dir: Path, env: dict[str, str], timeout_s: float = 300.0) -> DagsterUI:
    """`dagster dev` for the repository's workspace.yaml on a free loopback port, with the given environment.

    `env` must carry DAGSTER_HOME (whose dagster.yaml the caller prepared), BUCKET_SYNC_HOME and BUCKET_SYNC_CATALOG.
    Returns once the code location has loaded, so what the caller times next is a click, not a cold start.
    """
    port = free_port()
    argv = [str(VENV_BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    server = start_server(
        "dagster-dev", argv, port, lambda ep: http_ok(ep + "/server_info"), log_dir, timeout_s, env=env, cwd=REPO
    )
    ui = DagsterUI(server)
    try:
        ui.wait_loaded(timeout_s)
    except BaseException:
        ui.stop()
        raise
    return ui
