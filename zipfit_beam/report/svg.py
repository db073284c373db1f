"""The report's charts as SVG text: axes with ticks, bars, dots, reference lines, markers and
a legend, in about as many lines as the four plots need. Pure: no Beam, no plotting library.

A chart is data in and bytes out: the same data gives the same bytes (coordinates are
rounded to 0.1 px), so a re-rendered report is identical. matplotlib drew these plots before;
importing it and rendering four PNGs cost the launcher about 1-2 s of CPU on every run,
more than the report's data costs the job. Browsers show SVG as crisply at any zoom.

Every string from the data (titles, labels, legend entries) is XML-escaped.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["Axis", "Chart", "nice_ticks", "number_label", "span", "PALETTE"]

FONT = "system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"
CHAR_WIDTH = 6.2  # the average width of an 11 px character, for layout only
LINE = 13  # px between the lines of a multi-line label
# Tableau's 20 categorical colours (dark and light of ten hues), for stacked groups.
PALETTE = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
           "#ff9896", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2",
           "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5")
SCALES = ("linear", "log", "symlog")


def _x(value) -> str:
    return html.escape(str(value), quote=True)


def _f(value: float) -> str:
    """A coordinate: 0.1 px, no trailing zeros, never ``-0``."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_ticks(lo: float, hi: float, count: int = 6) -> List[float]:
    """About ``count`` round values (1, 2, 2.5 or 5 times a power of ten apart) in [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]


def number_label(value: float, step: Optional[float] = None) -> str:
    """A tick label: as many decimals as the tick spacing needs, thousands separated."""
    if step is None or step >= 1 or value == 0:
        if abs(value - round(value)) < 1e-9:
            return f"{round(value):,}"
    decimals = 0 if not step else max(0, -math.floor(math.log10(step) + 1e-9))
    if step and decimals and abs(round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6:
        decimals += 1  # 0.25, 0.025: one more digit
    return f"{value:,.{decimals}f}"


def span(values: Sequence[float], pad: float = 0.05, floor: Optional[float] = None) -> Tuple[float, float]:
    """(lo, hi) around ``values`` with ``pad`` of the width on each side (``floor``: lo is
    at most that, e.g. 0 for counts); a single value or none gets a unit-wide range."""
    vals = list(values) + ([floor] if floor is not None else [])
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    width = hi - lo or (abs(hi) or 1.0)
    lo = lo if floor is not None and lo == floor else lo - pad * width
    return lo, hi + pad * width


@dataclass(frozen=True)
class Axis:
    """A value range and its scale: ``linear``; ``log`` (lo > 0); ``symlog``, log10(1 + |v|)
    with its sign, which keeps 0 and 1 and compresses large counts. ``ticks``: fixed
    (value, label) pairs, e.g. category names; default: round values in the range."""
    lo: float
    hi: float
    scale: str = "linear"
    ticks: Optional[Tuple[Tuple[float, str], ...]] = None

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.scale == "log" and not 0 < self.lo < self.hi:
            raise ValueError(f"a log axis needs 0 < lo < hi, got {self.lo}, {self.hi}")

    def _t(self, value: float) -> float:
        if self.scale == "log":
            return math.log10(value)
        if self.scale == "symlog":
            return math.copysign(math.log10(1 + abs(value)), value)
        return value

    def frac(self, value: float) -> float:
        """Where ``value`` falls: 0 at ``lo``, 1 at ``hi`` (outside: beyond; a log axis puts
        values <= 0 at 0)."""
        if self.scale == "log" and value <= 0:
            return 0.0
        a, b = self._t(self.lo), self._t(self.hi)
        return 0.5 if b == a else (self._t(value) - a) / (b - a)

    def tick_marks(self) -> List[Tuple[float, str]]:
        if self.ticks is not None:
            return list(self.ticks)
        if self.scale != "linear":  # powers of ten (symlog: from 1, and 0)
            first = math.ceil(math.log10(self.lo) - 1e-9) if self.lo > 0 else 0
            if self.scale == "symlog":
                first = max(first, 0)
            last = math.floor(math.log10(self.hi) + 1e-9) if self.hi > 0 else first - 1
            values = [10.0 ** k for k in range(first, last + 1)]
            if self.scale == "symlog" and self.lo <= 0 <= self.hi:
                values.insert(0, 0.0)
            if len(values) >= 2:
                return [(v, number_label(v)) for v in values]
        values = nice_ticks(self.lo, self.hi)
        step = values[1] - values[0] if len(values) > 1 else None
        return [(v, number_label(v, step)) for v in values]


def _text_width(text: str) -> float:
    return max((len(line) for line in text.split("\n")), default=0) * CHAR_WIDTH


def _text(x: float, y: float, text: str, anchor: str = "start", **attrs) -> str:
    """A ``<text>``; a label with newlines becomes lines centred on ``y``."""
    lines = text.split("\n")
    extra = "".join(f' {k.replace("_", "-")}="{_x(v)}"' for k, v in attrs.items())
    head = f'<text x="{_f(x)}" y="{_f(y - (len(lines) - 1) * LINE / 2)}" text-anchor="{anchor}"{extra}>'
    if len(lines) == 1:
        return head + _x(text) + "</text>"
    spans = "".join(f'<tspan x="{_f(x)}" dy="{0 if i == 0 else LINE}">{_x(line)}</tspan>'
                    for i, line in enumerate(lines))
    return head + spans + "</text>"


class Chart:
    """One plot: add bars, dots, lines and markers in data coordinates, legend entries with
    ``key``, then ``svg()``. The plot area is sized around the tick labels and the legend,
    which sits to the right of it."""

    def __init__(self, title: str, x: Axis, y: Axis, xlabel: str = "", ylabel: str = "",
                 width: int = 760, height: int = 360):
        self.title, self.x, self.y, self.xlabel, self.ylabel = title, x, y, xlabel, ylabel
        self.width, self.height = width, height
        self._shapes: List[tuple] = []
        self._keys: List[Tuple[str, str, str]] = []

    def bar(self, x0: float, x1: float, y0: float, y1: float, color: str) -> None:
        """A filled rectangle between two x and two y values."""
        self._shapes.append(("rect", x0, x1, y0, y1, color))

    def dots(self, xs: Sequence[float], ys: Sequence[float], color: str, radius: float = 2.2,
             opacity: float = 0.6) -> None:
        self._shapes.append(("dots", list(xs), list(ys), color, radius, opacity))

    def vline(self, x: float, color: str, dashed: bool = True, width: float = 1.5) -> None:
        self._shapes.append(("vline", x, color, dashed, width))

    def hline(self, y: float, color: str, dashed: bool = True, width: float = 1.5) -> None:
        self._shapes.append(("hline", y, color, dashed, width))

    def markers(self, xs: Sequence[float], y: float, color: str) -> None:
        """Downward triangles at height ``y``: marks for what bars are too small to show."""
        self._shapes.append(("markers", list(xs), y, color))

    def key(self, label: str, color: str, kind: str = "box") -> None:
        """A legend entry: ``box`` (bars), ``dot``, ``line`` (dashed) or ``marker``."""
        self._keys.append((label, color, kind))

    def svg(self) -> bytes:
        x_ticks, y_ticks = self.x.tick_marks(), self.y.tick_marks()
        left = 10 + (18 if self.ylabel else 0) + max((_text_width(t) for _, t in y_ticks), default=0) + 8
        legend = max((_text_width(label) for label, _, _ in self._keys), default=0)
        right = 14 + (legend + 34 if self._keys else 0)
        x_lines = max((t.count("\n") + 1 for _, t in x_ticks), default=1)
        top, bottom = 30, 12 + LINE * x_lines + (18 if self.xlabel else 0)
        pw, ph = max(self.width - left - right, 40), max(self.height - top - bottom, 40)
        X = lambda v: left + pw * self.x.frac(v)  # noqa: E731
        Y = lambda v: top + ph * (1 - self.y.frac(v))  # noqa: E731

        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
               f'viewBox="0 0 {self.width} {self.height}" font-family="{FONT}" font-size="11" '
               f'fill="#1f2328">',
               f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>',
               f'<clipPath id="area"><rect x="{_f(left)}" y="{_f(top)}" width="{_f(pw)}" '
               f'height="{_f(ph)}"/></clipPath>',
               _text(left + pw / 2, 19, self.title, "middle", font_size=13, font_weight=600)]
        for value, _ in y_ticks:
            out.append(f'<line x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(Y(value))}" '
                       f'y2="{_f(Y(value))}" stroke="#eaeef2"/>')
        out.append('<g clip-path="url(#area)">')
        for shape in self._shapes:
            out.append(self._shape(shape, X, Y, top, ph, left, pw))
        out.append("</g>")
        out.append(f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(pw)}" height="{_f(ph)}" '
                   f'fill="none" stroke="#57606a"/>')
        for value, label in x_ticks:
            px = X(value)
            out.append(f'<line x1="{_f(px)}" x2="{_f(px)}" y1="{_f(top + ph)}" y2="{_f(top + ph + 4)}" '
                       f'stroke="#57606a"/>')
            out.append(_text(px, top + ph + 6 + LINE * x_lines / 2 + 3, label, "middle"))
        for value, label in y_ticks:
            py = Y(value)
            out.append(f'<line x1="{_f(left - 4)}" x2="{_f(left)}" y1="{_f(py)}" y2="{_f(py)}" '
                       f'stroke="#57606a"/>')
            out.append(_text(left - 6, py + 4, label, "end"))
        if self.xlabel:
            out.append(_text(left + pw / 2, self.height - 8, self.xlabel, "middle"))
        if self.ylabel:
            out.append(f'<text x="0" y="0" text-anchor="middle" transform="translate(14 '
                       f'{_f(top + ph / 2)}) rotate(-90)">{_x(self.ylabel)}</text>')
        for i, (label, color, kind) in enumerate(self._keys):
            out.append(self._key(left + pw + 14, top + 8 + i * 18, label, color, kind))
        out.append("</svg>")
        return "\n".join(out).encode("utf-8")

    @staticmethod
    def _shape(shape, X, Y, top, ph, left, pw) -> str:
        kind = shape[0]
        if kind == "rect":
            _, x0, x1, y0, y1, color = shape
            a, b, c, d = sorted((X(x0), X(x1))) + sorted((Y(y0), Y(y1)))
            return (f'<rect x="{_f(a)}" y="{_f(c)}" width="{_f(b - a)}" height="{_f(d - c)}" '
                    f'fill="{color}"/>')
        if kind == "dots":
            _, xs, ys, color, radius, opacity = shape
            circles = "".join(f'<circle cx="{_f(X(x))}" cy="{_f(Y(y))}" r="{radius}"/>'
                              for x, y in zip(xs, ys))
            return f'<g fill="{color}" fill-opacity="{opacity}">{circles}</g>'
        if kind in ("vline", "hline"):
            _, value, color, dashed, width = shape
            dash = ' stroke-dasharray="6 4"' if dashed else ""
            if kind == "vline":
                coords = f'x1="{_f(X(value))}" x2="{_f(X(value))}" y1="{_f(top)}" y2="{_f(top + ph)}"'
            else:
                coords = f'x1="{_f(left)}" x2="{_f(left + pw)}" y1="{_f(Y(value))}" y2="{_f(Y(value))}"'
            return f'<line {coords} stroke="{color}" stroke-width="{width}"{dash}/>'
        _, xs, y, color = shape  # markers
        return "".join(f'<path d="M{_f(X(x) - 5)} {_f(Y(y) - 6)}h10l-5 8z" fill="{color}"/>'
                       for x in xs)

    @staticmethod
    def _key(x: float, y: float, label: str, color: str, kind: str) -> str:
        if kind == "line":
            mark = (f'<line x1="{_f(x)}" x2="{_f(x + 20)}" y1="{_f(y)}" y2="{_f(y)}" stroke="{color}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"/>')
        elif kind == "dot":
            mark = f'<circle cx="{_f(x + 10)}" cy="{_f(y)}" r="3.5" fill="{color}"/>'
        elif kind == "marker":
            mark = f'<path d="M{_f(x + 5)} {_f(y - 5)}h10l-5 8z" fill="{color}"/>'
        else:
            mark = f'<rect x="{_f(x)}" y="{_f(y - 5)}" width="20" height="10" fill="{color}"/>'
        return mark + _text(x + 26, y + 4, label)
