"""Charts for a self-contained HTML page: inline SVG line charts and heatmaps, no dependency but NumPy.

A line chart maps a point (x, y) to pixels by

    px = left + (x - x_min) / (x_max - x_min) * width
    py = top + (1 - (g(y) - g(y_min)) / (g(y_max) - g(y_min))) * height,   g = log10 or the identity

and carries its points' pixels and labels in a `data-points` attribute, which
HOVER_JS reads to show the values under the mouse. A heatmap is a PNG (encoded
here with zlib: filter 0 rows of 8-bit RGB) inlined as a data: URI in an SVG
<image>, coloured by a viridis ramp of log10 of the value; zero or non-finite
cells are light grey. Every string put in the page is html.escape'd.
"""

from __future__ import annotations

import base64
import html
import json
import math
import struct
import zlib

import numpy as np

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)
EMPTY = (244, 244, 244)
MAX_POINTS = 800  # per series; longer series are thinned to the largest value per bucket
MAX_HOVER_CELLS = 40_000  # heatmaps up to 200 x 200 carry their values for hovering

W, H = 500, 280
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 30, 45


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(v: float) -> str:
    """A number as a short label: 4 significant digits."""
    if v is None or not math.isfinite(v):
        return str(v)
    return f"{v:.4g}"


# ---- ticks and scales ----------------------------------------------------------------


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


class _Scale:
    """Data to pixels along one axis; log10 when log is set (then the data must be > 0)."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        self.log = log
        g = math.log10 if log else float
        self.a, self.b = g(lo), g(hi)
        if self.b <= self.a:  # one value: a band around it
            pad = 0.5 if log else (abs(self.a) * 0.1 or 1.0)
            self.a, self.b = self.a - pad, self.b + pad
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        g = math.log10(v) if self.log else v
        return self.p0 + (g - self.a) / (self.b - self.a) * (self.p1 - self.p0)

    def ticks(self) -> list[float]:
        if not self.log:
            return nice_ticks(self.a, self.b)
        lo, hi = math.floor(self.a), math.ceil(self.b)

        def inside(t: float) -> bool:
            return self.a - 1e-9 <= math.log10(t) <= self.b + 1e-9

        if self.b - self.a > 3:  # powers of ten, at most about 8 of them
            every = max(1, math.ceil((hi - lo) / 8))
            return [10.0**e for e in range(lo, hi + 1, every) if inside(10.0**e)]
        ticks = [m * 10.0**e for e in range(lo - 1, hi + 1) for m in (1, 2, 5) if inside(m * 10.0**e)]
        if len(ticks) < 3:  # a narrow range: round values, placed on the log scale
            ticks = [t for t in nice_ticks(10**self.a, 10**self.b, 4) if t > 0]
        return ticks


def thin(xs: list[float], ys: list[float], limit: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """At most `limit` points: consecutive buckets replaced by their largest y (peaks stay visible)."""
    n = len(xs)
    if n <= limit:
        return list(xs), list(ys)
    edges = np.linspace(0, n, limit + 1).astype(int)
    out_x, out_y = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = [(y, x) for x, y in zip(xs[a:b], ys[a:b]) if math.isfinite(y)]
        if seg:
            y, x = max(seg)
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y


# ---- line charts ----------------------------------------------------------------------


def line_chart(
    series: list[tuple[str, list[float], list[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    log: bool = False,
    marks: list[tuple[float, str]] | None = None,
    note: str = "",
) -> str:
    """A <figure> with one SVG line per (name, xs, ys); empty string when there is nothing to draw.

    log: a log10 y axis (non-positive values are left out). marks: (x, label) ticks
    drawn along the top edge (e.g. clipping events). Non-finite points break a line.
    """
    kept = []
    for name, xs, ys in series:
        pts = [
            (float(x), float(y))
            for x, y in zip(xs, ys)
            if y is not None and math.isfinite(float(y)) and (not log or float(y) > 0)
        ]
        if pts:
            kept.append((name, *thin([p[0] for p in pts], [p[1] for p in pts])))
    if not kept:
        return ""
    all_x = [x for _, xs, _ in kept for x in xs]
    all_y = [y for _, _, ys in kept for y in ys]
    sx = _Scale(min(all_x), max(all_x), LEFT, W - RIGHT)
    sy = _Scale(min(all_y), max(all_y), H - BOTTOM, TOP, log=log)
    parts = [_axes(sx, sy, title, xlabel, ylabel)]
    hover = []
    for i, (name, xs, ys) in enumerate(kept):
        color = PALETTE[i % len(PALETTE)]
        pixels = [(round(sx(x), 1), round(sy(y), 1)) for x, y in zip(xs, ys)]
        path = " ".join(f"{px},{py}" for px, py in pixels)
        if len(pixels) == 1:
            parts.append(f'<circle cx="{pixels[0][0]}" cy="{pixels[0][1]}" r="3" fill="{color}"/>')
        else:
            parts.append(f'<polyline class="line" points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        hover.append([name, color, [[px, py, fmt(x), fmt(y)] for (px, py), x, y in zip(pixels, xs, ys)]])
    for x, label in marks or []:
        if sx.a <= x <= sx.b:
            px = round(sx(x), 1)
            parts.append(
                f'<line x1="{px}" x2="{px}" y1="{TOP}" y2="{TOP + 8}" stroke="#d62728"><title>{esc(label)}</title></line>'
            )
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>{esc(name)}</span>'
        for i, (name, _, _) in enumerate(kept)
    )
    svg = (
        f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{esc(title)}" data-xlabel="{esc(xlabel)}" data-points="{esc(json.dumps(hover))}">'
        + "".join(parts)
        + "</svg>"
    )
    caption = f"<figcaption>{legend}{f'<br>{esc(note)}' if note else ''}</figcaption>"
    return f'<figure class="plot">{svg}<div class="tip"></div>{caption}</figure>'


def _axes(sx: _Scale, sy: _Scale, title: str, xlabel: str, ylabel: str) -> str:
    out = [
        f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="#fff" stroke="#999"/>',
        f'<text x="{W / 2}" y="18" text-anchor="middle" class="title">{esc(title)}</text>',
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">{esc(xlabel)}</text>',
        f'<text x="14" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})">{esc(ylabel)}</text>',
    ]
    for t in sx.ticks():
        px = round(sx(t), 1)
        out.append(f'<line x1="{px}" x2="{px}" y1="{TOP}" y2="{H - BOTTOM}" class="grid"/>')
        out.append(f'<text x="{px}" y="{H - BOTTOM + 16}" text-anchor="middle">{esc(fmt(t))}</text>')
    for t in sy.ticks():
        py = round(sy(t), 1)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py}" y2="{py}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py + 4}" text-anchor="end">{esc(fmt(t))}</text>')
    return "".join(out)


# ---- heatmaps -------------------------------------------------------------------------


def png_rgb(rgb: np.ndarray) -> bytes:
    """A PNG file of an (height, width, 3) uint8 image."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + np.ascontiguousarray(row).tobytes() for row in rgb.astype(np.uint8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def colour(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(rgb uint8 image, vmin, vmax) of positive values on a log10 viridis ramp; others EMPTY.

    The ramp spans at most 12 decades below the largest value."""
    v = np.asarray(values, float)
    ok = np.isfinite(v) & (v > 0)
    rgb = np.empty(v.shape + (3,), np.uint8)
    rgb[...] = EMPTY
    if not ok.any():
        return rgb, 0.0, 0.0
    hi = float(v[ok].max())
    lo = max(float(v[ok].min()), hi * 1e-12)
    span = max(math.log10(hi) - math.log10(lo), 1e-12)
    f = np.clip((np.log10(np.where(ok, v, hi)) - math.log10(lo)) / span, 0, 1) * (len(VIRIDIS) - 1)
    i = np.minimum(f.astype(int), len(VIRIDIS) - 2)
    frac = (f - i)[..., None]
    ramp = VIRIDIS[i] * (1 - frac) + VIRIDIS[i + 1] * frac
    rgb[ok] = np.round(ramp[ok]).astype(np.uint8)
    return rgb, lo, hi


def heatmap(matrix, title: str, xlabel: str, ylabel: str, note: str = "") -> str:
    """A <figure>: matrix[row][col] as a log-coloured image, row 0 at the bottom, with axes, a
    colour bar and (up to MAX_HOVER_CELLS cells) the value under the mouse."""
    m = np.asarray(matrix, float)
    if m.ndim != 2 or m.size == 0:
        return ""
    rows, cols = m.shape
    rgb, lo, hi = colour(m[::-1])  # image row 0 is the top: the last row of the matrix
    size = 300
    x0, y0 = LEFT, TOP
    data = f"data:image/png;base64,{base64.b64encode(png_rgb(rgb)).decode('ascii')}"
    bar, _, _ = colour(np.logspace(0, 12, 64)[::-1, None] * np.ones((1, 2)))
    bar_uri = f"data:image/png;base64,{base64.b64encode(png_rgb(bar)).decode('ascii')}"
    sx = _Scale(-0.5, cols - 0.5, x0, x0 + size)
    sy = _Scale(-0.5, rows - 0.5, y0 + size, y0)
    parts = [
        f'<text x="{x0 + size / 2 + 40}" y="18" text-anchor="middle" class="title">{esc(title)}</text>',
        f'<image x="{x0}" y="{y0}" width="{size}" height="{size}" preserveAspectRatio="none" '
        f'style="image-rendering:pixelated" href="{data}"/>',
        f'<rect x="{x0}" y="{y0}" width="{size}" height="{size}" fill="none" stroke="#999"/>',
        f'<text x="{x0 + size / 2}" y="{y0 + size + 36}" text-anchor="middle">{esc(xlabel)}</text>',
        f'<text x="14" y="{y0 + size / 2}" text-anchor="middle" transform="rotate(-90 14 {y0 + size / 2})">{esc(ylabel)}</text>',
    ]
    for t in (v for v in nice_ticks(0, cols - 1) if float(v).is_integer()):
        parts.append(f'<text x="{round(sx(t), 1)}" y="{y0 + size + 16}" text-anchor="middle">{int(t)}</text>')
    for t in (v for v in nice_ticks(0, rows - 1) if float(v).is_integer()):
        parts.append(f'<text x="{x0 - 6}" y="{round(sy(t), 1) + 4}" text-anchor="end">{int(t)}</text>')
    bx = x0 + size + 30
    parts.append(
        f'<image x="{bx}" y="{y0}" width="14" height="{size}" preserveAspectRatio="none" href="{bar_uri}"/>'
        f'<text x="{bx + 20}" y="{y0 + 10}">{esc(fmt(hi))}</text>'
        f'<text x="{bx + 20}" y="{y0 + size}">{esc(fmt(lo))}</text>'
        f'<text x="{bx + 20}" y="{y0 + size / 2}">log scale</text>'
    )
    hover = ""
    if m.size <= MAX_HOVER_CELLS:
        cells = [[None if not math.isfinite(v) else float(f"{v:.4g}") for v in row] for row in m.tolist()]
        hover = (
            f' data-cells="{esc(json.dumps(cells))}" data-box="{x0},{y0},{size}"'
            f' data-labels="{esc(json.dumps([ylabel.split()[0], xlabel.split()[0]]))}"'
        )
    width = bx + 90
    svg = (
        f'<svg class="heat" viewBox="0 0 {width} {y0 + size + 45}" width="{width}" height="{y0 + size + 45}" '
        f'role="img" aria-label="{esc(title)}"{hover}>' + "".join(parts) + "</svg>"
    )
    caption = f"<figcaption>{esc(note)}</figcaption>" if note else ""
    return f'<figure class="plot">{svg}<div class="tip"></div>{caption}</figure>'


# ---- hover --------------------------------------------------------------------------------

HOVER_JS = """
(function () {
  function svgX(svg, e) {
    var r = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
    return [(e.clientX - r.left) * vb.width / r.width, (e.clientY - r.top) * vb.height / r.height];
  }
  function show(tip, svg, e, text) {
    tip.textContent = text;
    tip.style.display = text ? "block" : "none";
    var r = svg.getBoundingClientRect(), f = svg.parentNode.getBoundingClientRect();
    tip.style.left = (e.clientX - f.left + 14) + "px";
    tip.style.top = (e.clientY - f.top + 10) + "px";
  }
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var series = JSON.parse(svg.getAttribute("data-points")), tip = svg.parentNode.querySelector(".tip");
    var ns = "http://www.w3.org/2000/svg", dots = series.map(function (s) {
      var c = document.createElementNS(ns, "circle");
      c.setAttribute("r", "4"); c.setAttribute("fill", s[1]); c.style.display = "none";
      svg.appendChild(c); return c;
    });
    svg.addEventListener("mousemove", function (e) {
      var x = svgX(svg, e)[0], lines = [];
      series.forEach(function (s, i) {
        var pts = s[2], lo = 0, hi = pts.length - 1;
        while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (pts[mid][0] < x) lo = mid; else hi = mid; }
        var p = Math.abs(pts[lo][0] - x) <= Math.abs(pts[hi][0] - x) ? pts[lo] : pts[hi];
        if (Math.abs(p[0] - x) > 25) { dots[i].style.display = "none"; return; }
        dots[i].setAttribute("cx", p[0]); dots[i].setAttribute("cy", p[1]); dots[i].style.display = "";
        lines.push(s[0] + ": " + p[3] + "  (" + svg.getAttribute("data-xlabel") + " " + p[2] + ")");
      });
      show(tip, svg, e, lines.join("\\n"));
    });
    svg.addEventListener("mouseleave", function () {
      tip.style.display = "none"; dots.forEach(function (d) { d.style.display = "none"; });
    });
  });
  document.querySelectorAll("svg.heat[data-cells]").forEach(function (svg) {
    var cells = JSON.parse(svg.getAttribute("data-cells")), tip = svg.parentNode.querySelector(".tip");
    var box = svg.getAttribute("data-box").split(",").map(Number), names = JSON.parse(svg.getAttribute("data-labels"));
    var rows = cells.length, cols = cells[0].length;
    svg.addEventListener("mousemove", function (e) {
      var p = svgX(svg, e), c = Math.floor((p[0] - box[0]) / box[2] * cols), r = rows - 1 - Math.floor((p[1] - box[1]) / box[2] * rows);
      if (c < 0 || c >= cols || r < 0 || r >= rows) { show(tip, svg, e, ""); return; }
      var v = cells[r][c];
      show(tip, svg, e, names[0] + " = " + r + ", " + names[1] + " = " + c + ": " + (v === null ? "n/a" : v));
    });
    svg.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
})();
"""
