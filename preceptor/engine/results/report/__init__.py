"""The project report (``preceptor report``): one document a team lead reads.

A report is the list of sections in :data:`SECTIONS`, in order. Each section is built by a
function ``build(project, opts: ReportOptions) -> Section | None`` (None = nothing to show):
the report's own (:mod:`.core`: overview, automatic metrics per system with 95 % CIs and a
chart, win rates by metric, training runs, best and worst examples, the per-row table), the
gains section (:mod:`.gains`: each trained system vs its parent and the teacher), the
judging sections (:mod:`.judging`: win rates, Bradley–Terry, agreement, bias, API spend) and
the embedding section (:mod:`.embedding`). Another section can be added at run time with
:func:`register_section` (key, order, builder).

A section gives ``markdown`` (GitHub tables; images as ``![alt](NAME.svg)`` naming one of
its ``images``), optionally its own ``html`` (else the markdown is converted), and
optionally ``csv_rows`` (written to a CSV next to the report). Files are timestamped in
the project's ``reports/`` folder and never overwrite an existing file.
"""

from __future__ import annotations

import base64
import csv
import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from preceptor.engine.evaluation import metrics as M
from preceptor.engine.results.report import core, embedding, gains, judging
from preceptor.engine.results.report.base import (
    ReportOptions,
    Section,
    esc,
    fmt,
    resolve,
    text_bars,
)
from preceptor.errors import PreceptorError

Builder = Callable[[Any, ReportOptions], "Section | None"]

# (key, order, builder): every section of the report, listed here (rendered by ascending order)
SECTIONS: list[tuple[str, int, Builder]] = [
    ("overview", 0, core.overview_section),
    ("metrics", 10, core.metrics_section),
    ("win_rates", 20, core.metric_wins_section),
    ("gains", 21, gains.gains_section),
    ("judge_win_rates", 22, judging.win_rates_section),
    ("judge_league", 24, judging.league_section),
    ("judge_agreement", 26, judging.agreement_section),
    ("judge_bias", 28, judging.bias_section),
    ("training", 30, core.training_section),
    ("embedding", 35, embedding.embedding_section),
    ("examples", 40, core.examples_section),
    ("api_spend", 80, judging.spend_section),
    ("rows", 90, core.rows_section),
]
_REGISTRY: dict[str, tuple[int, Builder]] = {key: (order, build) for key, order, build in SECTIONS}


def register_section(key: str, order: int, build: Builder) -> None:
    """Add (or replace) the section ``key``; sections are rendered by ascending ``order``."""
    _REGISTRY[key] = (order, build)


def registered() -> list[tuple[str, int]]:
    return sorted(((k, o) for k, (o, _) in _REGISTRY.items()), key=lambda x: (x[1], x[0]))


FORMATS = ("md", "html", "csv")

def build_sections(project: Any, opts: ReportOptions | None = None) -> list[Section]:
    """Every registered section's content, in order (a failing section becomes an error note)."""
    opts = opts or ReportOptions()
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
    t = esc(text)
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
            out.append(f'<p><img alt="{esc(m.group(1))}" src="{esc(src)}"></p>')
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
        body.append(f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>\n{inner}</section>')
    main.write_text(f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
                    f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n",
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
    from preceptor.engine.evaluation.evaluate import system_table

    ctx = resolve(project, opts or ReportOptions())
    table = system_table(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    if not table:
        return f"No stored metric values for reference {ctx.reference} (split {ctx.split}). Run `preceptor eval` first."
    names = [m for m in M.names() if any(m in t["metrics"] for t in table)]
    def cell(s: dict[str, Any]) -> str:
        ci = f" [{fmt(s['lo'])}, {fmt(s['hi'])}]" if s.get("lo") is not None else ""
        return f"{fmt(s['mean'])}{ci} n={s['n']}"

    rows = [[M.info(m).label] + [cell(t["metrics"][m]) for t in table] for m in names]
    out = [f"Reference {ctx.reference}, split {ctx.split}: mean [95 % CI] n",
           _text_table(rows, ["metric", *[t["system"] for t in table]])]
    chart_metric = ctx.metric if ctx.metric in names else names[0]
    items = [(t["system"], t["metrics"][chart_metric]["mean"], t["metrics"][chart_metric]["lo"], t["metrics"][chart_metric]["hi"]) for t in table]
    out += ["", f"{M.info(chart_metric).label} by system:",
            text_bars(items, vmax=1.0 if M.info(chart_metric).higher_is_better else None)]
    return "\n".join(out)
