"""`preceptor eval`: which outputs, which reference, caching, --force, win rates, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from preceptor.db import metrics as q
from preceptor.db import outputs as q_outputs
from preceptor.db import systems as q_systems
from preceptor.engine import events
from preceptor.engine.evaluation.evaluate import (
    EvalOptions,
    mean_ci,
    system_table,
    wilson,
    win_rate,
)
from preceptor.engine.evaluation.evaluate import (
    run_eval as eval_events,
)
from preceptor.errors import PreceptorError

ROWS = [
    ("How does clarithromycin interact with midazolam?", "Clarithromycin is a strong CYP3A inhibitor and raises midazolam exposure.",
     "Clarithromycin inhibits CYP3A4, so midazolam levels rise.", "Clarithromycin strongly inhibits CYP3A, increasing midazolam exposure."),
    ("Mechanism of warfarin?", "Warfarin inhibits vitamin K epoxide reductase (VKORC1).",
     "Warfarin is a blood thinner.", "Warfarin inhibits VKORC1, lowering vitamin K dependent clotting factors."),
    ("Rifampin and midazolam?", "Rifampin is a strong CYP3A inducer and lowers midazolam exposure.",
     "Rifampin induces CYP3A and lowers midazolam levels.", "Rifampin induces CYP3A4, reducing midazolam exposure."),
    ("Spironolactone mechanism?", "Spironolactone antagonizes the mineralocorticoid receptor.",
     "Spironolactone blocks aldosterone.", "Spironolactone is a mineralocorticoid receptor antagonist."),
    ("Thai question", "ยานี้ยับยั้งเอนไซม์ CYP3A4", "ยานี้ยับยั้งเอนไซม์", "ยับยั้ง CYP3A4"),
]
FAST = ["rougeL", "bleu", "facet_f1", "key_terms", "triple_exact", "triple_soft"]


def populate(project, rows=ROWS, with_reference: bool = True) -> None:
    from preceptor.engine.ingest.prompts import ImportOptions, import_prompts

    path = project.root / "items.jsonl"
    with path.open("w") as fh:
        for prompt, ref, student, teacher in rows:
            rec = {"prompt": prompt, "response_student": student}
            if with_reference:  # (the importer would take a teacher column as the reference too)
                rec.update(reference=ref, response_teacher=teacher)
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    events.run(import_prompts(project, path, ImportOptions(val_ratio=0.5)))


def run_eval(project, **kw):
    return events.run(eval_events(project, EvalOptions(split="all", **{"metrics": FAST, **kw})))


def test_eval_stores_values_equal_to_the_libraries(project) -> None:
    from rouge_score import rouge_scorer

    from preceptor.engine.evaluation.language import ScriptTokenizer

    populate(project)
    summary = run_eval(project)
    assert summary["reference"] == "gold" and summary["outputs"] == 10
    assert summary["computed"] == 60 and summary["cached"] == 0
    assert summary["by_metric"]["computed"] == {m: 10 for m in FAST} and summary["by_metric"]["cached"] == {m: 0 for m in FAST}
    base = q_systems.by_name(project.store, "imported-base")
    outs = q_outputs.for_system(project.store, base.id)
    vals = q.values_for_outputs(project.store, [o.id for o in outs], "rougeL", "gold")
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    thai = rouge_scorer.RougeScorer(["rougeL"], tokenizer=ScriptTokenizer())
    for o in outs:
        ref = next(r[1] for r in ROWS if r[2] == o.text)
        lib = thai if ref.startswith("ยา") else direct
        assert vals[o.id] == lib.score(ref, o.text)["rougeL"].fmeasure
    # the summary's means are the stored values' means
    table = {t["system"]: t for t in summary["systems"]}
    assert table["imported-base"]["metrics"]["rougeL"]["mean"] == pytest.approx(sum(vals.values()) / len(vals))
    assert table["imported-base"]["metrics"]["rougeL"]["n"] == 5


def test_rerun_hits_the_cache_force_recomputes_and_changes_are_rescored(project) -> None:
    populate(project)
    run_eval(project)
    again = run_eval(project)
    assert again["by_metric"]["computed"] == {m: 0 for m in FAST} and again["by_metric"]["cached"] == {m: 10 for m in FAST}
    forced = run_eval(project, force=True)
    assert forced["by_metric"]["computed"] == {m: 10 for m in FAST}
    # one changed output: only it is scored again
    base = q_systems.by_name(project.store, "imported-base")
    o = q_outputs.for_system(project.store, base.id)[0]
    q_outputs.record(project.store, o.prompt_id, base.id, text="Clarithromycin inhibits CYP3A.")
    after = run_eval(project)
    assert after["by_metric"]["computed"] == {m: 1 for m in FAST}
    assert q.values_for_outputs(project.store, [o.id], "triple_exact", "gold")[o.id] == 1.0


def test_reference_teacher_scores_other_systems_against_teacher_outputs(project) -> None:
    populate(project)
    s = run_eval(project, reference="teacher", metrics=["rougeL"])
    assert s["reference_system"] == "imported-teacher"
    assert [t["system"] for t in s["systems"]] == ["imported-base"]
    base = q_systems.by_name(project.store, "imported-base")
    teacher = q_systems.by_name(project.store, "imported-teacher")
    b = {o.prompt_id: o for o in q_outputs.for_system(project.store, base.id)}
    t = {o.prompt_id: o for o in q_outputs.for_system(project.store, teacher.id)}
    vals = q.values_for_outputs(project.store, [o.id for o in b.values()], "rougeL", "teacher")
    sc = __import__("preceptor.engine.evaluation.metrics", fromlist=["scorer"]).scorer("rougeL")
    for pid, o in b.items():
        assert vals[o.id] == sc.score([o.text], [t[pid].text])[0]
    assert q.values_for_outputs(project.store, [o.id for o in t.values()], "rougeL", "teacher") == {}


def test_no_references_is_a_clear_error_not_nan(project) -> None:
    populate(project, with_reference=False)
    with pytest.raises(PreceptorError) as e:
        run_eval(project)
    assert e.value.title == "No references"
    assert e.value.message == "none of the 5 selected prompts (split all) has a gold reference"
    assert "--reference teacher" in e.value.hint
    assert project.store.scalar("SELECT COUNT(*) FROM metrics") == 0


def test_unknown_reference_system_and_empty_project(project) -> None:
    with pytest.raises(PreceptorError) as e:
        run_eval(project, reference="gold")
    assert e.value.message == "none of the 0 selected prompts (split all) has a gold reference"
    populate(project)
    with pytest.raises(PreceptorError) as e:
        run_eval(project, reference="nobody")
    assert e.value.title == "Unknown system"


def test_bertscore_and_perplexity_in_eval(project, tiny_encoder: Path, tiny_lm: Path) -> None:
    populate(project)
    project.update_settings({"eval": {"bertscore_encoder": str(tiny_encoder), "ppl_model": str(tiny_lm)}})
    s = run_eval(project, metrics=["bertscore_f1", "ppl"])
    assert s["by_metric"]["computed"] == {"bertscore": 10, "ppl": 10}
    assert s["bertscore_rescaled"] == {"en": False, "th": False}
    teacher = q_systems.by_name(project.store, "imported-teacher")
    ids = [o.id for o in q_outputs.for_system(project.store, teacher.id)]
    for name in ("bertscore_p", "bertscore_r", "bertscore_f1"):
        assert len(q.values_for_outputs(project.store, ids, name, "gold")) == 5
    langs = {m["lang"] for m in q.metas(project.store, ids, "bertscore_f1", "gold").values()}
    assert langs == {"en", "th"}
    # perplexity does not depend on the reference: stored once, visible under every reference
    ppl = q.values_for_outputs(project.store, ids, "ppl", "gold")
    assert ppl == q.values_for_outputs(project.store, ids, "ppl", "teacher")
    assert all(v > 1.0 and math.isfinite(v) for v in ppl.values())
    again = run_eval(project, metrics=["bertscore_f1", "ppl"])
    assert again["by_metric"]["computed"] == {"bertscore": 0, "ppl": 0}


def test_wilson_and_mean_ci_hand_computed() -> None:
    lo, hi = wilson(7, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.3968, 0.8922)
    assert wilson(0, 0) is None  # no interval without trials
    m = mean_ci([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd 1.29099, t(0.975, 3) = 3.18245 -> half 2.05426
    assert m["mean"] == 2.5 and m["n"] == 4
    assert m["hi"] - 2.5 == pytest.approx(3.182446305 * 1.290994449 / 2, rel=1e-6)
    assert mean_ci([0.1, 0.9], lower=0.0, upper=1.0)["lo"] == 0.0
    assert mean_ci([0.5])["lo"] is None and mean_ci([])["n"] == 0


def _set_values(project, name: str, pairs: list[tuple[float, float]]) -> tuple[str, str]:
    """Two systems with controlled metric values per prompt."""
    populate(project, rows=[(f"p{i}", f"r{i}", f"a{i}", f"b{i}") for i in range(len(pairs))])
    a = q_systems.by_name(project.store, "imported-base")
    b = q_systems.by_name(project.store, "imported-teacher")
    oa = {o.prompt_id: o.id for o in q_outputs.for_system(project.store, a.id)}
    ob = {o.prompt_id: o.id for o in q_outputs.for_system(project.store, b.id)}
    rows = []
    for pid, (va, vb) in zip(sorted(oa), pairs, strict=False):
        rows += [(oa[pid], name, "gold", va, None), (ob[pid], name, "gold", vb, None)]
    q.upsert_many(project.store, rows)
    return a.name, b.name


def test_win_rate_counts_ties_and_wilson(project) -> None:
    pairs = [(0.9, 0.1)] * 6 + [(0.5, 0.5)] * 2 + [(0.1, 0.8)] * 2
    a, b = _set_values(project, "rougeL", pairs)
    w = win_rate(project, a, b, metric="rougeL", reference="gold", split="all")
    assert (w["wins"], w["ties"], w["losses"], w["n"]) == (6, 2, 2, 10)
    assert w["win_rate"] == 0.7
    assert (w["lo"], w["hi"]) == wilson(7, 10)
    w2 = win_rate(project, b, a, metric="rougeL", reference="gold", split="all", margin=0.75)
    # gaps of 0.7 fall within the margin (ties), gaps of 0.8 do not (losses for b)
    assert (w2["wins"], w2["ties"], w2["losses"]) == (0, 4, 6)


def test_win_rate_lower_is_better_and_sampling(project) -> None:
    pairs = [(float(i), float(i) + 1) for i in range(30)]
    a, b = _set_values(project, "ppl", pairs)
    w = win_rate(project, a, b, metric="ppl", reference="gold", split="all")
    assert w["wins"] == 30  # lower perplexity wins
    s1 = win_rate(project, a, b, metric="ppl", reference="gold", split="all", n=10, seed=3)
    s2 = win_rate(project, a, b, metric="ppl", reference="gold", split="all", n=10, seed=3)
    assert s1 == s2 and s1["n"] == 10 and s1["sampled"] and s1["available"] == 30


def test_system_table_only_counts_applicable_items(project) -> None:
    populate(project)
    run_eval(project, metrics=["triple_exact"])
    t = {x["system"]: x for x in system_table(project, reference="gold", split="all")}
    # the Thai reference states no triple: 4 of 5 items apply
    assert t["imported-teacher"]["metrics"]["triple_exact"]["n"] == 4
    assert t["imported-teacher"]["n_outputs"] == 5


def test_cli_eval_and_its_error(project, capsys) -> None:
    from preceptor.cli import main

    populate(project)
    code = main(["eval", "--project", str(project.root), "--split", "all", "--metrics", "rougeL,key_terms",
                 "--win", "imported-teacher,imported-base", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["computed"] == 20 and out["by_metric"]["computed"] == {"rougeL": 10, "key_terms": 10}
    assert out["win_rate"]["a"] == "imported-teacher" and out["win_rate"]["n"] == 5
    code = main(["eval", "--project", str(project.root), "--split", "all", "--metrics", "rougeL"])
    text = capsys.readouterr().out
    assert code == 0 and "0 values computed, 10 reused from the cache" in text and "ROUGE-L by system:" in text
    code = main(["eval", "--project", str(project.root), "--split", "train,val", "--metrics", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "Unknown metric" in err and "no metric named 'nope'" in err


def test_every_figure_names_its_tokenizer_and_encoder(project, tiny_encoder: Path) -> None:
    populate(project)
    project.update_settings({"eval": {"bertscore_encoder": str(tiny_encoder)}})
    seen: list = []
    s = events.run(eval_events(project, EvalOptions(split="all", metrics=["rougeL", "bleu", "chrf", "bertscore_f1"])),
                   on_event=seen.append)
    logs = [e.text for e in seen if type(e).__name__ == "Log"]
    assert any(m.startswith("ROUGE-L [Thai]: pythainlp ") for m in logs)
    assert any(m.startswith("BERTScore [Thai]: multilingual-e5-small layer 12") for m in logs)
    assert s["via"]["rougeL"]["th"].startswith("pythainlp ") and "newmm" in s["via"]["rougeL"]["th"]
    assert s["via"]["rougeL"]["en"].startswith("rouge-score ")
    assert s["via"]["bleu"]["en"].endswith("13a")
    assert "chrF++" in s["via"]["chrf"]["th"]
    assert s["via"]["bertscore"]["th"].startswith("multilingual-e5-small layer 12 (Unigram, 250,002 pieces tokenizer)")
    assert s["via"]["bertscore"]["en"].startswith("model layer 2 (WordPiece")
    table = {t["system"]: t for t in s["systems"]}
    via = table["imported-base"]["via"]
    assert any(v.startswith("Thai: pythainlp") for v in via["rougeL"]) and any(v.startswith("Latin script: rouge-score") for v in via["rougeL"])
    assert any(v.startswith("Thai: multilingual-e5-small") for v in via["bertscore_f1"])


def test_report_names_the_tokenizer_behind_each_metric(project, tiny_encoder: Path) -> None:
    from preceptor.engine.results.report import ReportOptions
    from preceptor.engine.results.report.core import metrics_section

    populate(project)
    project.update_settings({"eval": {"bertscore_encoder": str(tiny_encoder)}})
    run_eval(project, metrics=["rougeL", "chrf", "bertscore_f1"])
    md = metrics_section(project, ReportOptions(split="all")).markdown
    assert "Tokenizer / encoder behind each figure" in md
    assert "| ROUGE-L | Latin script: rouge-score " in md and "Thai: pythainlp " in md
    assert "| chrF++ | " in md and "Thai: multilingual-e5-small layer 12" in md
