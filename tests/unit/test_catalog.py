"""The catalog refuses bad input with a message that names the file, the line, the connection and the field."""

from __future__ import annotations

import multiprocessing
import resource
from pathlib import Path
from typing import Any

import pytest

from resources.catalog import CatalogError, KeyFilter, dump_catalog, load_catalog
from resources.catalog_yaml import catalog_names


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, text))
    return str(info.value)


def test_valid_catalog_normalises_prefix_and_resolves_base_dir(tmp_path: Path) -> None:
    catalog = load_catalog(
        write(
            tmp_path,
            """
connections:
  - name: photos
    provider: s3
    bucket: my-photos
    prefix: datasets/cats
    include: ["*.jpg"]
    auth: {mode: keys, access_key_id_env: AWS_KEY, secret_access_key_env: AWS_SECRET}
  - name: disk
    provider: local
    root: ./data
    profile: cvat
""",
        )
    )
    photos = catalog.get("photos")
    assert photos.prefix == "datasets/cats/"
    assert photos.relative_key("datasets/cats/a/b.jpg") == "a/b.jpg"
    assert catalog.get("disk").profile == "cvat"
    assert catalog.get("disk").base_dir == str(tmp_path.resolve())


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="BUCKET_SYNC_CATALOG"):
        load_catalog(tmp_path / "nope.yaml")


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    message = error_of(tmp_path, "connections:\n  - name: a\n    provider: [local\n")
    assert "connections.yaml" in message and "line 4" in message and "malformed YAML" in message


def test_unknown_field_is_named_with_its_connection_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "connections:\n  - name: demo\n    provider: local\n    root: x\n    colour: red\n")
    assert "connections.yaml:2: connection 'demo', field 'colour': unknown field" in message


def test_duplicate_connection_names_point_at_the_first(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "connections:\n  - name: a\n    provider: local\n    root: x\n  - name: a\n    provider: local\n    root: y\n",
    )
    assert "connections.yaml:5: connection 'a': duplicate connection name (first defined at line 2)" in message


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "connections:\n  - name: a\n    name: b\n    provider: local\n    root: x\n")
    assert "duplicate key 'name'" in message and "line 3" in message


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ("{mode: keys, access_key_id_env: AKIAIOSFODNN7EXAMPLE, secret_access_key_env: S}", "auth.access_key_id_env"),
        (
            "{mode: keys, access_key_id_env: K, secret_access_key_env: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}",
            "auth.secret_access_key_env",
        ),
    ],
)
def test_inline_secret_is_refused_without_echoing_it(tmp_path: Path, auth: str, field: str) -> None:
    message = error_of(
        tmp_path, f"connections:\n  - name: s\n    provider: s3\n    bucket: my-bucket\n    auth: {auth}\n"
    )
    assert f"field '{field}': looks like an inline secret" in message
    assert "AKIAIOSFODNN7EXAMPLE" not in message and "wJalrXUtnFEMI" not in message


def test_secret_given_as_a_value_field_gets_the_env_hint(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "connections:\n  - name: s\n    provider: s3\n    bucket: my-bucket\n"
        "    auth: {mode: keys, access_key_id_env: K, secret_access_key_env: S, secret_access_key: hunter2}\n",
    )
    assert "auth.secret_access_key" in message and "unknown field" in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("name: Bad_Name\n    provider: local\n    root: x", "field 'name': 'Bad_Name' is not a valid connection name"),
        ("name: a\n    provider: local\n    root: x\n    prefix: /images", "starts with '/'"),
        ("name: a\n    provider: ftp\n    root: x", "field 'provider'"),
        ("name: a\n    provider: local", "field 'root': a local connection needs `root`"),
        ("name: a\n    provider: local\n    root: x\n    profile: vi", "field 'profile'"),
        ("name: a\n    provider: s3\n    bucket: Bad_Bucket", "field 'bucket': S3 bucket name 'Bad_Bucket'"),
        ("name: a\n    provider: s3\n    bucket: ok-bucket\n    auth: {mode: magic}", "field 'auth"),
        ("name: a\n    provider: local\n    root: x\n    schedule: every night", "is not a cron expression"),
    ],
)
def test_each_bad_field_is_named(tmp_path: Path, entry: str, expected: str) -> None:
    assert expected in error_of(tmp_path, f"connections:\n  - {entry}\n")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "connections:\n  - name: a\n    provider: local\n  - name: b\n    provider: local\n    root: x\n    bogus: 1\n",
    )
    assert "connection 'a'" in message and "connection 'b'" in message


@pytest.mark.parametrize(
    ("include", "exclude", "key", "kept"),
    [
        (("*.jpg",), (), "a/b/c.jpg", True),
        (("*.jpg",), (), "a/b/c.png", False),
        (("images/**",), (), "images/x/y.png", True),
        (("images/*.png",), (), "images/x/y.png", False),
        ((), ("**/thumbs/**",), "a/thumbs/x.jpg", False),
        ((), ("**/thumbs/**",), "thumbs/x.jpg", False),
        ((), ("*.tmp",), "x.jpg", True),
        (("**/*.jp?g",), (), "deep/a.jpg", False),
        (("**/*.jp?g",), (), "deep/a.jpeg", True),
    ],
)
def test_key_filter_globs(include: tuple[str, ...], exclude: tuple[str, ...], key: str, kept: bool) -> None:
    assert KeyFilter(include, exclude)(key) is kept


def test_azure_service_principal_ids_are_not_mistaken_for_secrets(tmp_path: Path) -> None:
    catalog = load_catalog(
        write(
            tmp_path,
            """
connections:
  - name: blobs
    provider: azure
    bucket: images
    options: {account: mystorageacct}
    auth:
      mode: service_principal
      tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 04b07795-8ddb-461a-bbee-02f9e1bf7b46
      client_secret_env: AZURE_CLIENT_SECRET
""",
        )
    )
    assert catalog.get("blobs").auth["tenant_id"].startswith("72f988bf")


def _error_in_bounded_child(path: Path, queue: Any) -> None:
    """Load `path` in a child capped at 1 GiB of address space, and report the CatalogError's text."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    try:
        load_catalog(path)
        queue.put("loaded")
    except CatalogError as exc:
        queue.put(str(exc))
    except MemoryError:
        queue.put("MemoryError")


def test_yaml_alias_bomb_is_refused_at_the_first_alias(tmp_path: Path) -> None:
    """A billion-laughs file of under 1 KB. Unrefused it takes gigabytes and never finishes, so it is loaded in a
    child with bounded memory and time: a regression fails this test, not the machine it runs on."""
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = "\n".join(levels) + "\nconnections:\n  - name: a\n    provider: local\n    root: *a9\n"
    assert len(bomb.encode()) < 1000
    # A spawned child, not a forked one: forking a test process that other tests left with running threads can copy
    # a lock those threads held (the import lock, a logging lock), and the child then waits on it forever.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_error_in_bounded_child, args=(write(tmp_path, bomb), queue))
    child.start()
    child.join(90)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("loading an 800-byte alias bomb did not finish within 90 s")
    message = queue.get(timeout=5)
    assert "connections.yaml: line 2, column 10: YAML alias *a0 refused" in message
    assert "does not need anchors and aliases" in message


def test_merge_key_alias_is_refused_with_its_line(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        "defaults: &d {provider: local, root: x}\nconnections:\n  - name: a\n    <<: *d\n",
    )
    assert "line 4, column 9: YAML alias *d refused" in message


@pytest.mark.parametrize("empty", ['""', "''", '"  "'])
def test_empty_variable_name_is_called_empty_not_an_inline_secret(tmp_path: Path, empty: str) -> None:
    message = error_of(
        tmp_path,
        "connections:\n  - name: s\n    provider: s3\n    bucket: my-bucket\n"
        f"    auth: {{mode: keys, access_key_id_env: K, secret_access_key_env: {empty}}}\n",
    )
    assert (
        "connections.yaml:2: connection 's', field 'auth.secret_access_key_env': the variable name is empty; "
        "write the name of the environment variable that holds the credential "
        "(e.g. secret_access_key_env: SECRET_ACCESS_KEY)"
    ) in message
    assert "inline secret" not in message


URL_PASSWORD = "pAsSw0rd-in-url-77"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (
            f"provider: s3\n    bucket: my-bucket\n    options: {{endpoint: 'http://minio:{URL_PASSWORD}@127.0.0.1:9000'}}",
            "options.endpoint",
        ),
        (
            "provider: gcs\n    bucket: my-bucket\n"
            f"    options: {{endpoint: 'https://{URL_PASSWORD}@gcs.example.com'}}",
            "options.endpoint",
        ),
        (
            "provider: azure\n    bucket: images\n"
            f"    options: {{account: acct, endpoint: 'https://u:{URL_PASSWORD}@acct.blob.core.windows.net'}}",
            "options.endpoint",
        ),
        (
            "provider: s3\n    bucket: my-bucket\n"
            f"    auth: {{mode: assume_role, role_arn: 'arn:aws:iam::123456789012:role/r', "
            f"session_name: 's3://k:{URL_PASSWORD}@b'}}",
            "auth.session_name",
        ),
        (
            f"provider: local\n    root: x\n    description: 'mirror of ftp://me:{URL_PASSWORD}@ftp.example.com/pub'",
            "description",
        ),
    ],
)
def test_url_with_user_info_is_refused_as_an_inline_secret(tmp_path: Path, fields: str, field: str) -> None:
    message = error_of(tmp_path, f"connections:\n  - name: u\n    {fields}\n")
    assert f"connections.yaml:2: connection 'u', field '{field}': the URL holds a user name or password" in message
    assert "environment variable" in message
    assert URL_PASSWORD not in message


def test_url_without_user_info_is_accepted(tmp_path: Path) -> None:
    catalog = load_catalog(
        write(
            tmp_path,
            "connections:\n  - name: m\n    provider: s3\n    bucket: my-bucket\n"
            "    options: {endpoint: 'http://127.0.0.1:9000/path@odd', path_style: true}\n"
            "    description: 'owned by data@example.com'\n",
        )
    )
    assert catalog.get("m").options["endpoint"] == "http://127.0.0.1:9000/path@odd"


def test_dump_catalog_writes_shared_values_out_so_the_loader_accepts_them(tmp_path: Path) -> None:
    auth = {"mode": "keys", "access_key_id_env": "K", "secret_access_key_env": "S"}
    entries = [{"name": n, "provider": "s3", "bucket": "my-bucket", "auth": auth} for n in ("a", "b")]
    path = tmp_path / "connections.yaml"
    path.write_text(dump_catalog(entries))
    assert "*" not in path.read_text() and sorted(load_catalog(path).connections) == ["a", "b"]


def test_cors_origin_is_an_origin_without_a_path(tmp_path: Path) -> None:
    entry = "connections:\n  - name: web\n    provider: local\n    root: .\n    cors_origin: {}\n"
    catalog = load_catalog(write(tmp_path, entry.format("HTTPS://App.CVAT.ai")))
    assert catalog.get("web").cors_origin == "https://app.cvat.ai"  # as the browser sends it
    assert load_catalog(write(tmp_path, entry.format("http://localhost:8080"))).get("web").cors_origin
    for bad, words in (
        ("https://app.cvat.ai/tasks", "without a path"),
        ("app.cvat.ai", "must start with https://"),
        ("https://user@app.cvat.ai", "user name or password"),  # the catalog's inline-secret guard speaks first
    ):
        message = error_of(tmp_path, entry.format(bad))
        assert "connection 'web'" in message and "field 'cors_origin'" in message and words in message, message


def test_catalog_names_reads_the_names_alone_with_the_loaders_refusals(tmp_path: Path) -> None:
    """What `bucket-sync status` asks: which names the catalog holds. An entry with a mistake elsewhere is still in
    it; a file that is not a catalog (or uses an alias) is refused as load_catalog refuses it."""
    path = write(tmp_path, "connections:\n  - {name: a, provider: local, root: x}\n  - {name: b, provider: nope}\n")
    assert catalog_names(path) == {"a", "b"}
    with pytest.raises(CatalogError, match="YAML alias"):
        catalog_names(write(tmp_path, "x: &x 1\nconnections:\n  - {name: *x}\n"))
    with pytest.raises(CatalogError, match="malformed YAML"):
        catalog_names(write(tmp_path, "connections: ["))
