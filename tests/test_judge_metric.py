"""The metric judge (per-pair winner by ROUGE-L against the reference) and both_bad in exports."""

from __future__ import annotations

import pytest

from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.db.store import now
from preceptor.engine.events import run
from preceptor.engine.ingest.splits import text_hash
from preceptor.engine.judging.metric_judge import MetricJudgeOptions, judge_metric, metric_vote
from tests.test_judge_support import make_all_pairs

ITEMS = [
    ("How do clarithromycin and midazolam interact?", "Clarithromycin strongly inhibits CYP3A and raises midazolam exposure.",
     "Clarithromycin inhibits CYP3A, so midazolam exposure rises.", "They do not interact."),
    ("How do rifampin and midazolam interact?", "Rifampin induces CYP3A and lowers midazolam exposure.",
     "Unclear.", "Rifampin induces CYP3A which lowers the exposure of midazolam."),
    ("What is the mechanism of atorvastatin?", "Atorvastatin inhibits HMG-CoA reductase.",
     "Take it at night.", "Ask your doctor."),  # no overlap with the reference: a tie at 0
    ("How do warfarin and fluconazole interact?", None, "Fluconazole raises warfarin levels.", "No effect."),  # no reference
]


def _seed(project):
    store = project.store
    sa = q_systems.upsert(store, "left-sys", role="custom", backend="imported", imported=True)
    sb = q_systems.upsert(store, "right-sys", role="custom", backend="imported", imported=True)
    with store.tx():
        q_prompts.ensure_collection(store, "items")
        q_prompts.insert_many(store, [(p, text_hash(p), ref, "val", None, f"g{i}", "items", None, "t", now())
                                      for i, (p, ref, _, _) in enumerate(ITEMS)])
    ids = [r[0] for r in store.all("SELECT id FROM prompts ORDER BY id")]
    q_outputs.record_many(store, [dict(prompt_id=pid, system_id=s.id, text=t) for pid, (_, _, a, b) in zip(ids, ITEMS, strict=True)
                                  for s, t in ((sa, a), (sb, b))])
    make_all_pairs(project, systems=("left-sys", "right-sys"))


def test_metric_judge_matches_rouge_score_called_directly(project):
    from rouge_score import rouge_scorer

    _seed(project)
    s = run(judge_metric(project, MetricJudgeOptions(metric="rougeL")))
    assert (s["pairs"], s["decisive"], s["tie"], s["no_reference"]) == (3, 2, 1, 1)
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = project.store.all("""SELECT j.*, p.output_a, p.output_b, pr.reference, a.text AS ta, b.text AS tb
                                FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts pr ON pr.id = p.prompt_id
                                JOIN outputs a ON a.id = p.output_a JOIN outputs b ON b.id = p.output_b""")
    assert len(rows) == 3
    for r in rows:
        fa = direct.score(r["reference"], r["ta"])["rougeL"].fmeasure
        fb = direct.score(r["reference"], r["tb"])["rougeL"].fmeasure
        assert (r["judge_kind"], r["judge_id"], r["left_output_id"]) == ("metric", "rougeL", None)
        if fa == fb:
            assert (r["verdict"], r["winner_output_id"], r["confidence"]) == ("tie", None, 0.0)
        else:
            assert r["verdict"] == "win"
            assert r["winner_output_id"] == (r["output_a"] if fa > fb else r["output_b"])
            assert r["confidence"] == pytest.approx(abs(fa - fb) / max(fa, fb))
    again = run(judge_metric(project, MetricJudgeOptions(metric="rougeL")))
    assert (again["pairs"], again["skipped_existing"]) == (0, 3)


def test_metric_vote_rules():
    assert metric_vote(0.5, 0.25) == ("win", 0, 0.5)
    assert metric_vote(0.2, 0.4) == ("win", 1, 0.5)
    assert metric_vote(0.3, 0.3) == ("tie", None, 0.0)
    assert metric_vote(10.0, 20.0, higher_is_better=False) == ("win", 0, 0.5)  # e.g. perplexity


def test_both_bad_never_becomes_a_dpo_pair(project):
    from preceptor.engine.export.dpo import DPOExportOptions, dpo_records
    from preceptor.engine.judging.experts import ExpertSession, add_expert
    from tests.test_judge_support import seed_outputs

    project.update_settings({"judge": {"overlap_share": 0.0, "repeat_share": 0.0}})
    seed_outputs(project, 6, splits=("train",))
    make_all_pairs(project)
    add_expert(project.store, "Ada")
    s = ExpertSession(project, "Ada")
    verdicts = ["A", "both_bad", "B", "both_bad", "tie", "A"]
    for v in verdicts:
        s.record(s.next(), v)
    rows, info = dpo_records(project, DPOExportOptions(split="train", source="expert"))
    assert len(rows) == 3
    assert info["excluded"].get("both_bad") == 2 and info["excluded"].get("tie") == 1
