"""The project report (``preceptor report``): one document a team lead reads.

A report is a list of sections from a registry. Each section is built by a function
``build(project, opts: ReportOptions) -> Section | None`` (None = nothing to show) and
registered with an order::

    from preceptor.engine.report import Section, register_section

    def _judges(project, opts):
        return Section("judges", "Judge statistics", markdown="| ... |", csv_rows=[{...}])

    register_section("judges", 50, _judges)

Built-in sections (orders 0–40, 90): overview, automatic metrics per system (mean, 95 %
CI, n; chart), win rates by metric, training runs (curves; eval-loss perplexity), best and
worst examples side by side, the per-row table. Modules named ``preceptor.engine.*_report``
(e.g. ``stats_report``) are imported when a report is built, so they can register theirs.

A section gives ``markdown`` (GitHub tables; images as ``![alt](NAME.svg)`` naming one of
its ``images``), optionally its own ``html`` (else the markdown is converted), and
optionally ``csv_rows`` (written to a CSV next to the report). Files are timestamped in
the project's ``reports/`` folder and never overwrite an existing file.
"""

from __future__ import annotations

import base64
import csv
import html as _html
import importlib
import itertools
import math
import pkgutil
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preceptor.db import metrics as q
from preceptor.db import runs as q_runs
from preceptor.engine import metrics as M
from preceptor.errors import PreceptorError

FORMATS = ("md", "html", "csv")


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


Builder = Callable[[Any, ReportOptions], "Section | None"]
_REGISTRY: dict[str, tuple[int, Builder]] = {}


def register_section(key: str, order: int, build: Builder) -> None:
    """Add (or replace) the section ``key``; sections are rendered by ascending ``order``."""
    _REGISTRY[key] = (order, build)


def registered() -> list[tuple[str, int]]:
    return sorted(((k, o) for k, (o, _) in _REGISTRY.items()), key=lambda x: (x[1], x[0]))


def _load_extensions() -> None:
    import preceptor.engine as engine_pkg

    for mod in pkgutil.iter_modules(engine_pkg.__path__):
        if mod.name.endswith("_report"):
            importlib.import_module(f"preceptor.engine.{mod.name}")


# --- resolved context shared by the built-in sections ----------------------------------------

@dataclass
class _Ctx:
    reference: str
    split: str
    collection: str | None
    systems: list[str] | None
    metric: str
    seed: int


def resolve(project: Any, opts: ReportOptions) -> _Ctx:
    from preceptor.engine.evaluate import settings

    st = settings(project)
    reference = opts.reference
    if reference is None:
        used = q.references_in_use(project.store)
        reference = st.reference if (st.reference in used or not used) else used[0]
    return _Ctx(reference, opts.split or st.split, opts.collection, list(opts.systems) if opts.systems else None,
                opts.metric or st.win_metric, st.seed if opts.seed is None else opts.seed)


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def _ci(m: dict[str, Any]) -> str:
    if m.get("n", 0) == 0:
        return "–"
    if m.get("lo") is None:
        return f"{_fmt(m['mean'])} (n too small for a CI)"
    return f"{_fmt(m['mean'])} [{_fmt(m['lo'])}, {_fmt(m['hi'])}]"


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(x: Any) -> str:
        return str("" if x is None else x).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# --- charts: SVG for files, text for the terminal ---------------------------------------------

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


def _esc(s: Any) -> str:
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
             f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{_esc(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{W - 10}" y2="{top + plot_h}" stroke="#333"/>']
    for k in range(5):
        v = top_v * k / 4
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v, 2)}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{W - 10}" y2="{y(v):.1f}" stroke="#ddd"/>')
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, (name, pts) in enumerate(series.items()):
            mean, lo, hi = pts[gi]
            if mean is None:
                continue
            x = gx + si * bw
            parts.append(f'<rect x="{x:.1f}" y="{y(mean):.1f}" width="{bw * 0.9:.1f}" height="{top + plot_h - y(mean):.1f}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{_esc(name)} {_esc(g)}: {_fmt(mean)}</title></rect>')
            if lo is not None and hi is not None:
                cx = x + bw * 0.45
                parts.append(f'<line x1="{cx:.1f}" y1="{y(lo):.1f}" x2="{cx:.1f}" y2="{y(hi):.1f}" stroke="#000"/>')
        lx, ly = left + gi * gw + gw / 2, top + plot_h + 14
        parts.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" transform="rotate(-30 {lx:.1f} {ly})">{_esc(g)}</text>')
    for si, name in enumerate(series):
        lx = left + si * 150
        parts.append(f'<rect x="{lx}" y="{H - 22}" width="10" height="10" fill="{PALETTE[si % len(PALETTE)]}"/>')
        parts.append(f'<text x="{lx + 14}" y="{H - 13}">{_esc(name[:20])}</text>')
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
             f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{_esc(title)}</text>',
             f'<line x1="{left}" y1="{top + ph}" x2="{W - 10}" y2="{top + ph}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
             f'<text x="{W / 2}" y="{top + ph + 28}" text-anchor="middle">{_esc(xlabel)}</text>']
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        parts.append(f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{_fmt(v, 2)}</text>')
    parts.append(f'<text x="{left}" y="{top + ph + 14}" text-anchor="middle">{_fmt(x0, 0)}</text>')
    parts.append(f'<text x="{W - 10}" y="{top + ph + 14}" text-anchor="end">{_fmt(x1, 0)}</text>')
    for si, (name, s) in enumerate(series.items()):
        good = [(x, v) for x, v in s if v is not None and math.isfinite(v)]
        if not good:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in good)
        color = PALETTE[si % len(PALETTE)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{left + 8 + (si % 4) * 180}" y="{H - 6 - (si // 4) * 12}" fill="{color}">{_esc(name[:28])}</text>')
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
        ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None else ""
        lines.append(f"{label.ljust(lw)}  {bar.ljust(width)}  {_fmt(v)}{ci}")
    return "\n".join(lines)


# --- built-in sections ------------------------------------------------------------------------

def _overview(project: Any, opts: ReportOptions) -> Section:
    ctx = resolve(project, opts)
    from preceptor.engine.evaluate import settings

    st = settings(project)
    lines = [
        f"Project **{_esc(project.settings.name)}** (`{project.root}`), generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Reference: **{ctx.reference}** · split: **{ctx.split}**"
        + (f" · collection: **{ctx.collection}**" if ctx.collection else "")
        + f" · domain pack: **{st.domain}** · win metric: **{ctx.metric}**.",
        "",
        "Means carry a 95 % Student-t confidence interval and n (items where the metric applies; "
        "domain metrics do not apply where the reference mentions no facet, key term or triple). "
        "All metrics are on a 0–1 scale (BLEU = sacrebleu / 100) except perplexity (lower is better).",
    ]
    return Section("overview", "Overview", "\n".join(lines))


def _bertscore_note(project: Any, ctx: _Ctx, outputs: list[int]) -> str:
    metas = q.metas(project.store, outputs, "bertscore_f1", ctx.reference)
    if not metas:
        return ""
    by_lang: dict[str, list[bool]] = {}
    for m in metas.values():
        by_lang.setdefault(str(m.get("lang", "?")), []).append(bool(m.get("rescaled")))
    parts = []
    for lang, flags in sorted(by_lang.items()):
        n_r = sum(flags)
        state = "rescaled with a baseline" if n_r == len(flags) else ("NOT rescaled (no baseline for the encoder)" if n_r == 0 else f"{n_r} of {len(flags)} rescaled")
        parts.append(f"{lang}: {len(flags)} items, {state}")
    return "BERTScore figures: " + "; ".join(parts) + ". Unrescaled BERTScore sits high (≈0.6–1.0) and is only comparable across systems, not to published rescaled numbers."


def _metrics_section(project: Any, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluate import per_row, system_table
    from preceptor.engine.metrics.textual import corpus_bleu

    ctx = resolve(project, opts)
    table = system_table(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    if not table:
        return Section("metrics", "Automatic metrics",
                       f"No stored metric values for reference **{ctx.reference}** on split {ctx.split}. Run `preceptor eval` first.")
    names = [m for m in M.names() if any(m in t["metrics"] for t in table)]
    systems = [t["system"] for t in table]
    rows = []
    csv_rows = []
    for m in names:
        mi = M.info(m)
        row = [f"{mi.label}{'' if mi.higher_is_better else ' (lower is better)'}"]
        for t in table:
            s = t["metrics"].get(m, {"n": 0})
            row.append(f"{_ci(s)} n={s.get('n', 0)}")
            csv_rows.append({"system": t["system"], "metric": m, "mean": s.get("mean"), "ci_low": s.get("lo"),
                             "ci_high": s.get("hi"), "n": s.get("n", 0), "reference": ctx.reference})
        rows.append(row)
    # corpus BLEU per system (computed from the texts, not stored per output)
    prow, _ = per_row(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    if "bleu" in names and prow:
        crow = ["Corpus BLEU"]
        for s in systems:
            rs = [r for r in prow if r["system"] == s and r["reference"]]
            cb = corpus_bleu([r["prediction"] for r in rs], [r["reference"] for r in rs]) if rs else None
            crow.append(f"{_fmt(cb)} n={len(rs)}")
            csv_rows.append({"system": s, "metric": "corpus_bleu", "mean": cb, "ci_low": None, "ci_high": None,
                             "n": len(rs), "reference": ctx.reference})
        rows.append(crow)
    bounded = [m for m in names if M.info(m).higher_is_better]
    svg = bar_chart_svg(f"Metrics vs {ctx.reference} (mean, 95 % CI)", [M.info(m).label for m in bounded],
                        {t["system"]: [(t["metrics"][m]["mean"], t["metrics"][m]["lo"], t["metrics"][m]["hi"]) for m in bounded]
                         for t in table}, ymax=1.0)
    note = _bertscore_note(project, ctx, [r["output_id"] for r in prow])
    md = "\n\n".join(x for x in [
        _md_table(["metric", *systems], rows),
        note,
        "![Metrics per system](metrics.svg)",
    ] if x)
    return Section("metrics", f"Automatic metrics (reference: {ctx.reference})", md, csv_rows=csv_rows,
                   images={"metrics.svg": svg})


def _win_section(project: Any, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluate import settings, system_table, win_rate

    ctx = resolve(project, opts)
    st = settings(project)
    table = system_table(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    systems = [t["system"] for t in table]
    if len(systems) < 2:
        return None
    names = [m for m in M.names() if any(t["metrics"].get(m, {}).get("n") for t in table)]
    order = [ctx.metric] + [m for m in names if m != ctx.metric] if ctx.metric in names else names
    rows, csv_rows = [], []
    for a, b in itertools.combinations(systems, 2):
        for m in order:
            w = win_rate(project, a, b, metric=m, reference=ctx.reference, split=ctx.split, collection=ctx.collection,
                         n=opts.n, seed=ctx.seed, margin=st.tie_margin)
            if not w["n"]:
                continue
            rows.append([f"{a} vs {b}", M.info(m).label, f"{_fmt(w['win_rate'])} [{_fmt(w['lo'])}, {_fmt(w['hi'])}]",
                         w["wins"], w["ties"], w["losses"], w["n"]])
            csv_rows.append(w)
    if not rows:
        return None
    sample = f" Sampled: {opts.n} items per pair, seed {ctx.seed}." if opts.n else ""
    md = (f"Per item, the system with the higher score wins (lower for perplexity); differences up to "
          f"{st.tie_margin} are ties. Win rate = (wins + ties / 2) / n for the first system, with a Wilson 95 % interval.{sample}\n\n"
          + _md_table(["pair", "metric", "win rate [95 % CI]", "wins", "ties", "losses", "n"], rows))
    return Section("win_rates", "Win rates by metric", md, csv_rows=csv_rows)


def _training_section(project: Any, opts: ReportOptions) -> Section | None:
    from preceptor.engine.metrics.ppl import from_eval_loss

    runs = q_runs.list_runs(project.store, limit=opts.runs)
    if not runs:
        return None
    rows, csv_rows, images, md_imgs = [], [], {}, []
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for run in runs:
        ms = q_runs.metrics(project.store, run.id)
        last: dict[str, float] = {}
        for step, name, value in ms:
            if value is None:
                continue
            last[name] = value
            curves.setdefault(name, {}).setdefault(f"run {run.id} ({run.kind})", []).append((step, value))
            csv_rows.append({"run_id": run.id, "kind": run.kind, "step": step, "name": name, "value": value})
        ppl = last.get("perplexity") or from_eval_loss(last.get("eval_loss"))
        rows.append([run.id, run.kind, run.status, _fmt(last.get("loss")), _fmt(last.get("eval_loss")), _fmt(ppl),
                     run.ended_at or run.started_at or run.created_at])
    for name in ("loss", "eval_loss", "perplexity"):
        if name in curves:
            svg = line_chart_svg(f"{name} by step", curves[name])
            if svg:
                images[f"train_{name}.svg"] = svg
                md_imgs.append(f"![{name}](train_{name}.svg)")
    md = (_md_table(["run", "kind", "status", "last loss", "last eval loss", "eval perplexity", "time"], rows)
          + "\n\nEval perplexity = exp(eval loss) unless the run logged perplexity itself.\n\n" + "\n\n".join(md_imgs))
    return Section("training", "Training runs (latest)", md.strip(), csv_rows=csv_rows, images=images)


def _clip(text: str | None, n: int = 600) -> str:
    t = (text or "").strip()
    return t if len(t) <= n else t[:n] + " …"


def _examples_section(project: Any, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluate import per_row

    ctx = resolve(project, opts)
    rows, names = per_row(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    if ctx.metric not in names or not rows:
        return None
    hib = M.info(ctx.metric).higher_is_better
    by_prompt: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    scored = []
    for pid, rs in by_prompt.items():
        vals = [r[ctx.metric] for r in rs if r.get(ctx.metric) is not None]
        if vals:
            scored.append((sum(vals) / len(vals), pid))
    if not scored:
        return None
    scored.sort(key=lambda x: (-x[0] if hib else x[0], x[1]))
    k = max(1, opts.examples)
    best, worst = scored[:k], [s for s in scored[::-1][:k] if s not in scored[:k]]
    parts = [f"Items ranked by the mean {M.info(ctx.metric).label} of all systems; outputs side by side."]
    for label, chosen in (("Best", best), ("Worst", worst)):
        for mean, pid in chosen:
            rs = by_prompt[pid]
            parts.append(f"#### {label}: prompt {pid} (mean {M.info(ctx.metric).label} {_fmt(mean)})")
            parts.append(f"**Prompt.** {_clip(rs[0]['prompt'], 400)}")
            headers = ["reference", *[f"{r['system']} ({_fmt(r.get(ctx.metric))})" for r in rs]]
            parts.append(_md_table(headers, [[_clip(rs[0]["reference"]), *[_clip(r["prediction"]) for r in rs]]]))
    return Section("examples", "Best and worst examples", "\n\n".join(parts))


def _rows_section(project: Any, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluate import per_row

    ctx = resolve(project, opts)
    rows, names = per_row(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    if not rows:
        return None
    return Section("rows", "Per-row values",
                   f"{len(rows)} rows (prompt, reference, prediction and {len(names)} metrics) are in the per-row CSV: `ROWS_CSV`.",
                   csv_rows=rows)


register_section("overview", 0, _overview)
register_section("metrics", 10, _metrics_section)
register_section("win_rates", 20, _win_section)
register_section("training", 30, _training_section)
register_section("examples", 40, _examples_section)
register_section("rows", 90, _rows_section)


# --- rendering -------------------------------------------------------------------------------

def build_sections(project: Any, opts: ReportOptions | None = None) -> list[Section]:
    """Every registered section's content, in order (a failing section becomes an error note)."""
    opts = opts or ReportOptions()
    _load_extensions()
    out = []
    for key, _order in registered():
        build = _REGISTRY[key][1]
        try:
            sec = build(project, opts)
        except PreceptorError as exc:
            sec = Section(key, key.replace("_", " ").title(), f"*This section could not be built: {exc.title}: {exc.message}*")
        if sec is not None:
            out.append(sec)
    return out


def _inline(text: str) -> str:
    t = _esc(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![*\w])\*([^*]+)\*(?!\w)", r"<em>\1</em>", t)
    return t


def markdown_to_html(md: str, images: dict[str, str] | None = None) -> str:
    """The small markdown subset sections use: headings, tables, images, lists, paragraphs."""
    images = images or {}
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        m = re.fullmatch(r"(#{1,6})\s+(.*)", line)
        if m:
            lvl = len(m.group(1))
            out.append(f"<h{lvl}>{_inline(m.group(2))}</h{lvl}>")
            i += 1
            continue
        m = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if m:
            src = m.group(2)
            if src in images:
                data = base64.b64encode(images[src].encode()).decode()
                src = f"data:image/svg+xml;base64,{data}"
            out.append(f'<p><img alt="{_esc(m.group(1))}" src="{_esc(src)}"></p>')
            i += 1
            continue
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1

            def cells(row: str) -> list[str]:
                return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])]

            head = cells(block[0])
            body = [cells(r) for r in block[2:]] if len(block) > 1 and set(block[1]) <= set("|-: ") else [cells(r) for r in block[1:]]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            continue
        if re.match(r"\s*[-*]\s+", line):
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + "</ul>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(("|", "#")):
            para.append(lines[i])
            i += 1
        out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f4f4f4}code{background:#f4f4f4;padding:0 3px}img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:4px}"""


def _exclusive(path: Path) -> Path:
    """``path`` or ``path`` with -2, -3… so nothing is ever overwritten (created atomically)."""
    stem, suffix = path.stem, path.suffix
    for k in itertools.count(1):
        cand = path if k == 1 else path.with_name(f"{stem}-{k}{suffix}")
        try:
            cand.open("x").close()
            return cand
        except FileExistsError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def build_report(project: Any, fmt: str = "md", out_dir: Path | str | None = None,
                 opts: ReportOptions | None = None) -> Path:
    """Write the report as md, html or csv (the per-row CSV); returns the main file's path.

    Companion files share the timestamped stem: ``<stem>-rows.csv`` (the per-row table),
    ``<stem>-<section>.csv`` for other sections' tables, and for markdown the charts in
    ``<stem>_files/``. HTML embeds its charts. Existing files are never overwritten.
    """
    if fmt not in FORMATS:
        raise PreceptorError("Unknown report format", f"--format {fmt!r}", f"Use one of {', '.join(FORMATS)}.")
    out = Path(out_dir) if out_dir else project.reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(project, opts)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    main = _exclusive(out / f"report-{stamp}.{fmt}")
    stem = main.stem
    rows_sec = next((s for s in sections if s.key == "rows"), None)
    if fmt == "csv":
        if rows_sec is None or not rows_sec.csv_rows:
            main.unlink()
            raise PreceptorError("Nothing to report", "no stored metric values for the selected outputs",
                                 "Run `preceptor eval` first.")
        _write_csv(main, rows_sec.csv_rows)
        for s in sections:
            if s.csv_rows and s.key != "rows":
                _write_csv(_exclusive(out / f"{stem}-{s.key}.csv"), s.csv_rows)
        return main
    rows_name = ""
    if rows_sec is not None and rows_sec.csv_rows:
        rows_path = _exclusive(out / f"{stem}-rows.csv")
        _write_csv(rows_path, rows_sec.csv_rows)
        rows_name = rows_path.name
    for s in sections:
        if s.csv_rows and s.key not in ("rows",):
            _write_csv(_exclusive(out / f"{stem}-{s.key}.csv"), s.csv_rows)
    title = f"preceptor report — {project.settings.name}"
    if fmt == "md":
        files_dir = out / f"{stem}_files"
        parts = [f"# {title}"]
        for s in sections:
            body = s.markdown.replace("ROWS_CSV", rows_name)
            if s.images:
                files_dir.mkdir(exist_ok=True)
                for name, svg in s.images.items():
                    (files_dir / f"{s.key}-{name}").write_text(svg, encoding="utf-8")
                    body = body.replace(f"]({name})", f"]({files_dir.name}/{s.key}-{name})")
            parts.append(f"## {s.title}\n\n{body}")
        main.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        return main
    body = []
    for s in sections:
        inner = s.html if s.html is not None else markdown_to_html(s.markdown.replace("ROWS_CSV", rows_name), s.images)
        body.append(f'<section id="{_esc(s.key)}"><h2>{_esc(s.title)}</h2>\n{inner}</section>')
    main.write_text(f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
                    f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n",
                    encoding="utf-8")
    return main


def _text_table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def terminal_summary(project: Any, opts: ReportOptions | None = None) -> str:
    """Per-system table and a text bar chart of the main metric, for the terminal."""
    from preceptor.engine.evaluate import system_table

    ctx = resolve(project, opts or ReportOptions())
    table = system_table(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    if not table:
        return f"No stored metric values for reference {ctx.reference} (split {ctx.split}). Run `preceptor eval` first."
    names = [m for m in M.names() if any(m in t["metrics"] for t in table)]
    def cell(s: dict[str, Any]) -> str:
        ci = f" [{_fmt(s['lo'])}, {_fmt(s['hi'])}]" if s.get("lo") is not None else ""
        return f"{_fmt(s['mean'])}{ci} n={s['n']}"

    rows = [[M.info(m).label] + [cell(t["metrics"][m]) for t in table] for m in names]
    out = [f"Reference {ctx.reference}, split {ctx.split}: mean [95 % CI] n",
           _text_table(rows, ["metric", *[t["system"] for t in table]])]
    chart_metric = ctx.metric if ctx.metric in names else names[0]
    items = [(t["system"], t["metrics"][chart_metric]["mean"], t["metrics"][chart_metric]["lo"], t["metrics"][chart_metric]["hi"]) for t in table]
    out += ["", f"{M.info(chart_metric).label} by system:",
            text_bars(items, vmax=1.0 if M.info(chart_metric).higher_is_better else None)]
    return "\n".join(out)
