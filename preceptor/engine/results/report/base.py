"""What every report section is made of: ``Section``, the options, the resolved scope, tables and charts."""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from preceptor.db import metrics as q

if TYPE_CHECKING:
    from preceptor.project import Project


@dataclass
class Section:
    key: str
    title: str
    markdown: str
    html: str | None = None
    csv_rows: list[dict[str, Any]] | None = None
    images: dict[str, str] = field(default_factory=dict)  # file name (NAME.svg) -> SVG text

@dataclass
class ReportOptions:
    reference: str | None = None  # None: the [eval] reference if it has values, else the most used one
    split: str | None = None  # None: the [eval] split
    collection: str | None = None
    systems: Sequence[str] | None = None
    metric: str | None = None  # win-rate / example metric (None: [eval] win_metric)
    n: int | None = None  # sample size for win rates (None: every shared item)
    seed: int | None = None
    examples: int = 3
    runs: int = 5

@dataclass
class Scope:
    reference: str
    split: str
    collection: str | None
    systems: list[str] | None
    metric: str
    seed: int

def resolve(project: Project, opts: ReportOptions) -> Scope:
    from preceptor.engine.evaluation.evaluate import settings

    st = settings(project)
    reference = opts.reference
    if reference is None:
        used = q.references_in_use(project.store)
        reference = st.reference if (st.reference in used or not used) else used[0]
    return Scope(reference, opts.split or st.split, opts.collection, list(opts.systems) if opts.systems else None,
                opts.metric or st.win_metric, st.seed if opts.seed is None else opts.seed)

def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"

def ci_text(m: dict[str, Any]) -> str:
    if m.get("n", 0) == 0:
        return "–"
    if m.get("lo") is None:
        return f"{fmt(m['mean'])} (n too small for a CI)"
    return f"{fmt(m['mean'])} [{fmt(m['lo'])}, {fmt(m['hi'])}]"

def md_table(headers: list[str], rows: list[list[Any]], missing: str = "") -> str:
    """A GitHub Markdown table (``|`` escaped, newlines folded; None shown as ``missing``)."""
    def cell(x: Any) -> str:
        return str(missing if x is None else x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]

def esc(s: Any) -> str:
    return _html.escape(str(s), quote=True)

def bar_chart_svg(title: str, groups: list[str], series: dict[str, list[tuple[float | None, float | None, float | None]]],
                  ymax: float | None = None) -> str:
    """Grouped bars (one group per metric, one bar per system) with CI whiskers."""
    W, H, left, top, bottom = 760, 340, 50, 30, 110
    vals = [v for s in series.values() for t in s for v in t if v is not None]
    top_v = ymax if ymax is not None else (max(vals) * 1.1 if vals else 1.0) or 1.0
    plot_w, plot_h = W - left - 10, H - top - bottom
    gw = plot_w / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))

    def y(v: float) -> float:
        return top + plot_h * (1 - max(0.0, min(v, top_v)) / top_v)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{esc(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{W - 10}" y2="{top + plot_h}" stroke="#333"/>']
    for k in range(5):
        v = top_v * k / 4
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{fmt(v, 2)}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{W - 10}" y2="{y(v):.1f}" stroke="#ddd"/>')
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, (name, pts) in enumerate(series.items()):
            mean, lo, hi = pts[gi]
            if mean is None:
                continue
            x = gx + si * bw
            parts.append(f'<rect x="{x:.1f}" y="{y(mean):.1f}" width="{bw * 0.9:.1f}" height="{top + plot_h - y(mean):.1f}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{esc(name)} {esc(g)}: {fmt(mean)}</title></rect>')
            if lo is not None and hi is not None:
                cx = x + bw * 0.45
                parts.append(f'<line x1="{cx:.1f}" y1="{y(lo):.1f}" x2="{cx:.1f}" y2="{y(hi):.1f}" stroke="#000"/>')
        lx, ly = left + gi * gw + gw / 2, top + plot_h + 14
        parts.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" transform="rotate(-30 {lx:.1f} {ly})">{esc(g)}</text>')
    for si, name in enumerate(series):
        lx = left + si * 150
        parts.append(f'<rect x="{lx}" y="{H - 22}" width="10" height="10" fill="{PALETTE[si % len(PALETTE)]}"/>')
        parts.append(f'<text x="{lx + 14}" y="{H - 13}">{esc(name[:20])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)

def line_chart_svg(title: str, series: dict[str, list[tuple[float, float]]], xlabel: str = "step") -> str:
    W, H, left, top, bottom = 760, 280, 55, 30, 50
    pts = [p for s in series.values() for p in s if p[1] is not None and math.isfinite(p[1])]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    pw, ph = W - left - 10, H - top - bottom

    def sx(x: float) -> float:
        return left + pw * (x - x0) / (x1 - x0)

    def sy(v: float) -> float:
        return top + ph * (1 - (v - y0) / (y1 - y0))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{esc(title)}</text>',
             f'<line x1="{left}" y1="{top + ph}" x2="{W - 10}" y2="{top + ph}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
             f'<text x="{W / 2}" y="{top + ph + 28}" text-anchor="middle">{esc(xlabel)}</text>']
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        parts.append(f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{fmt(v, 2)}</text>')
    parts.append(f'<text x="{left}" y="{top + ph + 14}" text-anchor="middle">{fmt(x0, 0)}</text>')
    parts.append(f'<text x="{W - 10}" y="{top + ph + 14}" text-anchor="end">{fmt(x1, 0)}</text>')
    for si, (name, s) in enumerate(series.items()):
        good = [(x, v) for x, v in s if v is not None and math.isfinite(v)]
        if not good:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in good)
        color = PALETTE[si % len(PALETTE)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{left + 8 + (si % 4) * 180}" y="{H - 6 - (si // 4) * 12}" fill="{color}">{esc(name[:28])}</text>')
    parts.append("</svg>")
    return "\n".join(parts)

def text_bars(items: list[tuple[str, float | None, float | None, float | None]], width: int = 30,
              vmax: float | None = None) -> str:
    """A terminal bar chart: label, bar, value and CI per line."""
    vals = [v for _, v, _, _ in items if v is not None]
    if not vals:
        return ""
    top = vmax if vmax is not None else max(vals) or 1.0
    lw = max(len(label) for label, *_ in items)
    lines = []
    for label, v, lo, hi in items:
        if v is None:
            lines.append(f"{label.ljust(lw)}  {'':{width}}  –")
            continue
        frac = max(0.0, min(v / top, 1.0)) if top else 0.0
        full, part = divmod(int(round(frac * width * 8)), 8)
        bar = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
        ci = f" [{fmt(lo)}, {fmt(hi)}]" if lo is not None else ""
        lines.append(f"{label.ljust(lw)}  {bar.ljust(width)}  {fmt(v)}{ci}")
    return "\n".join(lines)

def clip(text: str | None, n: int = 600) -> str:
    t = (text or "").strip()
    return t if len(t) <= n else t[:n] + " …"


def forest_svg(title: str, rows: list[tuple[str, float | None, float | None, float | None, int]],
               ref: float | None = None, lo_bound: float | None = None, hi_bound: float | None = None) -> str:
    """A forest plot: one row per figure (label, value, CI low, CI high, n), the interval as a
    line, the value as a dot, ``ref`` as a dashed line (50 % for win rates, 1000 for Elo)."""
    from xml.sax.saxutils import escape

    W, left, right, top, row_h = 760, 260, 70, 34, 22
    H = top + row_h * max(1, len(rows)) + 30
    vals = [v for _, *xs, _n in rows for v in xs if v is not None]
    lo_v = lo_bound if lo_bound is not None else (min([*vals, *( [ref] if ref is not None else [])]) if vals else 0.0)
    hi_v = hi_bound if hi_bound is not None else (max([*vals, *( [ref] if ref is not None else [])]) if vals else 1.0)
    if hi_v - lo_v <= 1e-12:
        lo_v, hi_v = lo_v - 1.0, hi_v + 1.0
    plot_w = W - left - right

    def x(v: float) -> float:
        return left + plot_w * (min(max(v, lo_v), hi_v) - lo_v) / (hi_v - lo_v)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>']
    if ref is not None:
        out.append(f'<line x1="{x(ref):.1f}" y1="{top - 6}" x2="{x(ref):.1f}" y2="{H - 24}" stroke="#888" stroke-dasharray="4 3"/>')
    for i, (label, v, lo, hi, n) in enumerate(rows):
        yy = top + row_h * i + row_h / 2
        out.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<text x="{W - right + 6}" y="{yy + 4:.1f}">n={n}</text>')
        if lo is not None and hi is not None:
            out.append(f'<line x1="{x(lo):.1f}" y1="{yy:.1f}" x2="{x(hi):.1f}" y2="{yy:.1f}" stroke="#357" stroke-width="2"/>')
        if v is not None:
            out.append(f'<circle cx="{x(v):.1f}" cy="{yy:.1f}" r="4" fill="#c33"/>')
        else:
            out.append(f'<text x="{left + 4}" y="{yy + 4:.1f}" fill="#888">n too small</text>')
    out.append(f'<text x="{left}" y="{H - 8}">{lo_v:g}</text><text x="{W - right}" y="{H - 8}" text-anchor="end">{hi_v:g}</text>')
    out.append("</svg>")
    return "\n".join(out)
