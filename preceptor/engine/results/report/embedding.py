"""The embedding section of ``preceptor report``: per-stage retrieval metrics and collapse checks.

Listed in :data:`preceptor.engine.results.report.SECTIONS`. One row per embedding run (newest first): Recall@1/5/10,
MRR@10 and nDCG@10 of the base model and of the stage's model on the stage's held-out
queries, then the collapse diagnostics and any alarm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from preceptor.engine.results.report.base import Section, md_table

if TYPE_CHECKING:
    from preceptor.project import Project

MAX_RUNS = 30


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def embedding_section(project: Project, opts: Any) -> Section | None:
    from preceptor.db import runs as q_runs
    from preceptor.engine.embed.settings import COLLAPSE_METRICS, RETRIEVAL_METRICS
    from preceptor.engine.train.curriculum import stage_report

    runs = [r for r in q_runs.list_runs(project.store, kind="embed", limit=MAX_RUNS) if r.status in ("succeeded", "failed", "cancelled")]
    if not runs:
        return None
    reports = [stage_report(project, r.id) for r in runs]
    labels = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "mrr@10": "MRR@10", "ndcg@10": "nDCG@10"}
    rows, csv_rows, alarms = [], [], []
    for r in reports:
        rows.append([r["stage"], r["run_id"], r["status"], r.get("steps") or "-",
                     *(f"{_f(r['base'][m])} → {_f(r['eval'][m])}" for m in RETRIEVAL_METRICS)])
        c = r["collapse"]
        csv_rows.append({"stage": r["stage"], "run": r["run_id"], "status": r["status"], "steps": r.get("steps"),
                         **{f"base_{m}": r["base"][m] for m in RETRIEVAL_METRICS},
                         **{m: r["eval"][m] for m in RETRIEVAL_METRICS},
                         **{f"collapse_{k}": c[k] for k in COLLAPSE_METRICS},
                         "base_gap": r["base_collapse"]["gap"], "alarm": r.get("warning") or ""})
        if r.get("warning"):
            alarms.append(f"- run {r['run_id']} ({r['stage']}): {r['warning']}")
    md = ["Retrieval on each stage's held-out queries against the stage corpus, base model → after the stage.", "",
          md_table(["stage", "run", "status", "steps", *(labels[m] for m in RETRIEVAL_METRICS)], rows), "",
          "Collapse diagnostics: mean ± sd cosine similarity of true pairs and of random unrelated pairs, and their gap "
          "(the alarm fires when unrelated pairs score like related ones).", "",
          md_table(["stage", "run", "true", "unrelated", "unrelated p95", "gap", "base gap", "status"],
                 [[r["stage"], r["run_id"], f"{_f(r['collapse']['true_mean'])} ± {_f(r['collapse']['true_std'])}",
                   f"{_f(r['collapse']['unrelated_mean'])} ± {_f(r['collapse']['unrelated_std'])}",
                   _f(r["collapse"]["unrelated_p95"]), _f(r["collapse"]["gap"]), _f(r["base_collapse"]["gap"]),
                   "ALARM" if r.get("warning") else "ok"] for r in reports])]
    if alarms:
        md += ["", "Warnings:", "", *alarms]
    return Section("embedding", "Embedding curriculum", "\n".join(md), csv_rows=csv_rows)
