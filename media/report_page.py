"""The visual report of one connection as ONE self-contained HTML page, rendered from plain data.

Self-contained because it is mailed, attached to tickets and opened from an object store: the CSS is inline, the
chart is inline SVG, the thumbnails are `data:` URIs, and a Content-Security-Policy forbids the page any network
access, so it looks the same offline and never calls home. Pure: it knows nothing of Dagster, the index or the state
store (pipelines/report.py gathers the data); every text from a bucket is escaped, since keys are chosen by whoever
uploads.

Every violation is one `<tr data-violation>` row, whatever its rule, so a test or a script can count them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape

#: One colour per rule, in the order rules first appear; picked to stay apart for colour-blind readers.
PALETTE = ("#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000")
CHART_WIDTH, CHART_HEIGHT = 760, 260
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 48, 180, 16, 40


@dataclass(frozen=True)
class SyncPoint:
    """One sync of the connection: when it finished, and the violations of each rule it left."""

    label: str
    violations_by_rule: dict[str, int]


@dataclass(frozen=True)
class Offender:
    """One violation: the object, what is wrong, the fix, and a small JPEG already turned as a viewer shows it."""

    key: str
    rule: str
    severity: str
    message: str
    remediation: str
    detail: str = ""
    thumbnail: bytes | None = None


@dataclass(frozen=True)
class ReportData:
    connection: str
    profile: str
    generated_at: str
    syncs: list[SyncPoint]
    offenders: list[Offender]
    figures: dict[str, str] = field(default_factory=dict)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c9d1e0}
main{padding:16px 32px 40px;max-width:1120px}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;margin:16px 0;padding:16px 20px}
h2{font-size:17px;margin:0 0 10px}
.figures{display:flex;gap:12px;flex-wrap:wrap}
.figure{background:#eef2f8;border-radius:6px;padding:8px 14px;min-width:110px}
.figure b{display:block;font-size:20px}
.figure span{color:#5a6475;font-size:12px}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th.thumb{width:168px}
th.fix{width:42%}
th,td{text-align:left;vertical-align:top;padding:8px;border-top:1px solid #e6e9ef}
th{font-size:12px;color:#5a6475;font-weight:600;border-top:none}
td.thumb{width:168px}
td.thumb img{max-width:160px;max-height:160px;border-radius:4px;display:block;box-shadow:0 1px 3px #0003}
.none{width:160px;height:90px;border-radius:4px;background:repeating-linear-gradient(45deg,#eef1f5,#eef1f5 8px,
#e2e6ec 8px,#e2e6ec 16px);color:#5a6475;font-size:12px;display:flex;align-items:center;justify-content:center}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f3f7;padding:4px 6px;border-radius:4px;
display:block;white-space:pre-wrap;overflow-wrap:break-word}
.key{font-weight:600;word-break:break-all}
.detail{color:#5a6475;font-size:12px}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;color:#fff}
.ok{color:#0a7a45}
svg text{font:11px system-ui,sans-serif;fill:#3a4356}
"""


def render(data: ReportData) -> str:
    """The whole page."""
    rules = _rules_in_order(data)
    colours = {rule: PALETTE[i % len(PALETTE)] for i, rule in enumerate(rules)}
    by_rule: dict[str, list[Offender]] = {}
    for offender in data.offenders:
        by_rule.setdefault(offender.rule, []).append(offender)
    sections = [_rule_section(rule, by_rule[rule], colours[rule]) for rule in rules if rule in by_rule]
    if not sections:
        sections = ['<section><h2 class="ok">No violations</h2><p>Every object passes the profile.</p></section>']
    figures = "".join(
        f'<div class="figure"><b>{escape(value)}</b><span>{escape(name)}</span></div>'
        for name, value in data.figures.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<title>bucket-sync report: {escape(data.connection)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>bucket-sync report: {escape(data.connection)}</h1>"
        f"<p>profile {escape(data.profile)} · {len(data.offenders)} violation(s) · "
        f"generated {escape(data.generated_at)}</p></header><main>"
        f'<section><div class="figures">{figures}</div></section>'
        f"<section><h2>Violations per rule over the last {len(data.syncs)} sync(s)</h2>{chart(data.syncs, colours)}"
        "</section>" + "".join(sections) + "</main></body></html>\n"
    )


def _rules_in_order(data: ReportData) -> list[str]:
    """Rules by their current count (largest first), then those that only appear in the history."""
    current: dict[str, int] = {}
    for offender in data.offenders:
        current[offender.rule] = current.get(offender.rule, 0) + 1
    rules = sorted(current, key=lambda r: (-current[r], r))
    for point in data.syncs:
        rules += sorted(r for r in point.violations_by_rule if r not in rules)
    return rules


def chart(syncs: list[SyncPoint], colours: dict[str, str]) -> str:
    """An inline SVG line chart: one line per rule, one point per sync, oldest on the left."""
    if not syncs:
        return "<p>No sync has reached the index yet.</p>"
    plot_w = CHART_WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = CHART_HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM
    top = max([n for p in syncs for n in p.violations_by_rule.values()] + [1])
    top = _nice_ceiling(top)

    def x(i: int) -> float:
        return _MARGIN_LEFT + (plot_w / 2 if len(syncs) == 1 else plot_w * i / (len(syncs) - 1))

    def y(n: int) -> float:
        return _MARGIN_TOP + plot_h * (1 - n / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="violations per rule per sync">',
        f'<rect x="{_MARGIN_LEFT}" y="{_MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafbfc" '
        'stroke="#dde2ea"/>',
    ]
    for tick in range(5):
        value = top * tick // 4
        ty = y(value)
        parts.append(
            f'<line x1="{_MARGIN_LEFT}" x2="{_MARGIN_LEFT + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e6e9ef"/>'
            f'<text x="{_MARGIN_LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{value}</text>'
        )
    step = max(1, len(syncs) // 8)
    for i, point in enumerate(syncs):
        if i % step == 0 or i == len(syncs) - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{CHART_HEIGHT - _MARGIN_BOTTOM + 16}" text-anchor="middle">'
                f"{escape(point.label)}</text>"
            )
    for j, (rule, colour) in enumerate(colours.items()):
        values = [p.violations_by_rule.get(rule, 0) for p in syncs]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{points}"/>')
        parts += [
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="4" fill="{colour}"><title>{escape(rule)}: {v}</title></circle>'
            for i, v in enumerate(values)
        ]
        ly = _MARGIN_TOP + 14 + 18 * j
        lx = CHART_WIDTH - _MARGIN_RIGHT + 16
        parts.append(
            f'<rect x="{lx}" y="{ly - 9}" width="12" height="12" rx="2" fill="{colour}"/>'
            f'<text x="{lx + 18}" y="{ly + 1}">{escape(rule)} ({values[-1]})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(n: int) -> int:
    """The smallest of 1, 2, 4, 5, 8 or 10 times a power of ten that is at least `n`: axis ticks at round values."""
    scale = 1
    while True:
        for m in (1, 2, 4, 5, 8):
            if m * scale >= n:
                return m * scale
        scale *= 10


def _rule_section(rule: str, offenders: list[Offender], colour: str) -> str:
    rows = "".join(_row(o) for o in offenders)
    return (
        f'<section data-rule-section="{escape(rule)}"><h2><span class="badge" style="background:{colour}">'
        f"{len(offenders)}</span> {escape(rule)}</h2>"
        '<table><thead><tr><th class="thumb">picture</th><th>object and problem</th><th class="fix">fix</th>'
        "</tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _row(o: Offender) -> str:
    if o.thumbnail:
        picture = f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(o.thumbnail).decode()}">'
    else:
        picture = '<div class="none">no thumbnail</div>'
    detail = f'<div class="detail">{escape(o.detail)}</div>' if o.detail else ""
    return (
        f'<tr data-violation data-rule="{escape(o.rule)}" data-key="{escape(o.key)}">'
        f'<td class="thumb">{picture}</td>'
        f'<td><div class="key">{escape(o.key)}</div><div>{escape(o.message)}</div>{detail}</td>'
        f"<td><code>{escape(o.remediation)}</code></td></tr>"
    )
