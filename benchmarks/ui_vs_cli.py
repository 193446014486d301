"""A demo sync launched the way the UI launches it, against the same sync from `bucket-sync sync demo`.

Starts a real `dagster dev` (webserver, daemon, code server) on a free loopback port with a temporary DAGSTER_HOME
whose dagster.yaml is the one `make ui` writes (pipelines/instance.py), waits for the code location to load (a person
opens the UI before clicking), then alternates, `--rounds` times:

- CLI: `bucket-sync sync demo -q` as a subprocess, timed from spawn to exit (imports included);
- UI: `launchRun` of `sync_connection` for partition `demo` through the webserver's GraphQL API, timed from the
  request to the moment the run is seen in SUCCESS (queue, daemon dequeue, code server, run process, executor).

Round 1 is a first sync of the 14-object demo bucket on both sides (each side has its own BUCKET_SYNC_HOME, so both
do the same work); later rounds are full re-syncs (`--full` / `media_probes.config.full`). Both sides share the
instance, as `make demo` and `make ui` do, and both are measured while the UI is up. Prints each round and the ratio
of the medians. Every process it starts is stopped through its process group. Run with
`python benchmarks/ui_vs_cli.py --rounds 3`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demo.synth import write_demo_dataset  # noqa: E402
from resources.catalog import dump_catalog  # noqa: E402
from tests.dagster_ui import start_dagster_dev  # noqa: E402
from tests.servers import VENV_BIN  # noqa: E402

FULL = {"ops": {"media_probes": {"config": {"full": True}}}}


def cli_sync(env: dict[str, str], full: bool) -> float:
    argv = [str(VENV_BIN / "bucket-sync"), "sync", "demo", "-q", *(["--full"] if full else [])]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bucket-sync sync demo failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="CLI/UI pairs; the first is a first sync")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one UI-launched run")
    parser.add_argument(
        "--executor", default="in_process", help="BUCKET_SYNC_EXECUTOR for the UI's runs (the CLI runs in process)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bucket-sync-ui-vs-cli-") as tmp:
        work = Path(tmp)
        write_demo_dataset(work / "demo-bucket")
        catalog = work / "connections.yaml"
        catalog.write_text(dump_catalog([{"name": "demo", "provider": "local", "root": str(work / "demo-bucket")}]))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_SYNC_", "DAGSTER_"))}
        base.update(DAGSTER_HOME=str(work / "dagster-home"), BUCKET_SYNC_CATALOG=str(catalog))
        ui_env = {**base, "BUCKET_SYNC_HOME": str(work / "ui-home"), "BUCKET_SYNC_EXECUTOR": args.executor}
        cli_env = {**base, "BUCKET_SYNC_HOME": str(work / "cli-home")}
        # The instance `make ui` prepares: dagster.yaml from pipelines/instance.py, duckdb_index limit 1.
        prepare = [sys.executable, "-m", "pipelines.instance"]
        subprocess.run(prepare, env=base, cwd=REPO, check=True, capture_output=True)

        started = time.perf_counter()
        ui = start_dagster_dev(work, ui_env)
        print(f"dagster dev up with the code location loaded in {time.perf_counter() - started:.1f}s", flush=True)
        try:
            ui.add_partition("demo")
            rows: list[tuple[int, float, float, float, float]] = []
            for round_no in range(1, args.rounds + 1):
                full = round_no > 1
                cli_s = cli_sync(cli_env, full)
                launched = time.perf_counter()
                run_id = ui.launch_run("sync_connection", "demo", run_config=FULL if full else None)
                status = ui.wait_run(run_id, args.timeout)
                ui_s = time.perf_counter() - launched
                if status != "SUCCESS":
                    raise SystemExit(f"the UI-launched run {run_id} ended {status}:\n{ui.run_log(run_id)[-3000:]}")
                times = ui.run_times(run_id)
                queued_s = times["startTime"] - times["creationTime"]
                running_s = times["endTime"] - times["startTime"]
                rows.append((round_no, cli_s, ui_s, queued_s, running_s))
                kind = "full re-sync" if full else "first sync"
                print(
                    f"round {round_no} ({kind}): CLI {cli_s:.1f}s, UI {ui_s:.1f}s "
                    f"(queued+launching {queued_s:.1f}s, run process {running_s:.1f}s), ratio {ui_s / cli_s:.2f}",
                    flush=True,
                )
        finally:
            ui.stop()

    cli_median = statistics.median(r[1] for r in rows)
    ui_median = statistics.median(r[2] for r in rows)
    load = os.getloadavg()[0]
    print(f"median CLI {cli_median:.1f}s, median UI {ui_median:.1f}s, UI/CLI {ui_median / cli_median:.2f}")
    print(f"(UI executor: {args.executor}; 1-minute load average at the end {load:.1f})")


if __name__ == "__main__":
    main()
