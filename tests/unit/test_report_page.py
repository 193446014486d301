"""The report page from plain data: keys are chosen by whoever uploads, so every text is escaped; one row each."""

from __future__ import annotations

from html.parser import HTMLParser

from media.report_page import Offender, ReportData, SyncPoint, chart, render


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.rows: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr" and any(name == "data-violation" for name, _ in attrs):
            self.rows.append(dict(attrs))


def _data(offenders: list[Offender], syncs: list[SyncPoint] | None = None) -> ReportData:
    return ReportData(
        connection="c",
        profile="strict",
        generated_at="now",
        syncs=syncs if syncs is not None else [SyncPoint("01-01 00:00", {"readable": len(offenders)})],
        offenders=offenders,
    )


def test_hostile_keys_and_messages_are_text_not_markup() -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>.jpg'
    page = render(_data([Offender(hostile, "readable", "WARN", "<b>bad</b>", "rm '<x>'")]))
    parsed = Tags()
    parsed.feed(page)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert parsed.tags.count("img") == 0, "no thumbnail was given, and the key must not smuggle one in"
    assert [row["data-key"] for row in parsed.rows] == [hostile]


def test_one_row_per_violation_even_for_one_key_breaking_two_rules() -> None:
    offenders = [
        Offender("a.jpg", "exif_orientation", "WARN", "m", "fix", thumbnail=b"\xff\xd8jpeg"),
        Offender("a.jpg", "readable", "WARN", "m", "fix"),
        Offender("b.mp4", "mp4_brand", "WARN", "m", "fix"),
    ]
    parsed = Tags()
    parsed.feed(render(_data(offenders)))
    assert sorted((r["data-key"], r["data-rule"]) for r in parsed.rows) == [
        ("a.jpg", "exif_orientation"),
        ("a.jpg", "readable"),
        ("b.mp4", "mp4_brand"),
    ]
    assert parsed.tags.count("img") == 1


def test_the_chart_draws_one_point_per_sync_and_rule() -> None:
    syncs = [SyncPoint(f"s{i}", {"readable": i, "mp4_brand": 2}) for i in range(3)]
    svg = chart(syncs, {"readable": "#000", "mp4_brand": "#111"})
    assert svg.count("<circle") == 6 and svg.count("<polyline") == 2
    assert "readable (2)" in svg  # the legend names the latest count
    assert "No sync" in chart([], {})


def test_a_clean_connection_says_so() -> None:
    assert "No violations" in render(_data([]))
