"""Requests per object and the probe step's rate against raw ranged GETs, on fake-gcs-server and on moto.

N camera-like JPEGs (1600x1200, EXIF with maker notes making 20-60 KB before the frame header) sit in each emulator.
One run prints, per provider:

- raw: obstore ranged GETs of every object's first 64 KiB (media.ranges.FIRST_READ), through the connection's own
  obstore store, with the probe's concurrency: objects/s, the reference. Beside it, for the choice of the first read
  size, the rate of a 16 KiB GET alone and of a 16 KiB GET followed by the second GET these headers then need.
- the sync's media_probes step with the end check off (profile cvat) and on (profile strict): objects/s from the
  step's wall time in the Dagster event log, as a ratio to the raw rate measured just before and after it (targets:
  >= 0.85x with the check off, a wall time per object within 1.2x the raw one with it on); `--rounds` times, medians.
- requests per object, counted at the wire by the recording proxy (tests/proxy.py) on a second pair of syncs routed
  through it (targets <= 1.05 off, <= 2.05 on), beside what the facts' `requests` column says and the bytes the proxy
  saw leave the server. The timed syncs do not go through the proxy: its Python relay would be what is measured.

Every figure is a ratio to a reference measured in the same run, because wall time on a shared machine is noisy.
Run with `python benchmarks/probe_requests.py --n 2000`. On loopback the emulators' own CPU is the ceiling, so a
second request per object costs as much as the first; `--rtt-ms 250` delays every GET (raw and probe alike) as a
cloud round trip would, to show the latency-bound regime a real store is in.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import obstore  # noqa: E402
import yaml  # noqa: E402
from dagster import DagsterInstance, instance_for_test  # noqa: E402

from benchmarks.emulators import BUCKET, fill_parallel, gcs_entry, s3_entry, start_gcs_bucket, start_s3_bucket  # noqa: E402
from benchmarks.probe_throughput import step_seconds  # noqa: E402
from demo import synth  # noqa: E402
from media.ranges import FIRST_READ  # noqa: E402
from pipelines.runner import run_sync  # noqa: E402
from resources.catalog import load_catalog  # noqa: E402
from resources.index_resource import MediaIndex  # noqa: E402
from resources.providers import open_bucket, probe_concurrency  # noqa: E402
from tests.proxy import FaultProxy, route_through  # noqa: E402
from tests.servers import Server  # noqa: E402

KIB = 1024
TARGETS = {"requests_off": 1.05, "requests_on": 2.05, "rate_off": 0.85, "time_on": 1.2}


def camera_jpegs(variants: int) -> list[bytes]:
    """Distinct photos whose EXIF blocks run from 20 KB to 56 KB, as camera maker notes and thumbnails make them."""
    step = 36_000 // max(1, variants - 1)
    return [
        synth.jpeg(1600, 1200, orientation=1 + (i % 2) * 5, exif_extra_bytes=20_000 + step * i, seed=i, quality=90)
        for i in range(variants)
    ]


def keys_for(n: int) -> list[str]:
    return [f"shoot-{i // 100:03d}/IMG_{i:05d}.jpg" for i in range(n)]


def objects(keys: list[str], images: list[bytes]) -> list[tuple[str, bytes]]:
    """Each key with one of the images, cycled."""
    return [(key, images[i % len(images)]) for i, key in enumerate(keys)]


@dataclass
class Provider:
    """One emulator with the bucket filled, and how to write a catalog entry for it."""

    label: str
    server: Server
    entry: Callable[[str, str, str], dict[str, Any]]  # (name, endpoint, profile) -> catalog entry
    proxy_kind: str


def start_gcs(logs: Path, keys: list[str], images: list[bytes]) -> Provider:
    server, bucket = start_gcs_bucket(logs)
    fill_parallel(lambda key, data: bucket.blob(key).upload_from_string(data), objects(keys, images))
    return Provider("fake-gcs-server", server, gcs_entry, "gcs")


def start_s3(logs: Path, keys: list[str], images: list[bytes]) -> Provider:
    server, s3 = start_s3_bucket(logs)
    fill_parallel(lambda key, data: s3.put_object(Bucket=BUCKET, Key=key, Body=data), objects(keys, images))
    return Provider("moto", server, s3_entry, "s3")


def use_catalog(work: Path, entries: list[dict[str, Any]]) -> None:
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"connections": entries}))
    os.environ["BUCKET_SYNC_CATALOG"] = str(catalog)


def raw_rate(entry: dict[str, Any], work: Path, keys: list[str], ranges: list[tuple[int, int]]) -> tuple[float, int]:
    """Objects/s of ranged GETs of `ranges` per key, one after the other, through the connection's obstore store,
    with the probe's concurrency; and that concurrency."""
    use_catalog(work, [entry])
    conn = load_catalog(os.environ["BUCKET_SYNC_CATALOG"]).get(entry["name"])
    store = open_bucket(conn).obstore_store  # type: ignore[attr-defined]
    concurrency = probe_concurrency(conn)

    def get(key: str) -> int:
        return sum(len(bytes(obstore.get(store, key, options={"range": r}).bytes())) for r in ranges)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, keys[: min(len(keys), 4 * concurrency)]))  # warm the connection pool
        started = time.perf_counter()
        got = list(pool.map(get, keys))
        seconds = time.perf_counter() - started
    assert all(n == sum(end - start for start, end in ranges) for n in got)
    return len(keys) / seconds, concurrency


def add_round_trip(seconds: float) -> None:
    """Make every obstore GET in this process wait `seconds` first, as a cloud store's round trip does.

    The emulators answer in a millisecond on loopback, so with 32 requests in flight their own CPU is the ceiling and
    a second request per object costs as much as the first. A real store is latency-bound: this shows that regime,
    for the raw GETs and the probes alike. The figures it prints are a model, labelled as such.
    """
    real_get = obstore.get

    def delayed_get(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return real_get(*args, **kwargs)

    obstore.get = delayed_get  # type: ignore[assignment]


def probe_step(entry: dict[str, Any], work: Path, instance: DagsterInstance) -> float:
    """Seconds the media_probes step of one first sync took, from the run's event log."""
    return probe_step_parts(entry, work, instance)[0]


def probe_step_parts(entry: dict[str, Any], work: Path, instance: DagsterInstance) -> tuple[float, float]:
    """Seconds the media_probes step of one first sync took, and of them the probing loop's (from the step's own
    log lines: "probing N objects" to the 100% progress line); the rest is the step's set-up and wrap-up."""
    use_catalog(work, [entry])
    outcome = run_sync(entry["name"], instance, log_level="ERROR")  # the event log keeps INFO lines all the same
    assert outcome.ok, outcome.failures
    run_id = outcome.result.run_id
    lines = [
        (e.timestamp, e.user_message)
        for e in instance.all_logs(run_id)
        if e.step_key == "media_probes" and not e.dagster_event
    ]
    started = next(t for t, m in lines if " objects (" in m and "probing " in m)
    finished = next(t for t, m in reversed(lines) if "(100%)" in m)
    return step_seconds(instance, run_id, "media_probes"), finished - started


def facts_figures(work: Path, name: str) -> tuple[float, int, int]:
    """Mean requests per object, total bytes read and unreadable objects, from the index's `media` facts."""
    with MediaIndex(url=str(work / "home" / "index.duckdb")).connect(read_only=True) as con:
        mean, read, bad = con.execute(
            "SELECT avg(requests), sum(bytes_read), count(*) FILTER (WHERE error IS NOT NULL) FROM media "
            "WHERE connection = $c",
            {"c": name},
        ).fetchall()[0]
    return float(mean), int(read), int(bad)


def measure(
    provider: Provider, keys: list[str], work: Path, instance: DagsterInstance, rtt_ms: float, rounds: int
) -> dict[str, Any]:
    n, label, endpoint = len(keys), provider.label, provider.server.endpoint
    tag = provider.proxy_kind
    raw_entry = provider.entry(f"{tag}-raw", endpoint, "cvat")
    raw16, concurrency = raw_rate(raw_entry, work, keys, [(0, 16 * KIB)])
    # What a 16 KiB first read costs these photos: their headers run to 20-56 KB, so a second, sequential GET.
    raw16_grow, _ = raw_rate(raw_entry, work, keys, [(0, 16 * KIB), (16 * KIB, FIRST_READ)])

    # Rounds of raw, check off, raw, check on, raw: each probe step's ratio uses the raw rates measured just before
    # and just after it, so a change of load on the machine (other work shares its two cores) does not skew it; the
    # medians over rounds are kept.
    raws = [raw_rate(raw_entry, work, keys, [(0, FIRST_READ)])[0]]
    steps: list[tuple[float, float]] = []
    rate_off: list[float] = []
    time_on: list[float] = []
    loops: list[float] = []
    for r in range(rounds):
        step_off, loop_off = probe_step_parts(provider.entry(f"{tag}-off-{r}", endpoint, "cvat"), work, instance)
        loops.append(loop_off)
        raws.append(raw_rate(raw_entry, work, keys, [(0, FIRST_READ)])[0])
        rate_off.append((n / step_off) / statistics.mean(raws[-2:]))
        step_on = probe_step(provider.entry(f"{tag}-on-{r}", endpoint, "strict"), work, instance)
        raws.append(raw_rate(raw_entry, work, keys, [(0, FIRST_READ)])[0])
        time_on.append((step_on / n) * statistics.mean(raws[-2:]))
        steps.append((step_off, step_on))

    wire: dict[str, tuple[float, int]] = {}
    with FaultProxy(endpoint, provider=provider.proxy_kind) as proxy:  # type: ignore[arg-type]
        for check, profile in (("off", "cvat"), ("on", "strict")):
            name = f"{tag}-wire-{check}"
            proxy.clear()
            probe_step(route_through(provider.entry(name, endpoint, profile), proxy), work, instance)
            reads = proxy.object_reads()
            wire[check] = (len(reads) / n, sum(r.bytes_out for r in reads))
    facts = {check: facts_figures(work, f"{tag}-wire-{check}") for check in ("off", "on")}

    raw = statistics.median(raws)
    figures = {
        "provider": label,
        "n": n,
        "concurrency": concurrency,
        "rounds": rounds,
        "raw_16k_per_s": raw16,
        "raw_16k_then_grow_per_s": raw16_grow,
        "raw_64k_per_s": raw,
        "raw_64k_each": raws,
        "step_off_per_s": statistics.median(n / off for off, _ in steps),
        "step_on_per_s": statistics.median(n / on for _, on in steps),
        "rate_off_ratio": statistics.median(rate_off),
        "rate_off_each": rate_off,
        "loop_off_per_s": statistics.median(n / loop for loop in loops),
        "overhead_off_s": statistics.median(off - loop for (off, _), loop in zip(steps, loops, strict=True)),
        "time_on_ratio": statistics.median(time_on),
        "time_on_each": time_on,
        "requests_off_wire": wire["off"][0],
        "requests_on_wire": wire["on"][0],
        "requests_off_facts": facts["off"][0],
        "requests_on_facts": facts["on"][0],
        "bytes_per_object_wire": {check: wire[check][1] / n for check in wire},
        "bytes_per_object_facts": {check: facts[check][1] / n for check in facts},
        "unreadable": {check: facts[check][2] for check in facts},
        "rtt_ms": rtt_ms,
    }
    report(figures)
    return figures


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def report(f: dict[str, Any]) -> None:
    n, label = f["n"], f["provider"]
    rtt = f" (each GET delayed {f['rtt_ms']:.0f} ms: a model of a cloud round trip)" if f["rtt_ms"] else ""
    print(f"\n{label}: {n} objects, concurrency {f['concurrency']}, {f['rounds']} round(s){rtt}")
    raw = f["raw_64k_per_s"]
    each = ", ".join(f"{r:.1f}" for r in f["raw_64k_each"])
    print(
        f"  raw ranged GET      : 64 KiB {raw:7.1f} obj/s (median; each, in order: {each}) | 16 KiB "
        f"{f['raw_16k_per_s']:7.1f} obj/s | 16 KiB then the rest of a 64 KiB header {f['raw_16k_then_grow_per_s']:7.1f}"
        f" obj/s (one 64 KiB GET is {raw / f['raw_16k_then_grow_per_s']:.2f}x as fast)"
    )
    rounds = ", ".join(f"{r:.2f}" for r in f["rate_off_each"])
    print(
        f"  probe step, check off (cvat)  : {f['step_off_per_s']:7.1f} obj/s = {f['rate_off_ratio']:.2f}x raw "
        f"(rounds: {rounds}; target >= {TARGETS['rate_off']}: {verdict(f['rate_off_ratio'] >= TARGETS['rate_off'])})"
    )
    print(
        f"    of which the probing loop   : {f['loop_off_per_s']:7.1f} obj/s = {f['loop_off_per_s'] / raw:.2f}x raw; "
        f"the step's set-up and wrap-up (plan, Parquet, Dagster events) {f['overhead_off_s']:.2f}s"
    )
    rounds = ", ".join(f"{r:.2f}" for r in f["time_on_each"])
    print(
        f"  probe step, check on (strict) : {f['step_on_per_s']:7.1f} obj/s; time per object {f['time_on_ratio']:.2f}x "
        f"raw (rounds: {rounds}; target <= {TARGETS['time_on']}: {verdict(f['time_on_ratio'] <= TARGETS['time_on'])})"
    )
    on_rate = f["step_on_per_s"] * f["requests_on_facts"]
    bound = on_rate >= 0.85 * raw and f["step_on_per_s"] <= 0.7 * raw
    print(
        f"  server request rate : raw {raw:7.1f} req/s | check off {f['step_off_per_s'] * f['requests_off_facts']:7.1f}"
        f" req/s | check on {on_rate:7.1f} req/s"
        + (" (the check-on step sends requests as fast as the raw loop: the emulator is the ceiling)" if bound else "")
    )
    for check, target in (("off", TARGETS["requests_off"]), ("on", TARGETS["requests_on"])):
        wire, facts = f[f"requests_{check}_wire"], f[f"requests_{check}_facts"]
        print(
            f"  requests/object, check {check:<3}: {wire:.3f} at the wire (proxy), {facts:.3f} in the facts "
            f"(target <= {target}: {verdict(wire <= target)}) | bytes/object {f['bytes_per_object_wire'][check]:,.0f} "
            f"at the wire, {f['bytes_per_object_facts'][check]:,.0f} in the facts | unreadable {f['unreadable'][check]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="objects per provider")
    parser.add_argument("--variants", type=int, default=8, help="distinct images, cycled")
    parser.add_argument("--providers", default="gcs,s3", help="comma-separated: gcs, s3")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (raw, off, on) per provider; medians kept")
    parser.add_argument(
        "--rtt-ms", type=float, default=0.0, help="delay every GET this long, a model of a cloud round trip (0: none)"
    )
    args = parser.parse_args()
    images = camera_jpegs(args.variants)
    keys = keys_for(args.n)
    print(
        f"{args.n} camera-like JPEGs, 1600x1200, {statistics.mean(map(len, images)):,.0f} bytes on average; "
        f"first read {FIRST_READ // KIB} KiB"
    )
    starters = {"gcs": start_gcs, "s3": start_s3}
    results = []
    with tempfile.TemporaryDirectory(prefix="bucket-sync-probe-requests-") as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        os.environ["BUCKET_SYNC_HOME"] = str(work / "home")
        if args.rtt_ms:
            add_round_trip(args.rtt_ms / 1000)  # uploads and listings go through the SDKs, which it leaves alone
        for which in args.providers.split(","):
            provider = starters[which](logs, keys, images)
            try:
                with instance_for_test() as instance:
                    results.append(measure(provider, keys, work, instance, args.rtt_ms, args.rounds))
            finally:
                provider.server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
