"""Every manifest name is unique and maps back to exactly one key; keys CVAT cannot address stay out, with a reason.

On S3 (moto), because only an object store holds keys such as `a//b.jpg`, `/lead.jpg` and `dots/../up.jpg`.
"""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance

from demo import synth
from media.cvat import split_name
from pipelines.runner import run_sync
from tests.conftest import Workspace
from tests.integration.buckets import S3TestBucket, unique_name
from tests.servers import Server

pytestmark = pytest.mark.integration

CLEAN = ("fine.jpg", "odd/a.JPG", "odd/b.png")
COLLIDING = ("odd/a.jpeg", "odd/a.jpg")  # same name as odd/a.JPG, which sorts first
UNADDRESSABLE = ("a//b.jpg", "/lead.jpg", "dots/../up.jpg", "./here.jpg")


def test_manifest_names_are_unique_faithful_and_addressable(
    workspace: Workspace, dagster_instance: DagsterInstance, moto_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = S3TestBucket(moto_server.endpoint, monkeypatch)
    for i, key in enumerate(CLEAN + COLLIDING + UNADDRESSABLE):
        bucket.put(key, synth.png(10 + i, 10) if key.endswith(".png") else synth.jpeg(10 + i, 10))
    name = unique_name("names")
    workspace.write_catalog(bucket.entry(name, profile="cvat"))
    assert run_sync(name, dagster_instance, log_level="ERROR").ok

    lines = [json.loads(line) for line in workspace.manifest(name).splitlines()[2:]]
    keys = [item["name"] + item["extension"] for item in lines]
    assert sorted(keys) == sorted(CLEAN)  # each name maps back to exactly one listed key
    assert len({item["name"] for item in lines}) == len(lines)
    violations = dict(
        workspace.query(
            "SELECT key, message FROM violations WHERE connection = $c AND rule = 'manifest_name'", {"c": name}
        )
    )
    assert set(violations) == set(COLLIDING + UNADDRESSABLE)
    for key in COLLIDING:
        assert "'odd/a.JPG'" in violations[key]
    assert "'/'" in violations["/lead.jpg"] and "'//'" in violations["a//b.jpg"]
    accepted = dict(workspace.query("SELECT key, accepted FROM objects WHERE connection = $c", {"c": name}))
    assert {k for k, ok in accepted.items() if ok} == set(CLEAN)
    assert split_name("odd/a.JPG") == ("odd/a", ".JPG")
