"""The index setting: a DuckDB file path or `ducklake:postgres:<connection>`, never with a credential in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from resources.index import IndexSettingError, extension_path, parse_index_url
from resources.index_resource import MediaIndex
from resources.secrets import scrub

PASSWORD = "hunter2-index-pw"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("BUCKET_SYNC_INDEX", "BUCKET_SYNC_INDEX_DATA", "BUCKET_SYNC_STATE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BUCKET_SYNC_HOME", str(tmp_path / "home"))


def test_default_is_the_duckdb_file_in_home(tmp_path: Path) -> None:
    location = MediaIndex().target
    assert location.file == (tmp_path / "home" / "index.duckdb").resolve() and not location.lake


def test_the_variable_names_the_index_and_config_overrides_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BUCKET_SYNC_INDEX", "ducklake:postgres:dbname=bs host=127.0.0.1 port=5432 user=sync")
    location = MediaIndex().target
    assert location.lake and location.catalog == "dbname=bs host=127.0.0.1 port=5432 user=sync"
    assert location.data_path == str((tmp_path / "home" / "index-data").resolve()) + "/"
    assert MediaIndex(url=str(tmp_path / "other.duckdb")).target.file == (tmp_path / "other.duckdb").resolve()


def test_data_path_follows_the_state_store_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "ducklake:postgres:dbname=bs"
    monkeypatch.setenv("BUCKET_SYNC_STATE", "s3://state-bucket/bucket-sync")
    assert MediaIndex(url=url).target.data_path == "s3://state-bucket/bucket-sync/index-data/"
    monkeypatch.setenv("BUCKET_SYNC_INDEX_DATA", "s3://lake-bucket/data")
    assert MediaIndex(url=url).target.data_path == "s3://lake-bucket/data/"
    assert MediaIndex(url=url, data_path="s3://x/y/").target.data_path == "s3://x/y/"


@pytest.mark.parametrize(
    "url",
    [
        f"ducklake:postgres:dbname=bs host=db password={PASSWORD} user=sync",
        f"ducklake:postgres:dbname=bs password='{PASSWORD}'",
        f"ducklake:postgres:postgresql://sync:{PASSWORD}@db:5432/bs",
        f"ducklake:postgres:postgresql://sync@db/bs?sslmode=require&password={PASSWORD}",
    ],
)
def test_a_password_in_the_url_is_refused_naming_the_setting(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(IndexSettingError) as refused:
        MediaIndex(url=url).target.describe()
    message = str(refused.value)
    assert "MediaIndex.url" in message and "PGPASSWORD" in message and PASSWORD not in message
    assert PASSWORD not in scrub(f"connecting with {url} failed")  # remembered: no later echo leaks it either

    monkeypatch.setenv("BUCKET_SYNC_INDEX", url)
    with pytest.raises(IndexSettingError, match=r"\$BUCKET_SYNC_INDEX"):
        MediaIndex().target.describe()


def test_a_user_name_without_password_is_fine() -> None:
    location = parse_index_url("ducklake:postgres:postgresql://sync@db:5432/bs")
    assert location.catalog == "postgresql://sync@db:5432/bs"


@pytest.mark.parametrize(
    ("url", "data_path", "says"),
    [
        ("ducklake:sqlite:meta.sqlite", None, "catalog in Postgres"),
        ("ducklake:postgres:", None, "must be followed by"),
        ("s3://bucket/index.duckdb", None, "local path"),
        ("ducklake:postgres:dbname=bs", "gs://bucket/data", "local folder or an s3:// URL"),
        ("ducklake:postgres:dbname=bs", "s3://AKIA:secret-key-value@bucket/data", "AWS_ACCESS_KEY_ID"),
    ],
)
def test_what_the_index_cannot_be_is_refused_with_advice(url: str, data_path: str | None, says: str) -> None:
    with pytest.raises(IndexSettingError, match=says) as refused:
        MediaIndex(url=url, data_path=data_path).target.describe()
    assert "secret-key-value" not in str(refused.value)


@pytest.mark.parametrize("name", ["ducklake", "postgres_scanner", "httpfs"])
def test_extensions_come_from_the_installed_wheels(name: str) -> None:
    import duckdb

    path = extension_path(name)
    assert path.is_file() and f"v{duckdb.__version__}" in str(path) and "site-packages" in str(path)
