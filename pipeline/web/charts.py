"""The Performance page's charts, drawn on the server as SVG (no chart library, no script).

Why server-side SVG rather than a chart library vendored from npm (docs/admin-guide.md,
"Performance"): the page's figures are already computed here, the charts need only bars and a
line, and the pages' CSP stays as strict as App Settings' (`script-src 'self'; style-src 'self'`:
SVG presentation attributes such as `fill` are not styles, while most chart libraries set inline
styles or need `'unsafe-inline'`). Nothing runs in the browser, nothing more enters the supply
chain, and a chart renders the same in a unit test, a screenshot and Marketing Cloud's frame.

Every chart is `role="img"` with a title and a description; the table beside it (the page's
template) carries the same figures and is what assistive technology reads. Each bar carries a
`<title>` (its value on hover) and `data-value`, which the browser test compares with the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Okabe-Ito colours: told apart with the common colour-vision deficiencies, each >= 3:1 on white
BLUE, ORANGE, GREEN, PURPLE, INK = "#0072b2", "#c25e00", "#007a5a", "#a4478c", "#16325c"
GRID, MUTED = "#dde3eb", "#3e5170"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Series:
    key: str  # the report's figure
    label: str  # what the legend and the table say
    colour: str


def _nice_max(value: float) -> int:
    """An axis end at or above `value`: 1, 2, 2.5 or 5 times a power of ten (>= 1)."""
    if value <= 1:
        return 1
    power = 1
    while power * 10 < value:
        power *= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return int(step * power) if step * power == int(step * power) else int(step * power) + 1
    return power * 10


def _ticks(low: int, high: int) -> list[int]:
    """Up to about five round values from `low` to `high` (both multiples of the step)."""
    span = max(1, high - low)
    step = max(1, _nice_max(span / 4))
    start = (low // step) * step
    return [v for v in range(start, high + step, step) if low <= v <= high]


def _svg(width: int, height: int, title: str, desc: str, body: list[str], chart_id: str) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _legend(series: Sequence[Series], x: float, y: float, line: Series | None = None) -> list[str]:
    out = []
    for item in series:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{item.colour}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" fill="{INK}" {FONT}>{escape(item.label)}</text>')
        x += 22 + 6.5 * len(item.label)
    if line is not None:
        out.append(
            f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 14:.1f}" y2="{y - 4:.1f}" '
            f'stroke="{line.colour}" stroke-width="2"/>'
        )
        out.append(f'<circle cx="{x + 7:.1f}" cy="{y - 4:.1f}" r="3" fill="{line.colour}"/>')
        out.append(f'<text x="{x + 18:.1f}" y="{y:.1f}" fill="{INK}" {FONT}>{escape(line.label)}</text>')
    return out


def daily_bars(
    chart_id: str,
    title: str,
    days: Sequence[dict],
    series: Sequence[Series],
    line: Series | None = None,
    width: int = 520,
    height: int = 240,
) -> Markup:
    """Bars of each series side by side for each day (oldest on the left), and optionally one
    more figure as a line with dots (the net change, which may be negative)."""
    left, right, top, bottom = 40, 8, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [int(day.get(s.key, 0)) for day in days for s in [*series, *([line] if line else [])]]
    high = _nice_max(max([0, *values]))
    low = -_nice_max(-min(values)) if values and min(values) < 0 else 0

    def y_of(value: float) -> float:
        return top + plot_h * (high - value) / (high - low)

    body = _legend(series, left, 14, line)
    for tick in _ticks(low, high):
        y = y_of(tick)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}" {FONT}>{tick}</text>'
        )
    count = max(1, len(days))
    slot = plot_w / count
    bar_w = max(1.0, (slot * 0.8) / max(1, len(series)))
    label_every = max(1, -(-count // 8))  # at most about eight dates under the axis
    zero = y_of(0)
    points = []
    for i, day in enumerate(days):
        x0 = left + i * slot + slot * 0.1
        for j, item in enumerate(series):
            value = int(day.get(item.key, 0))
            y = min(y_of(value), zero)
            h = abs(zero - y_of(value))
            body.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{item.colour}" data-date="{escape(day["date"])}" '
                f'data-figure="{escape(item.key)}" data-value="{value}">'
                f"<title>{escape(day['date'])} {escape(item.label)}: {value}</title></rect>"
            )
        if line is not None:
            points.append(
                (left + (i + 0.5) * slot, y_of(int(day.get(line.key, 0))), int(day.get(line.key, 0)))
            )
        if i % label_every == 0:
            body.append(
                f'<text x="{left + (i + 0.5) * slot:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                f'fill="{MUTED}" {FONT}>{escape(str(day["date"])[5:])}</text>'
            )
    body.append(f'<line x1="{left}" y1="{zero:.1f}" x2="{width - right}" y2="{zero:.1f}" stroke="{MUTED}"/>')
    if line is not None and points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{line.colour}" stroke-width="2"/>')
        for (x, y, value), day in zip(points, days, strict=True):
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{line.colour}" '
                f'data-date="{escape(day["date"])}" '
                f'data-figure="{escape(line.key)}" data-value="{value}">'
                f"<title>{escape(day['date'])} {escape(line.label)}: {value}</title></circle>"
            )
    names = ", ".join(s.label for s in [*series, *([line] if line else [])])
    desc = f"{names} for each day from {days[0]['date']} to {days[-1]['date']}." if days else "No days."
    return _svg(width, height, title, desc + " The table beside it has the figures.", body, chart_id)


def horizontal_bars(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, int]],
    *,
    colour: str = BLUE,
    colours: Sequence[str] = (),
    of: int | None = None,
    width: int = 520,
    label_w: int = 150,
) -> Markup:
    """One bar a row, longest = the largest value (or `of`, e.g. the funnel's entered), each
    labelled with its value (and its share of `of`); `colours` gives each row its own."""
    row_h, top = 30, 6
    longest = max(8, (label_w - 12) // 6)  # characters that fit the label column
    value_w = 96
    height = top + row_h * max(1, len(rows)) + 6
    bar_max = width - label_w - value_w
    scale = max([1, of or 0, *(n for _, n in rows)])
    body = []
    for i, (name, value) in enumerate(rows):
        y = top + i * row_h
        w = bar_max * value / scale
        share = f" ({value / of:.0%})" if of else ""
        text = name if len(name) <= longest else name[: longest - 1] + "\u2026"
        fill = colours[i] if i < len(colours) else colour
        body.append(
            f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end" fill="{INK}" {FONT}>'
            f"{escape(text)}</text>"
        )
        body.append(
            f'<rect x="{label_w}" y="{y + 5}" width="{max(w, 1 if value else 0):.1f}" height="{row_h - 10}" '
            f'fill="{fill}" data-label="{escape(name)}" data-value="{value}">'
            f"<title>{escape(name)}: {value}{share}</title></rect>"
        )
        body.append(
            f'<text x="{label_w + max(w, 0) + 6:.1f}" y="{y + 18}" fill="{INK}" {FONT}>{value}{share}</text>'
        )
    desc = "; ".join(f"{name}: {value}" for name, value in rows) + ". The table beside it has the figures."
    return _svg(width, height, title, desc, body, chart_id)
