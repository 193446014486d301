"""What an unchanged re-sync costs, end to end, against what it cannot avoid: listing the bucket.

One run of this script, repeatable (fresh temporary folders, fixed object bytes):

1. `--local-n` objects (default 20,000) in a folder bucket (local provider): a first sync, then unchanged re-syncs.
   Prints the `media_probes` step time (target at most 0.3 s at 20,000) and every step's time of the re-sync.
2. `--moto-n` objects (default 2,000) in an S3 emulator (moto): a first sync (through the recording proxy of the test
   suite, so its requests are counted at the wire), then unchanged re-syncs straight to moto, each beside a plain
   boto3 listing of the same bucket (list_objects_v2, paginated; the reference, since Label Studio, whose warm-server
   list-only re-sync of 2,000 objects took 0.8 s, cannot be installed here). Target: the run (RUN_START to
   RUN_SUCCESS in its event log) takes less wall time than the listing. Prints the ratio and where the run's time
   goes: inside our step functions, Dagster's work inside the steps, and Dagster's work between them.
3. `bucket-sync sync NAME` as a subprocess on the moto connection, unchanged: wall and CPU seconds (target: at most
   2 s on an idle machine), beside the CPU seconds of importing the code location in a fresh interpreter.

Wall times come from the run's own event log (the timestamps Dagster stored), CPU seconds from this process's clock
read as each event reaches the instance (DuckDB's threads included); both are medians over `--rounds` re-syncs. The
machine this runs on may be shared, and then only the CPU seconds compare from one run to the next. The objects are
one small JPEG made once with Pillow and varied per object by a JPEG comment: no image is encoded per object.

    python benchmarks/resync.py                      # both parts and the CLI
    python benchmarks/resync.py --local-n 2000 --moto-n 500 --rounds 1
    python benchmarks/resync.py --profile /tmp/resync.prof   # cProfile of one unchanged re-sync of the moto bucket
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import yaml  # noqa: E402
from dagster import DagsterEventType, DagsterInstance  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.instance import local_instance  # noqa: E402
from pipelines.runner import run_sync  # noqa: E402
from tests.proxy import FaultProxy  # noqa: E402
from tests.servers import start_moto  # noqa: E402

BUCKET = "resync"
KEY, SECRET = "bench-key", "bench-secret"


def base_jpeg() -> bytes:
    """One small real JPEG (Pillow), the body every object shares."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 140, 200)).save(out, "JPEG", quality=80)
    return out.getvalue()


def varied(base: bytes, i: int) -> bytes:
    """`base` with a JPEG comment segment naming object `i`: a distinct object that probes the same way."""
    comment = f"bucket-sync benchmark object {i}".encode()
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + base[2:]


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def child_cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


@contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (Dagster's console log) to a file, so its volume can be counted, not shown."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class EventClock:
    """This process's CPU seconds at each event of a run, taken as Dagster hands the event to the instance.

    Wall times on a shared machine measure the other tenants as much as this code; the CPU seconds between two events
    of an in-process run (DuckDB's threads included) do not.
    """

    def __init__(self, instance: DagsterInstance) -> None:
        self.marks: list[tuple[DagsterEventType, str | None, float]] = []
        original = instance.handle_new_event

        def handle(event: Any, **kwargs: Any) -> None:
            if event.dagster_event is not None:
                self.marks.append((event.dagster_event.event_type, event.dagster_event.step_key, cpu_seconds()))
            original(event, **kwargs)

        instance.handle_new_event = handle  # type: ignore[method-assign]

    def spans(self) -> tuple[float, dict[str, float]]:
        """(CPU seconds from RUN_START to RUN_SUCCESS, CPU seconds of each step from STEP_START to STEP_SUCCESS)."""
        start: dict[str | None, float] = {}
        steps: dict[str, float] = {}
        run = 0.0
        for kind, step, cpu in self.marks:
            if kind in (DagsterEventType.RUN_START, DagsterEventType.STEP_START):
                start[step if kind == DagsterEventType.STEP_START else None] = cpu
            elif kind == DagsterEventType.STEP_SUCCESS and step in start:
                steps[step] = cpu - start[step]
            elif kind == DagsterEventType.RUN_SUCCESS and None in start:
                run = cpu - start[None]
        return run, steps


@dataclass
class RunTimes:
    """Times of one run, from its event log (wall) and from the event clock (CPU)."""

    run_s: float
    steps: dict[str, float]
    inside: dict[str, float]  # STEP_START to the step's first output or check result: our function, mostly
    cpu_s: float
    wall_s: float
    log_lines: int = 0
    events: int = 0
    run_cpu_s: float = 0.0
    step_cpu: dict[str, float] = field(default_factory=dict)


def run_times(instance: DagsterInstance, run_id: str) -> tuple[float, dict[str, float], dict[str, float], int]:
    records = instance.all_logs(run_id)
    start: dict[str, float] = {}
    first_out: dict[str, float] = {}
    steps: dict[str, float] = {}
    run_start = run_end = 0.0
    outputs = {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_CHECK_EVALUATION,
        DagsterEventType.STEP_OUTPUT,
    }
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        kind, step = event.event_type, event.step_key
        if kind == DagsterEventType.RUN_START:
            run_start = record.timestamp
        elif kind == DagsterEventType.RUN_SUCCESS:
            run_end = record.timestamp
        elif kind == DagsterEventType.STEP_START and step:
            start[step] = record.timestamp
        elif kind in outputs and step and step not in first_out:
            first_out[step] = record.timestamp
        elif kind == DagsterEventType.STEP_SUCCESS and step:
            steps[step] = record.timestamp - start[step]
    inside = {s: first_out[s] - start[s] for s in steps if s in first_out}
    return run_end - run_start, steps, inside, len(records)


def sync_once(name: str, instance: DagsterInstance, log: Path) -> RunTimes:
    clock = getattr(instance, "_bench_clock", None) or EventClock(instance)
    instance._bench_clock = clock  # type: ignore[attr-defined]
    clock.marks.clear()
    before = log.read_bytes().count(b"\n") if log.exists() else 0
    cpu, wall = cpu_seconds(), time.perf_counter()
    with stderr_to(log):
        outcome = run_sync(name, instance, log_level="INFO")
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    assert outcome.ok, outcome.failures
    run_s, steps, inside, events = run_times(instance, outcome.result.run_id)
    lines = log.read_bytes().count(b"\n") - before
    run_cpu, step_cpu = clock.spans()
    return RunTimes(run_s, steps, inside, cpu, wall, lines, events, run_cpu, step_cpu)


def last_sync_counts(name: str) -> dict[str, int]:
    from resources.index_resource import MediaIndex

    with MediaIndex().connect(read_only=True) as con:
        cur = con.execute(
            "SELECT listed, unchanged, probed, carried, requests FROM syncs WHERE connection = $c "
            "ORDER BY finished_at DESC LIMIT 1",
            {"c": name},
        )
        cols = [d[0] for d in cur.description]
        return dict(zip(cols, cur.fetchone(), strict=True))


def median_times(runs: list[RunTimes]) -> RunTimes:
    steps: dict[str, list[float]] = defaultdict(list)
    inside: dict[str, list[float]] = defaultdict(list)
    step_cpu: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        for k, v in r.steps.items():
            steps[k].append(v)
        for k, v in r.inside.items():
            inside[k].append(v)
        for k, v in r.step_cpu.items():
            step_cpu[k].append(v)
    return RunTimes(
        run_s=statistics.median(r.run_s for r in runs),
        steps={k: statistics.median(v) for k, v in steps.items()},
        inside={k: statistics.median(v) for k, v in inside.items()},
        cpu_s=statistics.median(r.cpu_s for r in runs),
        wall_s=statistics.median(r.wall_s for r in runs),
        log_lines=runs[-1].log_lines,
        events=runs[-1].events,
        run_cpu_s=statistics.median(r.run_cpu_s for r in runs),
        step_cpu={k: statistics.median(v) for k, v in step_cpu.items()},
    )


def print_steps(times: RunTimes) -> None:
    for step, seconds in sorted(times.steps.items(), key=lambda kv: -kv[1]):
        inside = times.inside.get(step)
        detail = f", {inside:.3f}s to its first output" if inside is not None else ""
        cpu = times.step_cpu.get(step, 0.0)
        print(f"      {step:<32} {seconds:6.3f}s wall, {cpu:6.3f} CPU s{detail}")


def write_catalog(work: Path, entries: list[dict[str, Any]]) -> None:
    (work / "catalog.yaml").write_text(yaml.safe_dump({"connections": entries}))
    os.environ["BUCKET_SYNC_CATALOG"] = str(work / "catalog.yaml")


def local_part(work: Path, n: int, rounds: int, base: bytes, entries: list[dict[str, Any]]) -> None:
    root = work / "local-bucket" / "set"
    root.mkdir(parents=True)
    started = time.perf_counter()
    for i in range(n):
        (root / f"{i:06d}.jpg").write_bytes(varied(base, i))
    print(f"local: {n:,} objects of ~{len(base) + 40} bytes written in {time.perf_counter() - started:.1f}s")
    entries.append({"name": "local-bench", "provider": "local", "root": str(work / "local-bucket")})
    write_catalog(work, entries)
    instance = local_instance()
    log = work / "dagster-console.log"
    first = sync_once("local-bench", instance, log)
    print(f"  first sync        : run {first.run_s:6.2f}s, media_probes {first.steps['media_probes']:.2f}s")
    again = [sync_once("local-bench", instance, log) for _ in range(rounds)]
    counts = last_sync_counts("local-bench")
    assert counts["probed"] == 0 and counts["carried"] == n, counts
    times = median_times(again)
    probes, probes_cpu = times.steps["media_probes"], times.step_cpu.get("media_probes", 0.0)
    verdict = "met" if probes <= 0.3 else "MISSED"
    print(
        f"  unchanged re-sync : media_probes {probes:.3f}s wall, {probes_cpu:.3f} CPU s at {n:,} objects "
        f"(target <= 0.3 s: {verdict}); run {times.run_s:.2f}s wall, {times.run_cpu_s:.2f} CPU s "
        f"(median of {rounds})"
    )
    print("    steps of the unchanged re-sync:")
    print_steps(times)


def boto3_listing(endpoint: str, client: Any | None = None) -> tuple[float, float, int]:
    """(wall s, CPU s, keys) of a paginated list_objects_v2 of the whole bucket; a new client when none is given."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    if client is None:
        client = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name="us-east-1"
        )
    keys = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += len(page.get("Contents", []))
    return time.perf_counter() - wall, cpu_seconds() - cpu, keys


def moto_part(
    work: Path, server: Any, n: int, rounds: int, base: bytes, entries: list[dict[str, Any]], profile: Path | None
) -> None:
    admin = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    admin.create_bucket(Bucket=BUCKET)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as uploads:
        for _ in uploads.map(
            lambda i: admin.put_object(Bucket=BUCKET, Key=f"set/{i:06d}.jpg", Body=varied(base, i)), range(n)
        ):
            pass
    print(f"moto: {n:,} objects uploaded in {time.perf_counter() - started:.1f}s")
    os.environ.update(BENCH_KEY=KEY, BENCH_SECRET=SECRET)
    auth = {"mode": "keys", "access_key_id_env": "BENCH_KEY", "secret_access_key_env": "BENCH_SECRET"}
    instance = local_instance()
    log = work / "dagster-console.log"
    with FaultProxy(server.endpoint, provider="s3") as proxy:
        via_proxy = {"endpoint": proxy.endpoint, "path_style": True, "region": "us-east-1"}
        write_catalog(work, [*entries, {"name": "moto-bench", "provider": "s3", "bucket": BUCKET,
                                        "options": via_proxy, "auth": auth}])  # fmt: skip
        first = sync_once("moto-bench", instance, log)
        reads = len(proxy.object_reads())
        proxy.clear()
        sync_once("moto-bench", instance, log)
        print(
            f"  first sync        : run {first.run_s:6.2f}s, {reads} object reads; unchanged re-sync: "
            f"{len(proxy.listings())} list requests, {len(proxy.object_reads())} object reads"
        )
    direct = {"endpoint": server.endpoint, "path_style": True, "region": "us-east-1"}
    entry = {"name": "moto-bench", "provider": "s3", "bucket": BUCKET, "options": direct, "auth": auth}
    write_catalog(work, [*entries, entry])
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    boto3_listing(server.endpoint, client)  # warm the client, as a warm server's would be
    runs, warm, cold = [], [], []
    for _ in range(rounds):
        warm.append(boto3_listing(server.endpoint, client))
        cold.append(boto3_listing(server.endpoint))
        runs.append(sync_once("moto-bench", instance, log))
    assert all(w[2] == n for w in warm), warm
    counts = last_sync_counts("moto-bench")
    assert counts["probed"] == 0 and counts["carried"] == n, counts
    times = median_times(runs)
    listing_s = statistics.median(w[0] for w in warm)
    listing_cpu = statistics.median(w[1] for w in warm)
    cold_s = statistics.median(c[0] for c in cold)
    verdict = "met" if times.run_s < listing_s else "MISSED"
    print(
        f"  unchanged re-sync : run (RUN_START to RUN_SUCCESS) {times.run_s:.3f}s wall, {times.run_cpu_s:.3f} CPU s "
        f"vs boto3 listing {listing_s:.3f}s wall, {listing_cpu:.3f} CPU s ({cold_s:.3f}s with a new client): "
        f"ratio {times.run_s / listing_s:.2f} wall, {times.run_cpu_s / listing_cpu:.2f} CPU "
        f"(target < 1: {verdict}; median of {rounds})"
    )
    steps_total, steps_cpu = sum(times.steps.values()), sum(times.step_cpu.values())
    inside_total = sum(times.inside.values())
    print(
        f"    where the run goes: {steps_total:.3f}s wall, {steps_cpu:.3f} CPU s in {len(times.steps)} steps (of "
        f"which {inside_total:.3f}s wall from each step's start to its first output: our functions, mostly), "
        f"{times.run_s - steps_total:.3f}s wall, {times.run_cpu_s - steps_cpu:.3f} CPU s between steps (Dagster's "
        f"orchestration); {times.events} events in the log, {times.log_lines} console lines at INFO; the whole "
        f"run_sync call {times.wall_s:.3f}s wall, {times.cpu_s:.3f} CPU s"
    )
    print_steps(times)
    if profile is not None:
        profiler = cProfile.Profile()
        with stderr_to(log):
            profiler.runcall(run_sync, "moto-bench", instance, log_level="INFO")
        profiler.dump_stats(str(profile))
        print(f"  cProfile of one unchanged re-sync written to {profile}")


def cli_part(rounds: int, name: str, n: int) -> None:
    """`bucket-sync sync NAME` as a person runs it, on an unchanged connection, in a fresh interpreter each time."""
    exe = Path(sys.executable).with_name("bucket-sync")
    env = dict(os.environ)  # not a terminal: the live view prints lines, not a bar

    def timed(argv: list[str]) -> tuple[float, float]:
        cpu, wall = child_cpu_seconds(), time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return time.perf_counter() - wall, child_cpu_seconds() - cpu

    syncs, imports = [], []
    for _ in range(rounds):
        syncs.append(timed([str(exe), "sync", name]))
        imports.append(timed([sys.executable, "-c", "import pipelines.definitions"]))
    wall, cpu = statistics.median(s[0] for s in syncs), statistics.median(s[1] for s in syncs)
    import_wall, import_cpu = statistics.median(i[0] for i in imports), statistics.median(i[1] for i in imports)
    verdict = "met" if wall <= 2.0 else "MISSED"
    print(
        f"cli: `bucket-sync sync {name}` (unchanged, {n:,} objects) {wall:.2f}s wall, {cpu:.2f} CPU s "
        f"(target <= 2 s on an idle machine: {verdict}); `import pipelines.definitions` alone {import_wall:.2f}s "
        f"wall, {import_cpu:.2f} CPU s; so the sync itself {cpu - import_cpu:.2f} CPU s (median of {rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local-n", type=int, default=20_000, help="objects in the folder bucket (0: skip)")
    parser.add_argument("--moto-n", type=int, default=2_000, help="objects in the S3 emulator (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="unchanged re-syncs measured per part (median)")
    parser.add_argument("--no-cli", action="store_true", help="skip the `bucket-sync sync` subprocess figure")
    parser.add_argument("--profile", type=Path, help="write a cProfile of one unchanged moto re-sync here")
    args = parser.parse_args()
    base = base_jpeg()
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at start (wall times are noisy when it is high)")
    with tempfile.TemporaryDirectory(prefix="bucket-sync-resync-") as tmp:
        work = Path(tmp)
        os.environ.update(
            BUCKET_SYNC_HOME=str(work / "home"), DAGSTER_HOME=str(work / "dagster"), BENCH_KEY=KEY, BENCH_SECRET=SECRET
        )
        os.environ.pop("BUCKET_SYNC_STATE", None)
        os.environ.pop("BUCKET_SYNC_INDEX", None)
        entries: list[dict[str, Any]] = []
        if args.local_n:
            local_part(work, args.local_n, args.rounds, base, entries)
        server = start_moto(work) if args.moto_n else None
        try:
            if server is not None:
                moto_part(work, server, args.moto_n, args.rounds, base, entries, args.profile)
            if not args.no_cli:
                cli_part(args.rounds, *(("moto-bench", args.moto_n) if args.moto_n else ("local-bench", args.local_n)))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
