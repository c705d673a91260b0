"""``preceptor split --group-col``: regroup without leakage, never moving prompts already used."""

from __future__ import annotations

import json

from preceptor.cli import main
from preceptor.db import prompts as q_prompts
from preceptor.db import runs as q_runs
from preceptor.project import Project

MOLECULES = ["warfarin", "aspirin", "metformin", "rifampin", "omeprazole", "atorvastatin", "clopidogrel", "digoxin"]


def _project(tmp_path, capsys):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    rows = [{"prompt": f"Question {k} about {m}?", "reference": f"{m} answer {k}", "molecule": m}
            for m in MOLECULES for k in range(4)]
    f = tmp_path / "items.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["import", str(f), "--val-ratio", "0.4", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "split groups: none found" in out  # "molecule" is not a group column: each prompt is its own group
    return Project.open(proj), proj


def _by_molecule(project) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in q_prompts.select(project.store, q_prompts.PromptFilter(split="all")):
        out.setdefault(p.meta["molecule"], set()).add(p.split)
    return out


def test_split_regroups_by_a_column_and_says_what_moved(tmp_path, capsys):
    project, proj = _project(tmp_path, capsys)
    assert any(len(v) > 1 for v in _by_molecule(project).values())  # leakage before
    assert main(["split", "--group-col", "molecule", "--val-ratio", "0.4", "--dry-run", "--project", str(proj)]) == 0
    assert "would move" in capsys.readouterr().out
    assert any(len(v) > 1 for v in _by_molecule(project).values())  # a dry run changes nothing
    assert main(["split", "--group-col", "molecule", "--val-ratio", "0.4", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Grouped 32 prompts by 'molecule' into 8 groups (32 with a value); moved ")
    assert all(len(v) == 1 for v in _by_molecule(Project.open(proj)).values())
    assert main(["split", "--group-col", "nope", "--project", str(proj)]) == 2
    assert "no prompt has a value in column 'nope'" in capsys.readouterr().err


def test_split_keeps_used_prompts_and_refuses_naming_them(tmp_path, capsys):
    project, proj = _project(tmp_path, capsys)
    prompts = q_prompts.select(project.store, q_prompts.PromptFilter(split="all"))
    leaking = next(m for m, v in _by_molecule(project).items() if len(v) > 1)
    mine = [p for p in prompts if p.meta["molecule"] == leaking]
    one_split = [p for p in prompts if p.meta["molecule"] != leaking and len(_by_molecule(project)[p.meta["molecule"]]) == 1]
    # a training run used one prompt of a single-split molecule: its group keeps that split
    run = q_runs.create(project.store, "sft", {"prompt_ids": [one_split[0].id]})
    assert main(["split", "--group-col", "molecule", "--project", str(proj)]) == 0
    assert "1 prompts already judged or trained on kept their split" in capsys.readouterr().out
    after = {p.id: p.split for p in q_prompts.select(project.store, q_prompts.PromptFilter(split="all"))}
    assert after[one_split[0].id] == one_split[0].split
    # now a run used prompts of the leaking molecule in two splits: no split keeps both -> refused, named
    a = next(p for p in mine if p.split == "train")
    b = next(p for p in mine if p.split != "train")
    project2, proj2 = _project(tmp_path / "second", capsys)
    a2 = q_prompts.select(project2.store, q_prompts.PromptFilter(split="all"))
    ids = [p.id for p in a2 if p.text in (a.text, b.text)]
    run2 = q_runs.create(project2.store, "sft", {"prompt_ids": ids})
    assert main(["split", "--group-col", "molecule", "--project", str(proj2)]) == 2
    err = capsys.readouterr().err
    assert "Error: Split would break earlier work" in err
    for pid in ids:
        assert f"prompt {pid} (" in err and f"used by sft run {run2.id}" in err
    assert run.id
