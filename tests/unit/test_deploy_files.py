"""deploy/: the files a deployment on many machines starts from, checked without a cluster.

- Both dagster.yaml files load through Dagster's own instance schema, and each class they configure (Postgres storage,
  S3 compute logs, the run queue) accepts its config under that class's schema, with the environment a deployment sets.
- The Postgres engine builds from the configured scheme: the psycopg2 driver that dagster-postgres brings is found.
- The Helm values set what the chart reads, in the shapes it reads them, and say the same as deploy/dagster.yaml.
- The Dockerfile copies every package of the project and runs the code server on port 4000.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef

from pipelines.executor import chosen_executor

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "s3cr3t-not-real",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_COMPUTE_LOG_BUCKET": "compute-logs",
}


def instance_home(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text(text)
    return home


def class_config_errors(data: Any) -> list[str]:
    """Validate a configured class's config against the class's own schema, without instantiating it."""
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(klass.config_type(), yaml.safe_load(data.config_yaml) or {})
    return [] if result.success else [e.message for e in result.errors]


@pytest.fixture
def deployment_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def test_deploy_dagster_yaml_is_a_valid_postgres_instance(tmp_path: Path, deployment_env: None) -> None:
    home = instance_home(tmp_path, (DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(home))
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in config[
        "concurrency"
    ]["runs"]["tag_concurrency_limits"]
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0

    ref = InstanceRef.from_dir(str(home))
    configured = {
        "storage": ref.storage_data,
        "compute_logs": ref.compute_logs_data,
        "run_coordinator": ref.run_coordinator_data,
    }
    assert ref.storage_data.module_name == "dagster_postgres"
    assert ref.compute_logs_data.class_name == "S3ComputeLogManager"
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    for name, data in configured.items():
        assert not class_config_errors(data), f"{name}: {class_config_errors(data)}"

    # The engine dagster-postgres would build: the driver named by the scheme imports (no connection is made).
    from dagster_postgres.utils import pg_url_from_config

    storage = process_config(
        getattr(importlib.import_module(ref.storage_data.module_name), ref.storage_data.class_name).config_type(),
        yaml.safe_load(ref.storage_data.config_yaml),
    ).value
    url = pg_url_from_config(storage)
    assert url.startswith("postgresql+psycopg2://dagster:s3cr3t-not-real@db.internal:5432/dagster")
    assert sqlalchemy.create_engine(url).dialect.driver == "psycopg2"


def test_a_plain_postgresql_url_needs_psycopg_3_which_the_lock_does_not_bring() -> None:
    """Why deploy/ writes `postgresql+psycopg2`: SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3."""
    plain = "postgresql://dagster@db.internal:5432/dagster"
    if importlib.util.find_spec("psycopg") is None:
        with pytest.raises(ModuleNotFoundError, match="psycopg"):
            sqlalchemy.create_engine(plain)
    else:  # someone added psycopg 3: the bare form then works, and the README's warning can go
        assert sqlalchemy.create_engine(plain).dialect.driver == "psycopg"


def test_deploy_dagster_yaml_and_the_local_one_queue_syncs_the_same_way(deployment_env: None) -> None:
    from pipelines.instance import DAGSTER_YAML

    deployed, local = yaml.safe_load((DEPLOY / "dagster.yaml").read_text()), yaml.safe_load(DAGSTER_YAML)
    for part in (("concurrency", "pools", "default_limit"), ("concurrency", "runs", "tag_concurrency_limits")):
        a, b = deployed, local
        for key in part:
            a, b = a[key], b[key]
        assert a == b, part


# -- Helm ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in deployment["env"]}


def test_helm_user_deployment_serves_the_code_location_with_catalog_state_index_and_secrets(
    helm: dict[str, Any],
) -> None:
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    assert helm["dagster-user-deployments"]["enabled"] is True
    assert {"repository", "tag", "pullPolicy"} <= set(deployment["image"])
    assert deployment["codeServerArgs"] == ["-m", "pipelines.definitions"] and deployment["port"] == 4000
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}  # run pods get env, secrets, volumes

    env = env_of(deployment)
    mounts = {m["name"]: m for m in deployment["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    catalog_mount = next(m for m in mounts.values() if env["BUCKET_SYNC_CATALOG"].startswith(m["mountPath"] + "/"))
    assert "configMap" in volumes[catalog_mount["name"]] and catalog_mount.get("readOnly") is True
    assert env["BUCKET_SYNC_STATE"].startswith("s3://")
    assert env["BUCKET_SYNC_INDEX"].startswith("ducklake:postgres:") and "password" not in env["BUCKET_SYNC_INDEX"]
    assert chosen_executor(env["BUCKET_SYNC_EXECUTOR"]).name == "in_process"
    assert [s["name"] for s in deployment["envSecrets"]] == ["bucket-sync-env"]
    for key in ("BUCKET_SYNC_INDEX", "BUCKET_SYNC_STATE"):
        assert not re.search(r"(?i)(secret|passw|token)\s*=", env[key]), key


def test_helm_index_setting_is_one_the_index_accepts(helm: dict[str, Any]) -> None:
    from resources.index import parse_index_url  # type: ignore[attr-defined]

    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    assert parse_index_url(env_of(deployment)["BUCKET_SYNC_INDEX"]).lake


def test_helm_runs_one_pod_per_run_on_postgres_with_s3_step_logs(helm: dict[str, Any]) -> None:
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert helm["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == [{"name": "bucket-sync-env"}]
    pg = helm["postgresql"]
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert "postgresqlPassword" not in pg and helm["generatePostgresqlPasswordSecret"] is False
    assert helm["global"]["postgresqlSecretName"]
    assert helm["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert helm["computeLogManager"]["config"]["s3ComputeLogManager"]["bucket"]


def test_helm_instance_settings_are_valid_and_match_deploy_dagster_yaml(
    helm: dict[str, Any], tmp_path: Path, deployment_env: None
) -> None:
    """Render the parts of dagster.yaml the chart builds from these values, and load them with Dagster's schema."""
    daemon = helm["dagsterDaemon"]
    # The chart refuses queue limits both in concurrency.runs and in the run coordinator's config.
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert not daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    monitoring, concurrency = daemon["runMonitoring"], helm["concurrency"]
    assert concurrency["enabled"] is True
    rendered = {
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        },
        "concurrency": {
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
            "runs": {
                "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
            },
        },
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
    }
    config, _ = dagster_instance_config(str(instance_home(tmp_path, yaml.safe_dump(rendered))))
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert config["concurrency"] == deployed["concurrency"]
    assert (
        config["run_monitoring"]["free_slots_after_run_end_seconds"]
        == (deployed["run_monitoring"]["free_slots_after_run_end_seconds"])
    )


# -- Dockerfile ---------------------------------------------------------------------------------------------------


def test_dockerfile_installs_from_the_lock_and_copies_every_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "uv sync --frozen" in text and "--extra deploy" in text
    assert re.search(r"^EXPOSE 4000$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd and yaml.safe_load(cmd.group(1))[:3] == ["dagster", "code-server", "start"]
    assert "-m" in cmd.group(1) and "pipelines.definitions" in cmd.group(1) and '"4000"' in cmd.group(1)

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied = {src for line in re.findall(r"^COPY (.+)$", text, re.M) for src in line.split()[:-1]}
    assert set(packages) <= copied, f"packages the image lacks: {set(packages) - copied}"
    for source in copied:
        assert (REPO / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert all(f"!{source}" in ignore or f"!{source}/" in ignore for source in copied)
