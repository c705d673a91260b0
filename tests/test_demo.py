"""`preceptor demo --fast`: the whole loop offline on the real packaged models.

This is the product's end-to-end test: it runs every stage once (import, generation by
the base student and the grounded teacher, SFT in its own process, generation by the new
ft system, eval, pairs, metric and local LLM judges, stats, the DPO export, DPO training,
generation by the dpo system, pairs and judging of ft vs dpo) and checks each left rows.
"""

from __future__ import annotations

import json

import pytest

from preceptor.cli import main
from preceptor.project import Project

pytestmark = pytest.mark.slow


def test_demo_fast_runs_the_whole_loop(tmp_path, capsys):
    root = tmp_path / "demo"
    code = main(["demo", "--fast", "--dir", str(root), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    summary = json.loads(captured.out[captured.out.index("{"):])
    stages = [s["stage"] for s in summary["stages"]]
    assert stages[:2] == ["offline models", "import"] and stages[-2:] == ["stats again (val)", "gains (val, against the gold reference)"]
    # the gains figures: ft vs base and dpo vs ft on the 6 val items, each with a Wilson interval
    rows = {(r["child_role"], r["other_role"]): r for r in summary["gains"]["rows"]}
    assert {("ft", "base"), ("dpo", "ft"), ("ft", "teacher"), ("dpo", "teacher")} <= set(rows)
    for key in (("ft", "base"), ("dpo", "ft")):
        w = rows[key]["win_rate"]
        assert rows[key]["n"] == 6 and w["ci"][0] <= w["value"] <= w["ci"][1]
        assert f"beats {rows[key]['other']} on " in captured.err
    assert set(rows[("ft", "base")]["gap_closed"]) == {"rougeL", "chrf", "facet_f1"}
    assert "Open the app: preceptor --project" in captured.err

    p = Project.open(root)
    store = p.store
    # import: the fixed fast subset
    assert store.scalar("SELECT COUNT(*) FROM prompts WHERE collection = 'demo-fast' AND split = 'train'") == 10
    assert store.scalar("SELECT COUNT(*) FROM prompts WHERE collection = 'demo-fast' AND split = 'val'") == 6
    # every role answered, with provenance
    for role, expected in (("base", 16), ("teacher", 16), ("ft", 16), ("dpo", 6)):
        n = store.scalar(
            "SELECT COUNT(*) FROM outputs o JOIN systems s ON s.id = o.system_id "
            "WHERE s.role = ? AND o.error IS NULL AND o.text IS NOT NULL AND o.template_hash IS NOT NULL", (role,))
        assert n == expected, role
    # training runs succeeded and registered systems
    runs = {r[0]: r[1] for r in store.all("SELECT kind, status FROM runs")}
    assert runs == {"sft": "succeeded", "dpo": "succeeded"}
    assert store.scalar("SELECT COUNT(*) FROM run_metrics WHERE name = 'loss'") > 0
    assert store.scalar("SELECT COUNT(*) FROM systems WHERE role = 'dpo' AND adapter IS NOT NULL") == 1
    # metrics, pairs on both splits, judgments of every automatic kind
    assert store.scalar("SELECT COUNT(*) FROM metrics") > 0
    assert store.scalar("SELECT COUNT(DISTINCT split) FROM pairs") == 2
    kinds = {r[0] for r in store.all("SELECT DISTINCT judge_kind FROM judgments")}
    assert {"metric", "llm"} <= kinds
    # a non-empty DPO export that the DPO run consumed
    export = summary["export"]
    assert export["n"] > 0
    rows = [json.loads(line) for line in open(export["path"], encoding="utf-8")]
    assert len(rows) == export["n"] and all(r["chosen"] != r["rejected"] for r in rows)
    assert store.scalar("SELECT COUNT(*) FROM exports") == 1
    # ft vs dpo compared on val
    assert store.scalar(
        "SELECT COUNT(*) FROM pairs p JOIN outputs a ON a.id = p.output_a JOIN outputs b ON b.id = p.output_b "
        "JOIN systems sa ON sa.id = a.system_id JOIN systems sb ON sb.id = b.system_id "
        "WHERE p.split = 'val' AND ((sa.role = 'ft' AND sb.role = 'dpo') OR (sa.role = 'dpo' AND sb.role = 'ft'))") > 0
    p.close()
