"""Small, dependency-free SVG charts for the reports: lines over time, bars, and a heat map.

Each function returns one ``<svg>`` element as text, sized in pixels, with a ``<title>`` for
screen readers and a ``data-chart`` attribute naming its kind (tests and people look for it).
Values are escaped; nothing refers to an outside resource, so the HTML stays self-contained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Colour-blind-safe series colours (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")
_FONT = 'font-family="sans-serif" font-size="11"'


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _open(kind: str, title: str, width: int, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" data-chart="{kind}" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
            f"<title>{escape(title)}</title>"]


def line_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]], *,
               width: int = 640, height: int = 240, y_min: float | None = None,
               y_max: float | None = None) -> str:
    """Lines of `series` (name -> one value or None per label) over the x `labels`.

    Args:
        title: what the chart shows.
        labels: the x-axis points in order (e.g. window indexes).
        series: each line's values; None leaves a gap.
        width, height: pixels (default 640 x 240).
        y_min, y_max: the y range (default: the values' range, padded).
    """
    left, right, top, bottom = 48, 120, 24, 32
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    lo = y_min if y_min is not None else (min(values) if values else 0.0)
    hi = y_max if y_max is not None else (max(values) if values else 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n = max(len(labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * (i / (n - 1) if n > 1 else 0.5))

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    out = _open("line", title, width, height)
    out.append(f'<text x="{left}" y="14" {_FONT} font-weight="bold">{escape(title)}</text>')
    for frac in (0.0, 0.5, 1.0):
        v = lo + (hi - lo) * frac
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" {_FONT}>'
                   f"{_fmt(v)}</text>")
    step = max(1, math.ceil(n / 12))
    for i, label in enumerate(labels):
        if i % step == 0:
            out.append(f'<text x="{x(i):.1f}" y="{height - 12}" text-anchor="middle" {_FONT}>'
                       f"{escape(str(label))}</text>")
    for k, (name, vs) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        points = [(x(i), y(v)) for i, v in enumerate(vs)
                  if v is not None and math.isfinite(v)]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            out.append(f'<polyline data-series="{escape(name)}" fill="none" stroke="{colour}" '
                       f'stroke-width="2" points="{path}"/>')
        for px, py in points:
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>')
        ly = top + 14 * k + 8
        out.append(f'<rect x="{left + plot_w + 10}" y="{ly - 8}" width="10" height="10" '
                   f'fill="{colour}"/>')
        out.append(f'<text x="{left + plot_w + 24}" y="{ly + 1}" {_FONT}>{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, width: int = 640,
              bar_height: int = 18) -> str:
    """Horizontal bars, one per (label, value), longest first as given.

    Args:
        title: what the chart shows.
        bars: (label, value) pairs; negative values draw from zero to the left.
        width: pixels (default 640); the height follows the number of bars.
        bar_height: pixels per bar (default 18).
    """
    left, top = 160, 24
    height = top + len(bars) * (bar_height + 4) + 8
    plot_w = width - left - 60
    top_value = max((abs(v) for _, v in bars), default=1.0) or 1.0
    out = _open("bar", title, width, height)
    out.append(f'<text x="4" y="14" {_FONT} font-weight="bold">{escape(title)}</text>')
    for i, (label, value) in enumerate(bars):
        by = top + i * (bar_height + 4)
        w = plot_w * abs(value) / top_value
        colour = PALETTE[0] if value >= 0 else PALETTE[3]
        out.append(f'<text x="{left - 6}" y="{by + bar_height - 5}" text-anchor="end" {_FONT}>'
                   f"{escape(str(label))}</text>")
        out.append(f'<rect data-bar="{escape(str(label))}" x="{left}" y="{by}" width="{w:.1f}" '
                   f'height="{bar_height}" fill="{colour}"/>')
        out.append(f'<text x="{left + w + 4:.1f}" y="{by + bar_height - 5}" {_FONT}>'
                   f"{_fmt(value)}</text>")
    out.append("</svg>")
    return "".join(out)


def heat_map(title: str, rows: Sequence[str], columns: Sequence[str],
             values: Sequence[Sequence[float | None]], *, limit: float = 0.2,
             cell: int = 22, max_width: int = 960) -> str:
    """A grid of `rows` x `columns` cells shaded by value, darkest at `limit` and above.

    Args:
        title: what the map shows.
        rows, columns: the labels (e.g. features, windows).
        values: one list per row, one value or None (no data, hatched grey) per column.
        limit: the value drawn darkest, e.g. a drift statistic's threshold (default 0.2).
        cell: pixels per cell (default 22), less when the columns would not fit.
        max_width: the widest the map may be, in pixels (default 960).
    """
    left, top = 160, 40
    # Many windows: narrower cells (never under 6 px) rather than a map wider than the page.
    cell = max(6, min(cell, (max_width - left - 16) // max(len(columns), 1)))
    width = left + cell * max(len(columns), 1) + 16
    row_h = 22
    height = top + row_h * len(rows) + 8
    out = _open("heatmap", title, width, height)
    out.append(f'<text x="4" y="14" {_FONT} font-weight="bold">{escape(title)}</text>')
    step = max(1, math.ceil(30 / cell))  # labels at least 30 px apart
    for j, label in enumerate(columns):
        if j % step == 0:
            out.append(f'<text x="{left + j * cell + cell / 2:.1f}" y="{top - 6}" '
                       f'text-anchor="middle" {_FONT}>{escape(str(label))}</text>')
    for i, name in enumerate(rows):
        cy = top + i * row_h
        out.append(f'<text x="{left - 6}" y="{cy + row_h - 7}" text-anchor="end" {_FONT}>'
                   f"{escape(str(name))}</text>")
        for j, value in enumerate(values[i]):
            cx = left + j * cell
            if value is None or not math.isfinite(value):
                fill, tip = "#eeeeee", "no data"
            else:
                share = min(1.0, max(0.0, value / limit)) if limit > 0 else 1.0
                # From pale yellow (no shift) to deep red (at or past the limit).
                r, g, b = 255, int(247 - 200 * share), int(188 - 170 * share)
                fill, tip = f"#{r:02x}{g:02x}{b:02x}", _fmt(value)
            out.append(f'<rect x="{cx}" y="{cy}" width="{max(cell - 2, 4)}" height="20" '
                       f'fill="{fill}"><title>{escape(str(name))} @ {escape(str(columns[j]))}: '
                       f"{tip}</title></rect>")
    out.append("</svg>")
    return "".join(out)
