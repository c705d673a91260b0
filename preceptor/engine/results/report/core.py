"""The report's own sections: overview, automatic metrics, metric win rates, training runs, examples, rows."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

from preceptor.db import metrics as q
from preceptor.db import runs as q_runs
from preceptor.engine.evaluation import metrics as M
from preceptor.engine.results.report.base import (
    ReportOptions,
    Scope,
    Section,
    bar_chart_svg,
    ci_text,
    clip,
    esc,
    fmt,
    line_chart_svg,
    md_table,
    resolve,
)

if TYPE_CHECKING:
    from preceptor.project import Project


def overview_section(project: Project, opts: ReportOptions) -> Section:
    ctx = resolve(project, opts)
    from preceptor.engine.evaluation.evaluate import settings

    st = settings(project)
    lines = [
        f"Project **{esc(project.settings.name)}** (`{project.root}`), generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
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

def _bertscore_note(project: Project, ctx: Scope, outputs: list[int]) -> str:
    metas = q.metas(project.store, outputs, "bertscore_f1", ctx.reference)
    if not metas:
        return ""
    by_lang: dict[str, list[bool]] = {}
    refused: dict[str, int] = {}
    for m in metas.values():
        by_lang.setdefault(str(m.get("lang", "?")), []).append(bool(m.get("rescaled")))
        if m.get("refused"):
            refused[str(m.get("lang", "?"))] = refused.get(str(m.get("lang", "?")), 0) + 1
    parts = []
    for lang, flags in sorted(by_lang.items()):
        n_r = sum(flags)
        state = "rescaled with a baseline" if n_r == len(flags) else ("NOT rescaled (no baseline for the encoder)" if n_r == 0 else f"{n_r} of {len(flags)} rescaled")
        if refused.get(lang):
            state += f"; {refused[lang]} refused (the encoder cannot read the script: no value)"
        parts.append(f"{lang}: {len(flags)} items, {state}")
    return "BERTScore figures: " + "; ".join(parts) + ". Unrescaled BERTScore sits high (≈0.6–1.0) and is only comparable across systems, not to published rescaled numbers."

def metrics_section(project: Project, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluation.evaluate import per_row, system_table
    from preceptor.engine.evaluation.metrics.text import corpus_bleu

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
            row.append(f"{ci_text(s)} n={s.get('n', 0)}")
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
            crow.append(f"{fmt(cb)} n={len(rs)}")
            csv_rows.append({"system": s, "metric": "corpus_bleu", "mean": cb, "ci_low": None, "ci_high": None,
                             "n": len(rs), "reference": ctx.reference})
        rows.append(crow)
    bounded = [m for m in names if M.info(m).higher_is_better]
    svg = bar_chart_svg(f"Metrics vs {ctx.reference} (mean, 95 % CI)", [M.info(m).label for m in bounded],
                        {t["system"]: [(t["metrics"][m]["mean"], t["metrics"][m]["lo"], t["metrics"][m]["hi"]) for m in bounded]
                         for t in table}, ymax=1.0)
    note = _bertscore_note(project, ctx, [r["output_id"] for r in prow])
    via_rows = [[M.info(m).label, "; ".join(sorted({v for t in table for v in t.get("via", {}).get(m, [])}))] for m in names]
    via = ("Tokenizer / encoder behind each figure (per script of the items):\n\n" + md_table(["metric", "computed with"], via_rows)
           if any(r[1] for r in via_rows) else "")
    md = "\n\n".join(x for x in [
        md_table(["metric", *systems], rows),
        via,
        note,
        "![Metrics per system](metrics.svg)",
    ] if x)
    return Section("metrics", f"Automatic metrics (reference: {ctx.reference})", md, csv_rows=csv_rows,
                   images={"metrics.svg": svg})

def metric_wins_section(project: Project, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluation.evaluate import settings, system_table, win_rate

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
            rows.append([f"{a} vs {b}", M.info(m).label, f"{fmt(w['win_rate'])} [{fmt(w['lo'])}, {fmt(w['hi'])}]",
                         w["wins"], w["ties"], w["losses"], w["n"]])
            csv_rows.append(w)
    if not rows:
        return None
    sample = f" Sampled: {opts.n} items per pair, seed {ctx.seed}." if opts.n else ""
    md = (f"Per item, the system with the higher score wins (lower for perplexity); differences up to "
          f"{st.tie_margin} are ties. Win rate = (wins + ties / 2) / n for the first system, with a Wilson 95 % interval.{sample}\n\n"
          + md_table(["pair", "metric", "win rate [95 % CI]", "wins", "ties", "losses", "n"], rows))
    return Section("win_rates", "Win rates by metric", md, csv_rows=csv_rows)

def training_section(project: Project, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluation.metrics.perplexity import from_eval_loss

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
        rows.append([run.id, run.kind, run.status, fmt(last.get("loss")), fmt(last.get("eval_loss")), fmt(ppl),
                     run.ended_at or run.started_at or run.created_at])
    for name in ("loss", "eval_loss", "perplexity"):
        if name in curves:
            svg = line_chart_svg(f"{name} by step", curves[name])
            if svg:
                images[f"train_{name}.svg"] = svg
                md_imgs.append(f"![{name}](train_{name}.svg)")
    md = (md_table(["run", "kind", "status", "last loss", "last eval loss", "eval perplexity", "time"], rows)
          + "\n\nEval perplexity = exp(eval loss) unless the run logged perplexity itself.\n\n" + "\n\n".join(md_imgs))
    return Section("training", "Training runs (latest)", md.strip(), csv_rows=csv_rows, images=images)

def examples_section(project: Project, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluation.evaluate import per_row

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
            parts.append(f"#### {label}: prompt {pid} (mean {M.info(ctx.metric).label} {fmt(mean)})")
            parts.append(f"**Prompt.** {clip(rs[0]['prompt'], 400)}")
            headers = ["reference", *[f"{r['system']} ({fmt(r.get(ctx.metric))})" for r in rs]]
            parts.append(md_table(headers, [[clip(rs[0]["reference"]), *[clip(r["prediction"]) for r in rs]]]))
    return Section("examples", "Best and worst examples", "\n\n".join(parts))

def rows_section(project: Project, opts: ReportOptions) -> Section | None:
    from preceptor.engine.evaluation.evaluate import per_row

    ctx = resolve(project, opts)
    rows, names = per_row(project, reference=ctx.reference, split=ctx.split, collection=ctx.collection, systems=ctx.systems)
    if not rows:
        return None
    return Section("rows", "Per-row values",
                   f"{len(rows)} rows (prompt, reference, prediction and {len(names)} metrics) are in the per-row CSV: `ROWS_CSV`.",
                   csv_rows=rows)
