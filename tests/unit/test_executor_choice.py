"""The deployment picks the sync job's executor through BUCKET_SYNC_EXECUTOR; the default is one process per run."""

from __future__ import annotations

import sys

import pytest

from pipelines.definitions import build_definitions
from pipelines.executor import VARIABLE, ExecutorChoiceError, chosen_executor


def sync_job_executor(monkeypatch: pytest.MonkeyPatch, value: str | None) -> str:
    if value is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, value)
    return build_definitions().resolve_job_def("sync_connection").executor_def.name


@pytest.mark.parametrize(
    ("value", "executor"),
    [
        (None, "in_process"),
        ("", "in_process"),
        ("in_process", "in_process"),
        (" In-Process ", "in_process"),
        ("multiprocess", "multiprocess"),
        ("celery", "celery"),
        ("k8s", "k8s"),
    ],
)
def test_each_value_gives_its_executor_on_the_sync_job(
    monkeypatch: pytest.MonkeyPatch, value: str | None, executor: str
) -> None:
    assert sync_job_executor(monkeypatch, value) == executor


def test_the_connection_test_job_follows_the_same_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "multiprocess")
    assert build_definitions().resolve_job_def("test_connection").executor_def.name == "multiprocess"


def test_a_bad_value_names_the_variable_and_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "dask")
    with pytest.raises(ExecutorChoiceError) as error:
        build_definitions()
    message = str(error.value)
    assert VARIABLE in message and "'dask'" in message
    assert all(choice in message for choice in ("in_process", "multiprocess", "celery", "k8s"))


@pytest.mark.parametrize(("value", "module"), [("celery", "dagster_celery"), ("k8s", "dagster_k8s")])
def test_a_missing_integration_names_the_variable_and_the_extra(
    monkeypatch: pytest.MonkeyPatch, value: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an environment without the `deploy` extra looks like
    with pytest.raises(ExecutorChoiceError) as error:
        chosen_executor(value)
    message = str(error.value)
    assert f"{VARIABLE}={value}" in message and module in message and "deploy" in message
