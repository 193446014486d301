"""Paging through a big folder on the local provider: what each page costs, against one plain walk of the folder.

A sensor pages through a listing (`list_page`, a token per page). The local provider keeps the walk that served a
page and carries on from it, so paging a folder costs about one walk, and the last page costs what the first does.
A token it holds no walk for (a new process, a sensor's next tick) starts a walk after it, reading only the folders
on the token's path: in one flat folder that is the whole folder again, which the last figures show.

All figures are CPU seconds measured in this run, next to a reference from the same run: one `os.scandir` of the
folder, sorted, with a `stat` of every file (what any walk must do). Run with
`python benchmarks/local_paging.py --files 100000 --page 1000`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resources.local_bucket import LocalBucket  # noqa: E402


def cpu(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def reference_walk(folder: Path) -> int:
    """One sorted scandir of the folder with a stat of each file: the floor for listing it."""
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    return sum(1 for entry in entries if entry.stat().st_size >= 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="files in the one folder")
    parser.add_argument("--page", type=int, default=1000, help="keys per page")
    parser.add_argument("--under", help="where the folder is made (default: the system's temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bucket-sync-paging-", dir=args.under) as tmp:
        folder = Path(tmp) / "flat"
        folder.mkdir()
        for i in range(args.files):
            (folder / f"IMG_{i:08d}.jpg").write_bytes(b"\xff\xd8\xff")
        reference = min(cpu(lambda: reference_walk(folder)) for _ in range(3))
        bucket = LocalBucket(connection="paging", root=tmp)
        listing = min(cpu(lambda: sum(b.num_rows for b in bucket.iter_listing("flat/"))) for _ in range(3))

        scans = 0
        real_scandir = os.scandir

        def counting_scandir(path: str) -> object:
            nonlocal scans
            scans += 1
            return real_scandir(path)

        os.scandir = counting_scandir  # type: ignore[assignment]
        try:
            pages: list[float] = []
            tokens: list[str | None] = [None]
            listed = 0
            while True:
                started = time.process_time()
                batch, token = bucket.list_page("flat/", tokens[-1], args.page)
                pages.append(time.process_time() - started)
                listed += batch.num_rows
                if token is None:
                    break
                tokens.append(token)
            kept_scans = scans
            scans = 0
            # A new instance for each page, as after a restart: resumes from the token alone.
            first_resumed = cpu(lambda: LocalBucket(connection="paging", root=tmp).list_page("flat/", tokens[1]))
            last_resumed = cpu(lambda: LocalBucket(connection="paging", root=tmp).list_page("flat/", tokens[-1]))
            resumed_scans = scans
        finally:
            os.scandir = real_scandir  # type: ignore[assignment]
        assert listed == args.files, (listed, args.files)

        total = sum(pages)
        head = sum(pages[1:6]) / 5  # the first page also reads and sorts the folder: compare the pages after it
        tail = sum(pages[-6:-1]) / 5  # the last full pages
        print(f"{args.files:,} files in one folder, pages of {args.page:,}: {len(pages)} pages")
        print(f"  reference (one sorted scandir + stat of every file): {reference:6.3f} CPU s")
        ratio = listing / reference
        print(f"  iter_listing (one full listing):                     {listing:6.3f} CPU s ({ratio:.1f}x)")
        print(
            f"  list_page, every page, one instance:                 {total:6.3f} CPU s ({total / reference:.1f}x"
            f" the reference, {total / listing:.2f}x one listing); {kept_scans} folder read(s)"
        )
        print(f"  first page (reads and sorts the folder):             {pages[0]:6.3f} CPU s")
        print(
            f"  pages 2-6 / last 5 full pages, mean CPU per page:     {head * 1e3:.1f} / {tail * 1e3:.1f} ms"
            f" (last / early: {tail / head:.2f}x)"
        )
        print(
            f"  a token resumed by a new instance (no walk kept):    second page {first_resumed:.3f} CPU s, "
            f"last page {last_resumed:.3f} CPU s; {resumed_scans} folder read(s) for the two"
        )


if __name__ == "__main__":
    main()
