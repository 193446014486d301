"""CVAT's rules for a manifest file, as its own loader applies them, so every manifest the suite writes is held to them.

Written from CVAT's `utils/dataset_manifest/core.py` (read, not copied): a manifest is JSON lines; the first line is
`{"version": "1.0" | "1.1"}`, the second `{"type": "images" | "video"}`; a video manifest has a third header line,
`{"properties": {"name": str, "resolution": list, "length": int > 0}}`. CVAT refuses a manifest whose first item is
missing, so one without items is refused. Every image item needs `name` and `extension` (strings); `width` and
`height` (integers) are required for 2D images, which is what bucket-sync lists. Every video item needs `number` and
`pts` (integers), key frames in increasing `number`. On top of what CVAT checks line by line, what its lookups assume:
`name` + `extension` is unique, `extension` is empty or starts with a dot, and no name is absolute or climbs out of
the manifest's folder.

`ManifestLedger` is the session-wide record: `check_store` validates every published manifest in a state store (the
`workspace` fixture calls it for each test's store as the test ends), `check` one manifest from anywhere else (a
bucket), and the count is printed at the end of the session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from resources.state import StateStore

VERSIONS = ("1.0", "1.1")


class ManifestRuleError(AssertionError):
    """A manifest CVAT would refuse, or mis-read; the message names the file, the line and the rule."""


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def problems(text: str) -> list[str]:
    """Every way `text` breaks CVAT's manifest rules, each as "line N: what"; empty when CVAT accepts it."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return ["the file is empty"]
    found: list[str] = []
    parsed: list[Any] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            found.append(f"line {n}: blank line")
            parsed.append(None)
            continue
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            found.append(f"line {n}: not JSON ({exc.msg})")
            parsed.append(None)
    if found:
        return found
    if not all(isinstance(item, dict) for item in parsed):
        return [f"line {n}: not a JSON object" for n, item in enumerate(parsed, 1) if not isinstance(item, dict)]
    version = parsed[0]
    if set(version) != {"version"} or version["version"] not in VERSIONS:
        found.append(f'line 1: expected {{"version": one of {VERSIONS}}}, got {version}')
    kind = parsed[1].get("type") if len(parsed) > 1 else None
    if len(parsed) < 2 or set(parsed[1]) != {"type"} or kind not in ("images", "video"):
        found.append(f'line 2: expected {{"type": "images" or "video"}}, got {parsed[1] if len(parsed) > 1 else None}')
        return found
    header = 3 if kind == "video" else 2
    if kind == "video":
        found += _video_properties(parsed[2] if len(parsed) > 2 else None)
    items = parsed[header:]
    if not items:
        found.append(f"no items after the {header} header lines: CVAT refuses a manifest without items")
    check = _image_item if kind == "images" else _video_item
    seen: dict[str, int] = {}
    last_number = -1
    for n, item in enumerate(items, header + 1):
        found += [f"line {n}: {p}" for p in check(item)]
        if kind == "images" and isinstance(item.get("name"), str) and isinstance(item.get("extension"), str):
            full = item["name"] + item["extension"]
            if full in seen:
                found.append(f"line {n}: {full!r} is listed twice (first at line {seen[full]})")
            seen.setdefault(full, n)
        if kind == "video" and _int(item.get("number")):
            if item["number"] <= last_number:
                found.append(f"line {n}: frame numbers must increase ({item['number']} after {last_number})")
            last_number = item["number"]
    return found


def _video_properties(line: Any) -> list[str]:
    if not isinstance(line, dict) or set(line) != {"properties"} or not isinstance(line["properties"], dict):
        return [f'line 3: expected {{"properties": {{...}}}}, got {line}']
    props, found = line["properties"], []
    if not isinstance(props.get("name"), str):
        found.append("line 3: properties.name must be a string")
    resolution = props.get("resolution")
    if not (isinstance(resolution, list) and len(resolution) == 2 and all(_int(v) and v > 0 for v in resolution)):
        found.append(f"line 3: properties.resolution must be [width, height], got {resolution!r}")
    if not (_int(props.get("length")) and props["length"] > 0):
        found.append(f"line 3: properties.length must be a positive integer, got {props.get('length')!r}")
    return found


def _image_item(item: dict[str, Any]) -> list[str]:
    found = []
    name, extension = item.get("name"), item.get("extension")
    if not isinstance(name, str) or not name:
        found.append(f"'name' must be a non-empty string, got {name!r}")
    elif name.startswith("/") or ".." in name.split("/"):
        found.append(f"'name' {name!r} leaves the manifest's folder")
    if not isinstance(extension, str) or (extension and not extension.startswith(".")):
        found.append(f"'extension' must be '' or start with '.', got {extension!r}")
    for side in ("width", "height"):
        if not (_int(item.get(side)) and item[side] > 0):
            found.append(f"'{side}' must be a positive integer, got {item.get(side)!r}")
    return found


def _video_item(item: dict[str, Any]) -> list[str]:
    found = []
    if not (_int(item.get("number")) and item["number"] >= 0):
        found.append(f"'number' must be a non-negative integer, got {item.get('number')!r}")
    if not _int(item.get("pts")):
        found.append(f"'pts' must be an integer, got {item.get('pts')!r}")
    return found


@dataclass
class ManifestLedger:
    """Every manifest checked in this session, by where it was found."""

    checked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def check(self, where: str, text: str) -> None:
        """Raise ManifestRuleError naming `where` unless CVAT would accept `text`; count it either way."""
        self.checked.append(where)
        found = problems(text)
        if found:
            self.refused.append(where)
            raise ManifestRuleError(f"{where} breaks CVAT's manifest rules:\n  " + "\n  ".join(found[:20]))

    def check_store(self, store: StateStore) -> int:
        """Check every published manifest in `store` (`manifests/**.jsonl`); how many there were."""
        keys = [key for key in store.list("manifests/") if key.endswith(".jsonl")]
        for key in keys:
            data = store.read_bytes(key)
            if data is not None:
                self.check(f"{store.location}/{key}", data.decode("utf-8"))
        return len(keys)


#: The one ledger of the test session (pytest imports this module once).
LEDGER = ManifestLedger()
