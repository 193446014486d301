"""Run the `bucket-sync` CLI in a fresh interpreter and report the top-level modules it loaded.

The import tests need a fresh process: the test process itself has long since imported Dagster and every SDK.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Runs the CLI in process, as the `bucket-sync` entry point does, then prints the top-level modules it loaded.
SCRIPT = """
import json, sys
from pipelines.cli import main

sys.argv = ["bucket-sync", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print("\\n" + json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, set[str], str]:
    """Exit code, top-level modules loaded, and output of one CLI call in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"]), done.stdout + done.stderr
