"""The shipped demo dataset: shape, splits, subsets, provenance and licences.

Reads only the packaged files under preceptor/demo/data (never the shared source folder).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from preceptor.demo import DATA_DIR, data_path, embed_stage_path, notice_path

TASKS = {"interaction", "moa", "normalize", "card"}
SPLITS = {"train", "val", "test"}


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return _jsonl(data_path())


@pytest.fixture(scope="module")
def notice() -> str:
    return notice_path().read_text(encoding="utf-8")


def test_data_path_points_into_the_package() -> None:
    assert data_path().is_file()
    assert data_path().parent == DATA_DIR
    assert DATA_DIR.parent.name == "demo"
    for name in ("NOTICE", "README.md", "embed_stage1.jsonl", "embed_stage2.jsonl", "embed_stage3.jsonl"):
        assert (DATA_DIR / name).is_file(), name
    with pytest.raises(ValueError):
        embed_stage_path(4)


def test_item_fields(items: list[dict]) -> None:
    assert 300 <= len(items) <= 420
    for it in items:
        for key in ("id", "prompt", "reference", "task", "group", "split", "meta"):
            assert key in it, (it.get("id"), key)
        for key in ("prompt", "reference", "group"):
            assert isinstance(it[key], str) and it[key].strip(), (it["id"], key)
        assert it["task"] in TASKS
        assert it["split"] in SPLITS
        assert isinstance(it["meta"]["check"], str) and it["meta"]["check"].strip()
        assert isinstance(it["meta"]["fast"], bool) and isinstance(it["meta"]["small"], bool)


def test_ids_unique(items: list[dict]) -> None:
    ids = [it["id"] for it in items]
    assert len(ids) == len(set(ids))


def test_no_group_spans_two_splits(items: list[dict]) -> None:
    splits: dict[str, set[str]] = defaultdict(set)
    for it in items:
        splits[it["group"]].add(it["split"])
    assert all(len(s) == 1 for s in splits.values()), {g: s for g, s in splits.items() if len(s) > 1}


def test_every_task_and_split_present(items: list[dict]) -> None:
    tasks = Counter(it["task"] for it in items)
    assert set(tasks) == TASKS
    assert tasks["interaction"] == max(tasks.values())  # interaction is the largest task
    splits = Counter(it["split"] for it in items)
    assert set(splits) == SPLITS
    assert splits["train"] > splits["val"] > splits["test"]
    for t in TASKS:
        assert {it["split"] for it in items if it["task"] == t} == SPLITS, t


def test_fast_and_small_subsets(items: list[dict]) -> None:
    fast = Counter(it["split"] for it in items if it["meta"]["fast"])
    assert fast == Counter({"train": 10, "val": 6})
    small = Counter(it["split"] for it in items if it["meta"]["small"])
    assert 20 <= small["train"] <= 30 and 10 <= small["val"] <= 15 and small["test"] == 0
    for it in items:
        if it["meta"]["fast"]:
            assert it["meta"]["small"], it["id"]  # small is a superset of fast
    assert len({it["task"] for it in items if it["meta"]["fast"]}) >= 3  # mixed tasks


def test_sources_trace_to_files_in_notice(items: list[dict], notice: str) -> None:
    for it in items:
        sources = it["meta"]["sources"]
        assert isinstance(sources, list) and sources, it["id"]
        for s in sources:
            assert s["file"] in notice, (it["id"], s["file"])
            if s["file"].endswith((".tsv", ".csv", ".json")):
                assert isinstance(s["row"], int) and s["row"] >= 1, (it["id"], s)


def test_notice_lists_every_source_with_its_licence(notice: str) -> None:
    expected = {
        "DrugCentral": ["CC BY 4.0", "olegursu/drugtarget", "64630f7c"],
        "fda_roles.csv": ["public domain", "MIT", "akarales/drug-interaction-visualizer", "7b91b4c0",
                          "fda.gov"],
        "drug-interaction-mcp": ["MIT", "Pillright", "0.1.0", "Permission is hereby granted"],
        "openFDA": ["CC0", "FDA/openfda", "2c152208"],
        "MedQuAD": ["CC BY 4.0", "abachaa/MedQuAD", "577bd37b", "Ben Abacha"],
    }
    for name, needles in expected.items():
        assert name in notice, name
        for n in needles:
            assert n in notice, (name, n)
    for shipped in ("demo.jsonl", "embed_stage1.jsonl", "embed_stage2.jsonl", "embed_stage3.jsonl"):
        assert shipped in notice


def test_normalize_references_are_json(items: list[dict]) -> None:
    norm = [it for it in items if it["task"] == "normalize"]
    assert norm
    for it in norm:
        obj = json.loads(it["reference"])
        assert set(obj) == {"name", "class", "targets", "actions", "enzyme_roles"}, it["id"]
        assert obj["name"] == it["group"]
        assert isinstance(obj["class"], str) and obj["class"]
        assert isinstance(obj["targets"], list) and obj["targets"]
        assert isinstance(obj["actions"], list) and obj["actions"]
        assert isinstance(obj["enzyme_roles"], list)
        for role in obj["enzyme_roles"]:
            assert {"pathway", "role"} <= set(role)


def test_interaction_items(items: list[dict]) -> None:
    inter = [it for it in items if it["task"] == "interaction"]
    for it in inter:
        m = re.fullmatch(r"Explain the interaction between (.+) and (.+)\.", it["prompt"])
        assert m, it["prompt"]
        assert it["group"] == "+".join(sorted([m.group(1).lower(), m.group(2).lower()]))
    kinds = Counter(it["meta"]["kind"] for it in inter)
    assert kinds["fda-table"] > 0 and kinds["mcp"] > 0
    for it in inter:
        if it["meta"]["kind"] == "mcp" and "CYP" not in it["reference"]:
            assert "reviewed by hand" in it["meta"]["check"], it["id"]
        if it["meta"]["kind"] == "fda-table":
            assert any(s["file"] == "fda-roles/fda_roles.csv" for s in it["meta"]["sources"])


def test_prompts_match_task_style(items: list[dict]) -> None:
    for it in items:
        p = it["prompt"]
        if it["task"] == "moa":
            assert p.startswith("State the mechanism of action of ") and p.endswith(" in one sentence.")
        elif it["task"] == "normalize":
            assert p.startswith("Normalize the product ")
            assert "name, class, targets, actions, enzyme_roles" in p
        elif it["task"] == "card":
            assert p.startswith("Create a concise clinical card for ")
            assert len(it["reference"].splitlines()) >= 4


def _embed(stage: int) -> list[dict]:
    rows = _jsonl(embed_stage_path(stage))
    for r in rows:
        assert {"anchor", "positive", "group", "source"} <= set(r), r
        assert r["anchor"].strip() and r["positive"].strip() and r["group"].strip()
    return rows


def test_embedding_stage_sizes() -> None:
    assert 500 <= len(_embed(1)) <= 700
    assert 250 <= len(_embed(2)) <= 350
    assert 500 <= len(_embed(3)) <= 700


def _name_leaks(query: str, name: str) -> bool:
    q = query.lower()
    n = name.lower()
    if n in q:
        return True
    words = [w for w in re.split(r"[\s\-/,()]+", n) if len(w) >= 4]
    return len(words) > 1 and any(w in q for w in words)


def test_stage3_queries_never_name_their_drug() -> None:
    rows = _embed(3)
    for r in rows:
        assert not _name_leaks(r["anchor"], r["positive"]), r
        assert r["group"] == r["positive"]
    assert len({r["anchor"] for r in rows}) == len(rows)  # one positive per query string


def test_stage2_covers_safety_types() -> None:
    rows = _embed(2)
    groups = Counter(r["group"] for r in rows)
    for qtype in ("contraindication", "side effects", "precautions", "interactions with medications"):
        assert groups[qtype] >= 10, qtype
