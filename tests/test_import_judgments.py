"""Importing real human pairwise labels (LLMBar, PandaLM, a generic file) into their own collection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from preceptor.cli import main
from preceptor.db import prompts as q_prompts
from preceptor.engine.events import run
from preceptor.engine.judging.imported import ImportJudgmentsOptions, import_judgments
from preceptor.errors import PreceptorError
from tests.test_judge_support import make_all_pairs, seed_outputs

FIXTURES = Path(__file__).parent / "fixtures"
LLMBAR = FIXTURES / "llmbar_natural.json"
PANDALM = FIXTURES / "pandalm_excerpt.json"


def _import(project, path, fmt, collection=None):
    return run(import_judgments(project, path, ImportJudgmentsOptions(format=fmt, collection=collection)))


def _norm(t):
    return " ".join(str(t).split())


def test_llmbar_import_counts_and_stays_in_its_collection(project):
    seed_outputs(project, 9)  # the project's own data
    make_all_pairs(project)
    items = json.loads(LLMBAR.read_text())
    s = _import(project, LLMBAR, "llmbar", "llmbar-natural")
    assert (s["items"], s["prompts"], s["pairs"], s["votes"], s["identical"]) == (100, 100, 100, 100, 0)
    assert s["verdicts"] == {"win": 100, "tie": 0, "both_bad": 0}
    store = project.store
    assert store.scalar("SELECT kind FROM collections WHERE name = 'llmbar-natural'") == "judgments"
    assert store.scalar("SELECT COUNT(*) FROM prompts WHERE collection = 'llmbar-natural' AND split = 'test'") == 100
    # every label maps to the right answer
    for it in items[:20]:
        row = store.one("""SELECT o.text FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts pr ON pr.id = p.prompt_id
                           JOIN outputs o ON o.id = j.winner_output_id WHERE pr.text = ? AND j.judge_kind = 'imported'""",
                        (it["input"],))
        assert row["text"] == it[f"output_{it['label']}"]
    # left out of the project's own prompts, statistics and queue unless named
    assert len(q_prompts.select(store)) == 9
    assert len(q_prompts.select(store, q_prompts.PromptFilter(collections=["llmbar-natural"]))) == 100
    from preceptor.engine.views import project_status

    assert project_status(project)["prompts"]["total"] == 9
    from preceptor.db import judging as q
    from preceptor.engine.judging.pairs import PairFilter, resolve_filter

    assert q.count_pairs(store, resolve_filter(store, PairFilter())) == 9
    assert q.count_pairs(store, resolve_filter(store, PairFilter(collection="llmbar-natural"))) == 100
    # a second import adds nothing
    again = _import(project, LLMBAR, "llmbar", "llmbar-natural")
    assert (again["prompts"], again["pairs"], again["votes"], again["existing_votes"]) == (0, 0, 0, 100)
    assert store.scalar("SELECT COUNT(*) FROM judgments") == 100


def test_pandalm_import_reads_nan_and_counts_every_label(project):
    raw = json.loads(PANDALM.read_text())  # Python's json reads the bare NaN
    labels = [(it, n, it[f"annotator{n}"]) for it in raw for n in (1, 2, 3)]
    present = [x for x in labels if not (isinstance(x[2], float) and math.isnan(x[2]))]
    assert len(labels) - len(present) == 1
    prompts = {_norm(it["instruction"] + ("\n\n" + it["input"] if it["input"] else "")) for it in raw}
    s = _import(project, PANDALM, "pandalm")
    assert s["collection"] == "pandalm_excerpt"
    assert s["items"] == len(raw) and s["prompts"] == len(prompts)
    assert s["missing_labels"] == 1 and s["votes"] == len(present) and s["pairs"] == len(raw)
    assert s["verdicts"]["tie"] == sum(1 for x in present if x[2] == 0)
    assert s["verdicts"]["win"] == sum(1 for x in present if x[2] in (1, 2))
    store = project.store
    judges = {r[0] for r in store.all("SELECT DISTINCT judge_id FROM judgments")}
    assert judges == {"pandalm_excerpt/annotator1", "pandalm_excerpt/annotator2", "pandalm_excerpt/annotator3"}
    # models from cmp_key become placeholder systems named after the collection
    names = {r[0] for r in store.all("SELECT name FROM systems")}
    assert {"pandalm_excerpt:llama-7b", "pandalm_excerpt:bloom-7b"} <= names
    item = raw[0]
    winner = store.scalar("""SELECT o.text FROM judgments j JOIN outputs o ON o.id = j.winner_output_id
                             WHERE j.judge_id = 'pandalm_excerpt/annotator1' AND json_extract(j.meta, '$.item') = 0""")
    assert winner == item[f"response{item['annotator1']}"]


def test_generic_file_and_errors(project, tmp_path, capsys):
    f = tmp_path / "labels.jsonl"
    rows = [
        {"prompt": "Does grapefruit affect simvastatin?", "answer_a": "Yes: CYP3A inhibition.", "answer_b": "No.", "winner": "A", "judge": "ph1"},
        {"prompt": "Does grapefruit affect simvastatin?", "answer_a": "Yes: CYP3A inhibition.", "answer_b": "No.", "winner": "tie", "judge": "ph2"},
        {"prompt": "Is aspirin an NSAID?", "answer_a": "Yes.", "answer_b": "Yes.", "winner": "B"},
        {"prompt": "What does omeprazole inhibit?", "answer_a": "CYP2C19 and the proton pump.", "answer_b": "Nothing.", "winner": "both_bad"},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["--project", str(project.root), "import-judgments", str(f), "--format", "generic", "--collection", "pharm-panel", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["prompts"], s["pairs"], s["votes"], s["identical"]) == (3, 2, 3, 1)
    assert s["verdicts"] == {"win": 1, "tie": 1, "both_bad": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**rows[0], "winner": "C"}) + "\n")
    with pytest.raises(PreceptorError) as err:
        _import(project, bad, "generic", "other")
    assert err.value.message == f"{bad}:1: winner = 'C' is not one of 1, 2, 0 (tie), A, B, tie, both_bad"
    assert project.store.scalar("SELECT COUNT(*) FROM prompts WHERE collection = 'other'") == 0  # nothing half-imported
    seed_outputs(project, 2, collection="mine")
    with pytest.raises(PreceptorError) as err:
        _import(project, f, "generic", "mine")
    assert err.value.message == "collection 'mine' holds the project's own prompts"
    broken = tmp_path / "broken.json"
    broken.write_text('[{"input": "x", "output_1": "a", "output_2": "b", "label": 1},\n  {"input": ')
    with pytest.raises(PreceptorError) as err:
        _import(project, broken, "llmbar")
    assert err.value.title == "Broken JSON" and err.value.message.startswith(f"{broken}:2:")


def test_llmbar_set_alone_shows_its_floors_in_plain_stats(project, capsys):
    """A fresh project holding only an imported human-label set: plain `stats --split all`
    shows that set (saying it fell back to it) with the floors a judge must beat; positions
    never become a league."""
    fixture = Path(__file__).parent / "fixtures" / "llmbar_natural.json"
    assert main(["--project", str(project.root), "import-judgments", str(fixture), "--format", "llmbar", "--json"]) == 0
    capsys.readouterr()
    assert main(["--project", str(project.root), "stats", "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "showing the imported collection" in out
    assert "longer answer wins" in out and "first shown wins" in out and "chance" in out
    assert "Bradley–Terry league" not in out  # LLMBar's "systems" are positions (and their #N variants)
    assert "Style-controlled league" not in out and "Win rates" not in out
    assert main(["--project", str(project.root), "stats", "--split", "all", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    items = json.loads(fixture.read_text())
    longer = res["floors"]["longer_answer_wins"]
    # independent recomputation: the longer output is the labelled one (equal lengths half)
    hits = sum(0.5 if len(it["output_1"]) == len(it["output_2"]) else
               float((1 if len(it["output_1"]) > len(it["output_2"]) else 2) == int(it["label"])) for it in items
               if it["output_1"].strip() != it["output_2"].strip())
    assert longer["value"] == pytest.approx(hits / res["floors"]["n"], abs=1e-9)
    assert longer["ci"][1] > longer["ci"][0]
