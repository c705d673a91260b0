"""`preceptor gains`: each trained system against its parent and the teacher, checked against direct computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import runs as q_runs
from preceptor.db import systems as q_systems
from preceptor.engine import events
from preceptor.engine.results import gains as G

REFS = [
    "Warfarin and aspirin together raise the risk of bleeding.",
    "Simvastatin inhibits HMG-CoA reductase and lowers cholesterol.",
    "Omeprazole blocks the proton pump in gastric parietal cells.",
    "Clarithromycin inhibits CYP3A4 and raises simvastatin levels.",
    "Metformin lowers hepatic glucose production.",
    "Lisinopril inhibits angiotensin converting enzyme.",
    "Sertraline blocks serotonin reuptake.",
    "Amiodarone inhibits CYP2C9 and raises warfarin levels.",
]
# base: off-topic; ft: closer (one identical to base = a tie); dpo: like ft, one worse; teacher: the reference
BASE = ["I am not sure about that question.", "Cholesterol is a fat.", "It helps the stomach.", "Antibiotics kill bacteria.",
        "Diabetes is common.", "Blood pressure matters.", "Mood is complex.", "Heart rhythm drugs exist."]
FT = ["Warfarin and aspirin raise bleeding risk.", "Simvastatin lowers cholesterol.", "It helps the stomach.",
      "Clarithromycin raises simvastatin levels.", "Metformin lowers glucose production.", "Lisinopril inhibits the enzyme.",
      "Sertraline blocks serotonin.", "Amiodarone raises warfarin levels."]
DPO = [*FT[:6], "Mood is complex.", "Amiodarone inhibits CYP2C9 and raises warfarin."]


@pytest.fixture
def gained(project):
    from preceptor.engine.ingest.prompts import ImportOptions, import_prompts

    path = project.root / "items.jsonl"
    with path.open("w") as fh:
        for i, ref in enumerate(REFS):
            fh.write(json.dumps({"prompt": f"Question {i} about drug {i}?", "reference": ref, "split": "val"}) + "\n")
    events.run(import_prompts(project, path, ImportOptions()))
    store = project.store
    run_ft = q_runs.create(store, "sft", {"settings": {"from_system": "teacher", "base_system": "base", "epochs": 3.0,
                                                       "lr": 2e-4, "lora_r": 16},
                                          "data": {"train": 40, "val": 8, "sha256": "ab" * 32, "sources": {"teacher": 40}}})
    run_dpo = q_runs.create(store, "dpo", {"settings": {"from_system": "ft-x", "beta": 0.1},
                                           "data": {"train": 12, "val": 0, "sha256": "cd" * 32}})
    systems = {
        "base": q_systems.upsert(store, "base", role="base", backend="hf", model="m"),
        "teacher": q_systems.upsert(store, "teacher", role="teacher", backend="grounded", model="m"),
        "ft-x": q_systems.upsert(store, "ft-x", role="ft", backend="hf", model="m", adapter="/a", run_id=run_ft.id,
                                 meta={"base_system": "base", "from_system": "teacher"}),
        "dpo-x": q_systems.upsert(store, "dpo-x", role="dpo", backend="hf", model="m", adapter="/b", run_id=run_dpo.id,
                                  meta={"from_system": "ft-x"}),
    }
    prompts = q_prompts.select(store)
    with store.tx():
        for name, texts in (("base", BASE), ("teacher", REFS), ("ft-x", FT), ("dpo-x", DPO)):
            for p, t in zip(prompts, texts, strict=True):
                q_outputs.record(store, p.id, systems[name].id, text=t)
    return project


def _rouge(preds: list[str]) -> list[float]:
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [sc.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, REFS, strict=True)]


def test_gains_arithmetic_equals_an_independent_computation(gained) -> None:
    from scipy.stats import binomtest

    res = G.compute(gained, G.GainsOptions(split="val", metrics=("rougeL", "chrf"), n_boot=2000))
    rows = {(r["child"], r["other"]): r for r in res["rows"]}
    assert set(rows) == {("ft-x", "base"), ("ft-x", "teacher"), ("dpo-x", "ft-x"), ("dpo-x", "teacher")}
    ft = rows[("ft-x", "base")]
    c, p, t = _rouge(FT), _rouge(BASE), _rouge(REFS)
    wins = sum(1 for a, b, x, y in zip(c, p, FT, BASE, strict=True) if a > b and x != y)
    ties = sum(1 for a, b, x, y in zip(c, p, FT, BASE, strict=True) if a == b or x == y)
    assert (ft["win_rate"]["wins"], ft["win_rate"]["ties"], ft["n"]) == (wins, ties, 8) and ties == 1
    assert ft["win_rate"]["value"] == pytest.approx((wins + 0.5 * ties) / 8)
    # 7.5 of 8: the Wilson formula with the fractional count; scipy's for the nearest whole counts bracket it
    lo, hi = ft["win_rate"]["ci"]
    lo7, _ = binomtest(7, 8).proportion_ci(method="wilson")
    lo8, _ = binomtest(8, 8).proportion_ci(method="wilson")
    assert lo7 < lo < lo8 and hi <= 1.0
    diff = ft["metrics"]["rougeL"]
    assert diff["value"] == pytest.approx(np.mean(c) - np.mean(p))
    assert diff["ci"][0] < diff["value"] < diff["ci"][1] and diff["ci"][0] > 0
    gap = ft["gap_closed"]["rougeL"]
    assert gap["value"] == pytest.approx((np.mean(c) - np.mean(p)) / (np.mean(t) - np.mean(p)))
    assert gap["ci"][0] <= gap["value"] <= gap["ci"][1]
    from sacrebleu.metrics import CHRF

    ch = CHRF(word_order=2)  # eval's chrf is chrF++ (character 6-grams and word bigrams)
    chrf_ft = [ch.sentence_score(x, [r]).score / 100 for x, r in zip(FT, REFS, strict=True)]
    chrf_base = [ch.sentence_score(x, [r]).score / 100 for x, r in zip(BASE, REFS, strict=True)]
    assert ft["metrics"]["chrf"]["value"] == pytest.approx(np.mean(chrf_ft) - np.mean(chrf_base))
    assert not ft["regression"]
    # dpo vs ft: 5 identical answers (ties), one worse, two better or worse by score
    d = rows[("dpo-x", "ft-x")]
    cd, cf = _rouge(DPO), _rouge(FT)
    k = sum(0.5 if x == y or a == b else float(a > b) for a, b, x, y in zip(cd, cf, DPO, FT, strict=True))
    assert d["win_rate"]["value"] == pytest.approx(k / 8)
    # the teacher row has no gap share; the lineage names the run and its data
    assert rows[("ft-x", "teacher")]["gap_closed"] == {}
    lin = ft["lineage"]
    assert (lin["run_id"], lin["data_sha256"], lin["n_train"], lin["parent"], lin["n_items"]) == (
        q_systems.by_name(gained.store, "ft-x").run_id, "ab" * 32, 40, "base", 8)
    assert "run " in G.lineage_text(lin) and "sha256 " + "ab" * 32 in G.lineage_text(lin)


def test_whole_count_wilson_is_scipys_and_regression_is_flagged(gained) -> None:
    from scipy.stats import binomtest

    ci = binomtest(3, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert G.wilson_ci(3, 10) == pytest.approx((ci.low, ci.high))
    # swap roles: a "child" that answers like the base against a parent that answers like ft is a regression
    store = gained.store
    ft = q_systems.by_name(store, "ft-x")
    q_systems.upsert(store, "ft-x", role="ft", backend="hf", model="m", adapter="/a", run_id=ft.run_id,
                     meta={"base_system": "teacher"})
    res = G.compute(gained, G.GainsOptions(split="val", metrics=("rougeL",), n_boot=500))
    row = next(r for r in res["rows"] if r["child"] == "ft-x" and r["relation"] == "parent")
    assert row["other"] == "teacher" and row["win_rate"]["ci"][1] < 0.5
    assert row["regression"] and row["regressed_metrics"] == ["rougeL"]


def test_gains_with_no_trained_system_says_so(project) -> None:
    res = G.compute(project, G.GainsOptions())
    assert res["rows"] == [] and res["note"] == "no trained systems yet: train one with `preceptor train sft`"


def test_gains_cli_table_json_and_error(gained, capsys) -> None:
    from preceptor.cli import main

    root = str(gained.root)
    assert main(["gains", "--project", root, "--metrics", "rougeL,chrf", "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "ft-x" in out and "base (parent)" in out and "win rate (rougeL) [95% CI]" in out
    assert main(["gains", "--project", root, "--json", "--n-boot", "200", "--metrics", "rougeL"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {row["child"] for row in data["rows"]} == {"ft-x", "dpo-x"}
    assert all(math.isfinite(row["win_rate"]["value"]) for row in data["rows"])
    assert main(["gains", "--project", root, "--metrics", "chrf"]) == 2
    assert "--metrics must include rougeL (the metric judge's metric)" in capsys.readouterr().err


def test_report_has_the_gains_section_with_the_same_figures(gained) -> None:
    from preceptor.engine.results import report as R

    path = R.build_report(gained, "md", opts=R.ReportOptions(split="val"))
    text = path.read_text()
    assert "## What the loop gained" in text
    res = G.compute(gained, G.GainsOptions(split="val"))
    row = next(r for r in res["rows"] if r["child"] == "ft-x" and r["relation"] == "parent")
    line = next(ln for ln in text.splitlines() if ln.startswith("| ft-x | base (parent) |"))
    assert G.fmt_fig(row["win_rate"], pct=True) in line
    assert "sha256 " + "ab" * 32 in text


@pytest.mark.anyio
async def test_results_panel_shows_gains_and_lineage_one_key_away(gained, anyio_backend) -> None:
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.screens.results import LineageScreen
    from tests.tui_helpers import plain, wait_for

    app = PreceptorApp(gained, start="results")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#gains-table")
        await wait_for(pilot, lambda: table.row_count == 4, 30)
        assert "press l on a row for its lineage" in plain(screen.query_one("#gains-note"), 200)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LineageScreen) and bool(app.screen.query("#lineage-text")))
        body = plain(app.screen.query_one("#lineage-text"), 200)
        first = screen.gains_rows[0]
        assert f"run {first['lineage']['run_id']} (" in body and f"vs {first['other']}" in body and "sha256" in body
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
    assert app.errors == []


def test_sft_can_train_on_the_gold_references(gained, tiny_lm) -> None:
    from preceptor.engine.train import settings as train_settings
    from preceptor.engine.train.settings import SFTSettings
    from preceptor.engine.train.sft import prepare_data
    from preceptor.errors import PreceptorError

    q_systems.upsert(gained.store, "base", role="base", backend="hf", model=str(tiny_lm))
    gained.store.execute("UPDATE prompts SET split = 'train'")
    data = prepare_data(gained, train_settings.resolve(gained, SFTSettings, from_system="gold"))
    assert [r["completion"][0]["content"] for r in data.train] == REFS and data.sources == {"gold": len(REFS)}
    gained.store.execute("UPDATE prompts SET reference = NULL")
    with pytest.raises(PreceptorError) as err:
        prepare_data(gained, train_settings.resolve(gained, SFTSettings, from_system="gold"))
    assert err.value.message == "no train-split prompt has a gold reference"
