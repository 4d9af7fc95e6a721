"""A dependency-free line plot written as SVG (the demo's plot file; no matplotlib needed)."""
from __future__ import annotations

from typing import Sequence

__all__ = ["line_plot_svg"]

_COLORS = ("#555555", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def line_plot_svg(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], path: str,
                  title: str, xlabel: str, ylabel: str,
                  hline: tuple[str, float] | None = None) -> None:
    """Write ``series`` (``(label, xs, ys)`` each, drawn as lines with markers) to ``path``
    as an SVG of 640x400 px, with axes, ticks, a legend and an optional labelled horizontal
    line ``hline = (label, y)``."""
    w, h, left, right, top, bottom = 640, 400, 70, 20, 40, 55
    xs = [x for _, sx, _ in series for x in sx]
    ys = [y for _, _, sy in series for y in sy] + ([hline[1]] if hline else [])
    x0, x1 = min(xs + [0.0]), max(xs) * 1.05 if xs else 1.0
    pad = (max(ys) - min(ys)) * 0.1 or 1.0
    y0, y1 = min(ys) - pad, max(ys) + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0 or 1.0) * (w - left - right)

    def py(y: float) -> float:
        return h - bottom - (y - y0) / (y1 - y0 or 1.0) * (h - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" '
           f'stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 15}" text-anchor="middle">{xlabel}</text>',
           f'<text x="18" y="{(top + h - bottom) / 2}" text-anchor="middle" '
           f'transform="rotate(-90 18 {(top + h - bottom) / 2})">{ylabel}</text>']
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{px(t):.1f}" y1="{h - bottom}" x2="{px(t):.1f}" '
                   f'y2="{h - bottom + 5}" stroke="black"/>')
        out.append(f'<text x="{px(t):.1f}" y="{h - bottom + 18}" '
                   f'text-anchor="middle">{t:.3g}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left - 5}" y1="{py(t):.1f}" x2="{w - right}" y2="{py(t):.1f}" '
                   f'stroke="#dddddd"/>')
        out.append(f'<text x="{left - 8}" y="{py(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    if hline is not None:
        out.append(f'<line x1="{left}" y1="{py(hline[1]):.1f}" x2="{w - right}" '
                   f'y2="{py(hline[1]):.1f}" stroke="black" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{w - right - 4}" y="{py(hline[1]) - 5:.1f}" '
                   f'text-anchor="end">{hline[0]}</text>')
    for i, (label, sx, sy) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(sx, sy))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{color}"/>'
                for x, y in zip(sx, sy)]
        ly = top + 10 + 18 * i
        out.append(f'<line x1="{left + 15}" y1="{ly}" x2="{left + 40}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{left + 46}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")
