"""Hostile catalogs through the `bucket-sync` command: a clear error naming the file, line and field, no traceback.

The catalog loader's messages are unit-tested in tests/unit/test_catalog.py; this proves a person running the
command sees them (through the CLI's entry point, in process), with exit code 2, for each case the issue names
(unknown fields are covered in test_cli.py).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import Workspace

pytestmark = pytest.mark.integration

INLINE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("catalog", "expected"),
    [
        pytest.param(
            "connections:\n  - name: a\n    provider: [local\n", ["malformed YAML", "line 4"], id="malformed-yaml"
        ),
        pytest.param(
            "connections:\n  - name: a\n    provider: local\n    root: x\n"
            "  - name: a\n    provider: local\n    root: y\n",
            [":5: connection 'a': duplicate connection name (first defined at line 2)"],
            id="duplicate-names",
        ),
        pytest.param(
            "connections:\n  - name: a\n    provider: s3\n    bucket: my-bucket\n"
            f"    auth: {{mode: keys, access_key_id_env: K, secret_access_key_env: {INLINE_SECRET}}}\n",
            [":2: connection 'a', field 'auth.secret_access_key_env': looks like an inline secret"],
            id="inline-secret",
        ),
        pytest.param(
            "connections:\n  - name: a\n    provider: local\n    root: x\n    prefix: /images\n",
            [":2: connection 'a', field 'prefix'", "starts with '/'"],
            id="leading-slash-prefix",
        ),
    ],
)
def test_hostile_catalog_is_a_located_error(workspace: Workspace, catalog: str, expected: list[str]) -> None:
    workspace.catalog.write_text(catalog)
    # In process (the subprocess path is covered by test_cli.py); a wide terminal so no message is wrapped.
    done = CliRunner().invoke(app, ["preview", "a"], env={"COLUMNS": "300"})
    output = done.stderr + done.stdout
    assert done.exit_code == 2, output
    assert "Traceback" not in output
    assert str(workspace.catalog) in done.stderr, done.stderr
    for fragment in expected:
        assert fragment in done.stderr, done.stderr
    assert INLINE_SECRET not in output
