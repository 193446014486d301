"""What a `bucket-sync` call costs: CPU seconds and peak memory of the child process, against the CLI's targets.

Measured for `bucket-sync --help`, `bucket-sync status` (an index with two synced connections) and a full sync of a
one-object local bucket (`bucket-sync sync one`, a fresh DAGSTER_HOME and BUCKET_SYNC_HOME per repeat, the catalog
written here and named by BUCKET_SYNC_CATALOG). Each figure is the median over `--repeats` children of user + system
CPU seconds and peak RSS, read from os.wait4 (the child and what it waited for, not this process). Wall time is not
reported: on a shared machine it measures the neighbours. Two references measured in the same run show the floors:
`python -c pass` (the interpreter) and `python -c "import dagster"` (Dagster's own import, which the sync cannot
avoid, since it runs the real Dagster job in process so the run shows in the UI).

This process imports nothing but the standard library: a child's peak RSS starts from its parent's at the fork, so a
heavy parent would inflate every figure. The catalog is written as JSON (which is YAML) and the JPEG by a child.

Run with `.venv/bin/python benchmarks/cli_cost.py [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")
CLI = str(BIN / "bucket-sync")


@dataclass(frozen=True)
class Cost:
    cpu_s: float
    rss_mb: float


@dataclass(frozen=True)
class Target:
    cpu_s: float | None = None
    rss_mb: float | None = None

    def verdict(self, cost: Cost) -> str:
        misses = []
        if self.cpu_s is not None and cost.cpu_s > self.cpu_s:
            misses.append("CPU")
        if self.rss_mb is not None and cost.rss_mb > self.rss_mb:
            misses.append("RSS")
        if self.cpu_s is None and self.rss_mb is None:
            return "reference"
        return "meets" if not misses else "misses " + " and ".join(misses)

    def describe(self) -> str:
        parts = []
        if self.cpu_s is not None:
            parts.append(f"<= {self.cpu_s:g} s CPU")
        if self.rss_mb is not None:
            parts.append(f"<= {self.rss_mb:g} MB")
        return ", ".join(parts) or "-"


def child_cost(argv: list[str], env: dict[str, str], cwd: Path) -> Cost:
    """Run `argv` to completion; its own CPU (user + system) and peak RSS, from wait4's rusage of that child."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(argv)} exited {process.returncode}:\n{output}")
    return Cost(cpu_s=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024)  # ru_maxrss is KiB on Linux


def median(costs: list[Cost]) -> Cost:
    return Cost(statistics.median(c.cpu_s for c in costs), statistics.median(c.rss_mb for c in costs))


#: Writes small real JPEGs (Pillow) to the paths it is given, so the probe reads real headers.
WRITE_JPEGS = """
import sys
from PIL import Image
for i, path in enumerate(sys.argv[1:]):
    Image.new("RGB", (64 + i, 48), (40 * i % 256, 90, 160)).save(path, "JPEG", quality=85)
"""


def write_world(work: Path) -> dict[str, str]:
    """Two local buckets (`one`: one JPEG; `two`: two) and the catalog naming them; returns a clean environment
    that points at the catalog."""
    photos = []
    for name, count in (("one", 1), ("two", 2)):
        bucket = work / "buckets" / name
        bucket.mkdir(parents=True)
        photos += [str(bucket / f"photo-{i}.jpg") for i in range(count)]
    subprocess.run([PYTHON, "-c", WRITE_JPEGS, *photos], check=True)
    catalog = work / "connections.yaml"
    entries = [{"name": n, "provider": "local", "root": str(work / "buckets" / n)} for n in ("one", "two")]
    catalog.write_text(json.dumps({"connections": entries}, indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_SYNC_", "DAGSTER_"))}
    env["BUCKET_SYNC_CATALOG"] = str(catalog)
    return env


def homes(env: dict[str, str], folder: Path) -> dict[str, str]:
    """`env` with a DAGSTER_HOME and a BUCKET_SYNC_HOME of their own under `folder`."""
    return {**env, "DAGSTER_HOME": str(folder / "dagster"), "BUCKET_SYNC_HOME": str(folder / "home")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="children per figure; the median is printed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bucket-sync-cli-cost-") as tmp:
        work = Path(tmp)
        env = write_world(work)
        # The index `status` reads: both connections synced once, not measured.
        status_env = homes(env, work / "status")
        for name in ("one", "two"):
            child_cost([CLI, "sync", name, "-q"], status_env, work)

        def fresh_sync(repeat: int) -> Cost:
            return child_cost([CLI, "sync", "one"], homes(env, work / f"sync-{repeat}"), work)

        cases: list[tuple[str, Target, Callable[[int], Cost]]] = [
            ("python -c pass", Target(), lambda _: child_cost([PYTHON, "-c", "pass"], env, work)),
            ('python -c "import dagster"', Target(), lambda _: child_cost([PYTHON, "-c", "import dagster"], env, work)),
            ("bucket-sync --help", Target(cpu_s=0.3), lambda _: child_cost([CLI, "--help"], env, work)),
            ("bucket-sync status", Target(cpu_s=1.0), lambda _: child_cost([CLI, "status"], status_env, work)),
            ("bucket-sync sync one (1 object)", Target(cpu_s=1.5, rss_mb=200), fresh_sync),
        ]
        # Rounds interleave the commands, so a change of load on the machine weighs on all of them alike.
        runs: dict[str, list[Cost]] = {label: [] for label, _, _ in cases}
        for repeat in range(args.repeats):
            for label, _, measure in cases:
                runs[label].append(measure(repeat))
        print(f"median of {args.repeats} children each; CPU = user + system seconds of the child, RSS = its peak")
        print(f"{'command':34} {'CPU s':>7} {'peak MB':>8}  {'target':26} verdict")
        results: dict[str, Cost] = {}
        for label, target, _ in cases:
            cost = results[label] = median(runs[label])
            print(f"{label:34} {cost.cpu_s:7.2f} {cost.rss_mb:8.0f}  {target.describe():26} {target.verdict(cost)}")
        floor = results['python -c "import dagster"'].cpu_s
        sync = results["bucket-sync sync one (1 object)"].cpu_s
        print(
            f"sync = {sync / floor:.2f} x Dagster's import alone ({floor:.2f} s); the sync's CPU beyond that import: "
            f"{sync - floor:.2f} s (instance storage, the run and its event log, the assets)"
        )
        print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
