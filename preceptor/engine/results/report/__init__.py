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
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor import csvsafe
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

if TYPE_CHECKING:
    from preceptor.project import Project

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

def build_sections(project: Project, opts: ReportOptions | None = None) -> list[Section]:
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

def markdown_to_html(md: str, images: dict[str, str] | None = None) -> str:
    """Section markdown as HTML (markdown-it-py, CommonMark + tables; raw HTML is escaped).

    Images named in ``images`` (SVG text) are embedded as data URIs so the page stands alone.
    """
    from markdown_it import MarkdownIt

    images = images or {}
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(md)
    for tok in tokens:
        for child in tok.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if isinstance(src, str) and src in images:
                child.attrSet("src", "data:image/svg+xml;base64," + base64.b64encode(images[src].encode()).decode())
    return parser.renderer.render(tokens, parser.options, {}).strip()

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
        w = csvsafe.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})

def build_report(project: Project, fmt: str = "md", out_dir: Path | str | None = None,
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
    blocks: list[str] = []
    for s in sections:
        inner = s.html if s.html is not None else markdown_to_html(s.markdown.replace("ROWS_CSV", rows_name), s.images)
        blocks.append(f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>\n{inner}</section>')
    main.write_text(f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
                    f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>\n" + "\n".join(blocks) + "\n</body></html>\n",
                    encoding="utf-8")
    return main

def _text_table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

def terminal_summary(project: Project, opts: ReportOptions | None = None) -> str:
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
