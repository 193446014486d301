"""What a probe learns about one object, in the shape the index stores it.

The field names are the public column names of the index's `media` table (DESIGN.md): add fields, never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

Kind = Literal["image", "video", "other"]


@dataclass(slots=True)
class MediaFacts:
    """Facts about one object, learned from byte ranges only.

    `orientation` is the EXIF Orientation value as stored (None when the file carries no tag, 0 or other out-of-range
    values are kept as found so a person can see them, and are treated as "no rotation" when deriving the displayed
    size). `error` is set when the object could not be understood; the other fields then hold whatever was learned
    before the failure.
    """

    kind: Kind = "other"
    format: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    display_width: int | None = None
    display_height: int | None = None
    mode: str | None = None
    major_brand: str | None = None
    compatible_brands: list[str] = field(default_factory=list)
    codec: str | None = None
    pix_fmt: str | None = None
    duration_s: float | None = None
    frames: int | None = None
    rotation: int | None = None
    bytes_read: int = 0
    requests: int = 0
    error: str | None = None
    # sha256 of the first bytes read (up to the first 16 KiB): a content fingerprint for move detection where the
    # provider's etag is not a content hash.
    head_sha256: str | None = None

    def to_row(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy was a third of the CPU a sync spends per probed object.
        row = {name: getattr(self, name) for name in FACT_COLUMNS}
        row["compatible_brands"] = list(self.compatible_brands)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MediaFacts:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        if values.get("compatible_brands") is None:
            values["compatible_brands"] = []
        return cls(**values)


FACT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(MediaFacts))
