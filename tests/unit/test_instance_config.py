"""The instance `make demo`, `make ui` and the CLI share: its dagster.yaml and the `duckdb_index` pool limit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from dagster._core.storage.tags import PARTITION_NAME_TAG

from pipelines.instance import DAGSTER_YAML, INDEX_POOL, MARKER, ensure_dagster_home, ensure_index_pool, local_instance

#: What the first releases of bucket-sync wrote, without a marker line.
EARLIER_RELEASE = """\
telemetry:
  enabled: false
run_monitoring:
  enabled: true
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


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster-home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_a_new_home_gets_the_whole_file_and_the_instance_loads_it(dagster_home: Path) -> None:
    ensure_dagster_home()
    assert (dagster_home / "dagster.yaml").read_text() == DAGSTER_YAML
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        queue = config.run_queue_config
        assert {"key": PARTITION_NAME_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
            queue.tag_concurrency_limits
        )
        assert queue.max_user_code_failure_retries > 0
        assert instance.code_server_process_startup_timeout >= 180
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0


def test_the_index_pool_limit_is_set_explicitly_not_only_by_default(dagster_home: Path) -> None:
    with local_instance() as instance:
        limits = {p.name: p for p in instance.event_log_storage.get_pool_limits()}
        assert limits[INDEX_POOL].limit == 1 and not limits[INDEX_POOL].from_default


def test_a_limit_a_person_chose_is_kept(dagster_home: Path) -> None:
    ensure_dagster_home()
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.event_log_storage.set_concurrency_slots(INDEX_POOL, 3)
        ensure_index_pool(instance)
        assert instance.event_log_storage.get_concurrency_info(INDEX_POOL).slot_count == 3


def test_a_file_of_an_earlier_release_gets_the_settings_it_lacks(dagster_home: Path) -> None:
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(EARLIER_RELEASE)
    ensure_dagster_home()
    assert (dagster_home / "dagster.yaml").read_text() == DAGSTER_YAML


def test_our_file_keeps_a_value_a_person_changed_and_gains_what_it_lacks(dagster_home: Path) -> None:
    dagster_home.mkdir()
    config = yaml.safe_load(DAGSTER_YAML)
    config["concurrency"]["runs"]["max_concurrent_runs"] = 2
    del config["run_queue"]
    (dagster_home / "dagster.yaml").write_text(MARKER + "\n" + yaml.safe_dump(config))
    ensure_dagster_home()
    text = (dagster_home / "dagster.yaml").read_text()
    merged = yaml.safe_load(text)
    assert text.startswith(MARKER)
    assert merged["concurrency"]["runs"]["max_concurrent_runs"] == 2
    assert merged["run_queue"] == yaml.safe_load(DAGSTER_YAML)["run_queue"]
    DagsterInstance.from_config(str(dagster_home)).dispose()  # still a valid instance file


def test_a_file_someone_else_wrote_is_left_alone_with_a_note(
    dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dagster_home.mkdir()
    theirs = "telemetry:\n  enabled: true\n"
    (dagster_home / "dagster.yaml").write_text(theirs)
    ensure_dagster_home()
    assert (dagster_home / "dagster.yaml").read_text() == theirs
    assert "was not written by bucket-sync" in capsys.readouterr().err
