"""The QA reports' charts as inline SVG drawn on the server: every label escaped, no script, no style attributes."""

from __future__ import annotations

from collections.abc import Sequence

from voicebot.web.login import Html, tag

PALETTE = ("#2563eb", "#d9480f", "#059669", "#7c3aed", "#b7791f", "#db2777", "#0891b2", "#4b5563")
BAR_LABEL_W, BAR_MAX_W, BAR_ROW_H = 340, 300, 26
LINE_W, LINE_H, LINE_PAD = 560, 200, 32
MARGIN_L, MARGIN_B, MARGIN_T = 40, 40, 16


def bar_chart(counts: dict[str, int], *, title: str, labels: dict[str, str] | None = None) -> Html:
    """Horizontal bars of counts by key, largest first, each named by `labels` (else its key) in full at its left;
    a note instead when there is nothing to draw."""
    if not any(counts.values()):
        return tag("p", f"{title}: none.", class_="muted chart-empty")
    items = sorted(((n, key) for key, n in counts.items() if n > 0), key=lambda x: (-x[0], x[1]))
    top = max(n for n, _ in items)
    width = BAR_LABEL_W + BAR_MAX_W + 48
    height = MARGIN_T + len(items) * BAR_ROW_H + 8
    parts: list[str] = [tag("title", title)]
    for i, (n, key) in enumerate(items):
        y = MARGIN_T + i * BAR_ROW_H
        w = max(2.0, BAR_MAX_W * n / top)
        label = (labels or {}).get(key, key)
        parts.append(tag("g", tag("title", f"{label}: {n}"),
                         tag("text", label, x=BAR_LABEL_W - 8, y=y + 15, text_anchor="end", font_size=13),
                         tag("rect", x=BAR_LABEL_W, y=y + 3, width=round(w, 1), height=BAR_ROW_H - 8, fill=PALETTE[0]),
                         tag("text", str(n), x=round(BAR_LABEL_W + w + 6, 1), y=y + 15, font_size=13),
                         class_="bar", data_label=key, data_count=n))
    return tag("svg", *parts, class_="chart bar-chart", role="img", aria_label=title, width=width, height=height,
               viewBox=f"0 0 {width} {height}", xmlns="http://www.w3.org/2000/svg")


def line_chart(months: Sequence[str], series: dict[str, list[float | None]], *, title: str) -> Html:
    """One line per series over the months on a 0–100 scale; a month without a value breaks the line."""
    if not any(v is not None for values in series.values() for v in values):
        return tag("p", f"{title}: no scores yet.", class_="muted chart-empty")
    width, height = MARGIN_L + LINE_W + 16, MARGIN_T + LINE_H + MARGIN_B
    step = (LINE_W - 2 * LINE_PAD) / max(len(months) - 1, 1)
    x_of = [MARGIN_L + LINE_PAD + i * step for i in range(len(months))]
    parts: list[str] = [tag("title", title), _axis(width, MARGIN_T + LINE_H)]
    for score in (0, 50, 100):
        y = _y(score)
        parts.append(tag("line", x1=MARGIN_L, x2=width - 8, y1=y, y2=y, stroke="#d9dde3"))
        parts.append(tag("text", str(score), x=MARGIN_L - 6, y=y + 4, text_anchor="end", font_size=11))
    for x, month in zip(x_of, months, strict=True):
        parts.append(tag("text", month, x=x, y=MARGIN_T + LINE_H + 18, text_anchor="middle", font_size=11))
    legend: list[str] = []
    for n, (name, values) in enumerate(sorted(series.items())):
        colour = PALETTE[n % len(PALETTE)]
        points = list(zip(x_of, values, months, strict=True))
        parts.append(tag("g", *_lines(points, colour), class_="series", data_label=name))
        legend.append(tag("li", tag("span", "■", class_=f"swatch c{n % len(PALETTE)}"), " ", name))
    svg = tag("svg", *parts, class_="chart line-chart", role="img", aria_label=title, width=width, height=height,
              viewBox=f"0 0 {width} {height}", xmlns="http://www.w3.org/2000/svg")
    return Html(svg + tag("ul", *legend, class_="legend"))


def _lines(points: list[tuple[float, float | None, str]], colour: str) -> list[str]:
    """Polylines through consecutive known points, and a dot with a tooltip at each."""
    out: list[str] = []
    run: list[str] = []
    for x, value, month in [*points, (0.0, None, "")]:
        if value is None:
            if len(run) > 1:
                out.append(tag("polyline", points=" ".join(run), fill="none", stroke=colour, stroke_width=2))
            run = []
            continue
        run.append(f"{x:.1f},{_y(value):.1f}")
        out.append(tag("circle", tag("title", f"{month}: {value:.1f}"), cx=round(x, 1), cy=round(_y(value), 1),
                       r=3.5, fill=colour, data_month=month, data_value=f"{value:.1f}"))
    return out


def _y(score: float) -> float:
    return MARGIN_T + LINE_H * (1 - score / 100)


def _axis(width: float, base: float) -> Html:
    """The x axis at height `base` and the y axis down to it."""
    return Html(tag("line", x1=MARGIN_L, x2=width - 8, y1=base, y2=base, stroke="#6b7280")
                + tag("line", x1=MARGIN_L, x2=MARGIN_L, y1=MARGIN_T, y2=base, stroke="#6b7280"))
