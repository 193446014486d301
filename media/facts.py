"""What a probe learns about one object, in the shape the index stores it.

This is the one declaration of a probe result's columns: each field of MediaFacts names a column and says its type.
The probes Parquet schema (assets/probes.py) and the index's `media` table (resources/index.py) are derived from
`FACT_SCHEMA`, so a field added here reaches both, and existing index files gain the column on their next write.

The field names are the public column names of the index's `media` table (DESIGN.md): add fields, never rename them.
The field order is the column order of a new index (new fields go last).

Types are declared abstractly (`ColumnType`), not as pyarrow or DuckDB types: media/ stays importable without either,
and each place that stores facts maps these few names to its own types with a small table of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from media.keyframes import KeyFrame

Kind = Literal["image", "video", "other"]

#: The column types a fact can have: a string, a 32- or 64-bit integer, a double, a list of strings, or a video's key
#: frames (a list of media.keyframes.KeyFrame: `number` and `pts`, both 64-bit integers).
ColumnType = Literal["string", "int32", "int64", "float64", "string_list", "keyframe_list"]

_TYPE, _REQUIRED = "column_type", "required"


def _column(column_type: ColumnType, *, required: bool = False) -> dict[str, Any]:
    """The metadata of a MediaFacts field that declares its column; `required` columns are never null (NOT NULL in
    the index). Plain `field()` metadata, so type checkers and dataclasses see ordinary fields."""
    return {_TYPE: column_type, _REQUIRED: required}


@dataclass(slots=True)
class MediaFacts:
    """Facts about one object, learned from byte ranges only.

    `orientation` is the EXIF Orientation value as stored (None when the file carries no tag, 0 or other out-of-range
    values are kept as found so a person can see them, and are treated as "no rotation" when deriving the displayed
    size). `error` is set when the object could not be understood; the other fields then hold whatever was learned
    before the failure.
    """

    kind: Kind = field(default="other", metadata=_column("string", required=True))
    format: str | None = field(default=None, metadata=_column("string"))
    width: int | None = field(default=None, metadata=_column("int32"))
    height: int | None = field(default=None, metadata=_column("int32"))
    orientation: int | None = field(default=None, metadata=_column("int32"))
    display_width: int | None = field(default=None, metadata=_column("int32"))
    display_height: int | None = field(default=None, metadata=_column("int32"))
    major_brand: str | None = field(default=None, metadata=_column("string"))
    compatible_brands: list[str] = field(default_factory=list, metadata=_column("string_list"))
    codec: str | None = field(default=None, metadata=_column("string"))
    pix_fmt: str | None = field(default=None, metadata=_column("string"))
    duration_s: float | None = field(default=None, metadata=_column("float64"))
    frames: int | None = field(default=None, metadata=_column("int64"))
    rotation: int | None = field(default=None, metadata=_column("int32"))
    bytes_read: int = field(default=0, metadata=_column("int64"))
    requests: int = field(default=0, metadata=_column("int32"))
    error: str | None = field(default=None, metadata=_column("string"))
    # Image mode (RGB, L, CMYK, ...): after `error`, where the first index put it, so old and new indexes agree.
    mode: str | None = field(default=None, metadata=_column("string"))
    # sha256 of the first bytes read (up to the first 16 KiB): a content fingerprint for move detection where the
    # provider's etag is not a content hash.
    head_sha256: str | None = field(default=None, metadata=_column("string"))
    # Video only, from the moov box (media/keyframes.py): the rows of a CVAT video manifest, and how many frames a
    # decoder outputs (CVAT's `length`; an edit list can make it smaller than `frames`). None when they could not be
    # computed, and `notes` then says why. Kept with the facts so an unchanged video carries them to the next sync.
    keyframes: list[KeyFrame] | None = field(default=None, metadata=_column("keyframe_list"))
    decoded_frames: int | None = field(default=None, metadata=_column("int64"))
    # What a person should know that does not make the object unreadable (the track chosen among several, a
    # fragmented file whose frame count is not in its header), one short sentence each.
    notes: list[str] = field(default_factory=list, metadata=_column("string_list"))

    def to_row(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy was a third of the CPU a sync spends per probed object.
        row = {name: getattr(self, name) for name in FACT_COLUMNS}
        row["compatible_brands"] = list(self.compatible_brands)
        row["notes"] = list(self.notes)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MediaFacts:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        for listed in ("compatible_brands", "notes"):
            if values.get(listed) is None:
                values[listed] = []
        return cls(**values)


@dataclass(frozen=True, slots=True)
class FactColumn:
    """One declared column of a probe result."""

    name: str
    type: ColumnType
    required: bool = False


def declared_columns(cls: type[MediaFacts]) -> tuple[FactColumn, ...]:
    """The columns, read off the dataclass's fields; a field without a declared type is refused (at import, for
    MediaFacts), so a fact can never be stored in one place and silently missing from another."""
    columns = []
    for f in fields(cls):
        column_type = f.metadata.get(_TYPE)
        if column_type not in get_args(ColumnType):
            raise TypeError(
                f"{cls.__name__}.{f.name} declares no column type: give it field(metadata=_column(<ColumnType>))"
            )
        columns.append(FactColumn(f.name, column_type, bool(f.metadata.get(_REQUIRED))))
    return tuple(columns)


#: Every column of a probe result, in order: what the Parquet schema and the index DDL are derived from.
FACT_SCHEMA: tuple[FactColumn, ...] = declared_columns(MediaFacts)
FACT_COLUMNS: tuple[str, ...] = tuple(column.name for column in FACT_SCHEMA)
