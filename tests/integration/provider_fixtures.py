"""Fixtures for the provider emulators (fake-gcs-server, Azurite, a moto server of our own) and a PostgreSQL server.

The provider tests load this module with `pytest_plugins` and use only its fixtures (importing it directly would
defeat pytest's assertion rewriting for it); a conftest may also import it. Each emulator is started
once per session on a free port and stopped by its process group. The moto server here is separate from the one
the sync tests use, because the connection tests switch moto's IAM enforcement on, which is global to a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resources.catalog import Connection
from tests.servers import Server, start_azurite, start_azurite_queue, start_fake_gcs, start_moto, start_postgres


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Azurite's queue service: the Storage Queue that Event Grid blob events arrive in (pipelines/event_sensor)."""
    server = start_azurite_queue(tmp_path_factory.mktemp("azurite-queue"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_iam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A moto server whose IAM enforcement the tests switch on and off through /moto-api/reset-auth."""
    server = start_moto(tmp_path_factory.mktemp("moto-iam"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real PostgreSQL server (Debian's packages) for the DuckLake catalog; `extra` has user, password, bin.

    Tests create a database each (tests.servers.create_database), so catalogs never meet.
    """
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


def _gcs_connection(
    name: str, bucket: str, endpoint: str, auth: dict[str, Any] | None = None, **options: Any
) -> Connection:
    return Connection(
        name=name,
        provider="gcs",
        bucket=bucket,
        options={"endpoint": endpoint, "project": "test", **options},
        auth=auth or {"mode": "anonymous"},
    )


def _azure_connection(name: str, container: str, server: Server, auth: dict[str, Any]) -> Connection:
    return Connection(
        name=name,
        provider="azure",
        bucket=container,
        options={"account": server.extra["account"], "endpoint": server.extra["blob_endpoint"]},
        auth=auth,
    )


def _gcs_admin(server: Server) -> Any:
    """A google-cloud-storage client for arranging fixtures (the emulator does not check credentials)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": server.endpoint}
    )


def _azure_admin(server: Server) -> Any:
    """A BlobServiceClient with the development account's key, for arranging fixtures."""
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(
        server.extra["blob_endpoint"],
        credential={"account_name": server.extra["account"], "account_key": server.extra["key"]},
    )


def _write_service_account(path: Path, *, project: str = "test") -> Path:
    """A syntactically real service-account key (fresh RSA key), as Google issues them.

    Both clients sign with it locally (google-auth mints a self-signed JWT when asked, object_store always
    does), and fake-gcs-server ignores the signature, so the service_account mode runs end to end offline.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": f"bucket-sync@{project}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


@pytest.fixture
def gcs_connection() -> Callable[..., Connection]:
    """`gcs_connection(name, bucket, endpoint, auth=None, **options)`: a catalog entry for fake-gcs-server."""
    return _gcs_connection


@pytest.fixture
def azure_connection() -> Callable[..., Connection]:
    """`azure_connection(name, container, server, auth)`: a catalog entry for Azurite."""
    return _azure_connection


@pytest.fixture(scope="session")
def gcs_admin(fake_gcs: Server) -> Any:
    return _gcs_admin(fake_gcs)


@pytest.fixture(scope="session")
def azure_admin(azurite: Server) -> Any:
    return _azure_admin(azurite)


@pytest.fixture
def service_account_file(tmp_path: Path) -> Path:
    return _write_service_account(tmp_path / "service-account.json")
