"""The connection catalog as a file: YAML read with the line of every entry, aliases refused, and written back.

The catalog's model and its validation are resources/catalog.py. This module is the file alone, with nothing behind
it but PyYAML, so that a reader that wants only the connection names (`bucket-sync status`) gets them without
building the catalog's pydantic models, and without Dagster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


class CatalogError(ValueError):
    """The catalog cannot be used as written. The message says where and how to fix it."""


def default_catalog_path() -> str:
    return os.environ.get("BUCKET_SYNC_CATALOG", "connections.yaml")


class AliasRefused(yaml.YAMLError):
    """The catalog uses a YAML alias. Refused outright: expanding aliases of aliases (a "billion laughs" file of a
    few hundred bytes) takes gigabytes and never finishes, and a catalog has no need for them."""

    def __init__(self, alias: str, mark: yaml.Mark) -> None:
        super().__init__(f"alias *{alias}")
        self.alias, self.mark = alias, mark


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that refuses aliases and duplicate keys, and remembers where each mapping starts."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(event.anchor, event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[misc]


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first at line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    mapping = loader.construct_mapping(node, deep=deep)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def strip_lines(value: Any) -> Any:
    """`value` without the `__line__` markers the loader adds to every mapping."""
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


#: The top-level fields a catalog may hold: its connections, and the notifications every connection defaults to.
TOP_LEVEL_FIELDS = ("connections", "notify")


def read_entries(file: Path) -> list[Any]:
    """The entries of the catalog's `connections:` list, as written (each mapping with its `__line__`), unvalidated."""
    return list(read_document(file)["connections"])


def read_document(file: Path) -> dict[str, Any]:
    """The catalog's top-level mapping, as written (mappings keep their `__line__`), unvalidated beyond its shape.

    Raises CatalogError, located, when the file is missing, is not YAML, uses an alias, or is not a catalog.
    """
    if not file.is_file():
        raise CatalogError(
            f"{file}: catalog file not found; create it (see connections.yaml in the repository) "
            "or point BUCKET_SYNC_CATALOG at it"
        )
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_LineLoader)
    except AliasRefused as exc:
        raise CatalogError(
            f"{file}: line {exc.mark.line + 1}, column {exc.mark.column + 1}: YAML alias *{exc.alias} refused: "
            "a catalog does not need anchors and aliases, and expanding them can exhaust memory; "
            "write the value out in full where the alias stands"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError(f"{file}:{where}: malformed YAML: {problem}") from None
    if raw is None:
        raw = {"connections": []}
    if not isinstance(raw, dict) or not isinstance(raw.get("connections"), list):
        raise CatalogError(f"{file}: expected a top-level 'connections:' list of connection entries")
    unknown_top = sorted(k for k in raw if k not in (*TOP_LEVEL_FIELDS, "__line__"))
    if unknown_top:
        raise CatalogError(
            f"{file}: unknown top-level field(s) {', '.join(unknown_top)}; only 'connections' and 'notify' are read"
        )
    return raw


def catalog_names(path: str | os.PathLike[str]) -> set[str]:
    """The connection names the catalog file holds, without validating the entries (load_catalog does that).

    For a reader that asks only whether a connection is still in the catalog: an entry with a mistake in another
    field is still in it. Raises CatalogError when the file cannot be read as a catalog at all.
    """
    return {
        entry["name"]
        for entry in read_entries(Path(path))
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    }


class _NoAliasDumper(yaml.SafeDumper):
    """PyYAML writes an object met twice as an anchor and an alias, which the loader refuses: write it out again."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_catalog(entries: list[dict[str, Any]]) -> str:
    """A catalog file's text for `entries`, in the form `load_catalog` accepts (no aliases, fields in order)."""
    return yaml.dump({"connections": entries}, Dumper=_NoAliasDumper, sort_keys=False)
