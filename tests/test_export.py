"""DPO export: each rule, the student's prompt, manifests, formats, and one DPO step in TRL."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import types
from pathlib import Path

import pytest

from preceptor.engine.events import run
from preceptor.engine.export.dpo import DPOExportOptions, dpo_records, export_dpo, manifest_path
from preceptor.engine.export.votes import export_votes
from preceptor.errors import PreceptorError
from tests.test_stats_support import Judged

SYSTEM_TURN = "You are a careful clinical pharmacology assistant."
GROUNDED = "REFERENCE FACTS (teacher only): "


@pytest.fixture
def student_prompt(monkeypatch: pytest.MonkeyPatch):
    """The real student_messages when the templates module exists, else a stand-in with its contract."""
    try:
        from preceptor.prompts.templates import student_messages
    except ImportError:
        def student_messages(prompt, system=None):
            return [{"role": "system", "content": SYSTEM_TURN}, {"role": "user", "content": prompt.text}], "hash-student"

        mod = types.ModuleType("preceptor.prompts.templates")
        mod.student_messages = student_messages  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "preceptor.prompts.templates", mod)
    return student_messages


def _pair(j: Judged, i: int, split: str = "train", **kw):
    pid = j.prompt(f"How do drug A{i} and drug B{i} interact?", split=split, **kw)
    pair, outs = j.pair(pid, {"base": f"base answer {i}", "teacher": f"teacher answer {i}: CYP3A inhibition"})
    return pid, pair, outs


def _rows_by_pair(rows):
    return {r["pair_id"]: r for r in rows}


def test_rules_each_counted(project, student_prompt) -> None:
    j = Judged(project)
    made = {}
    _, p, o = _pair(j, 1)
    j.vote(p, o, "teacher")
    made["win"] = p
    _, p, o = _pair(j, 2)
    j.vote(p, o, None, verdict="tie")
    made["tie"] = p
    _, p, o = _pair(j, 3)
    j.vote(p, o, None, verdict="both_bad")
    made["both_bad"] = p
    _, p, o = _pair(j, 4)
    j.vote(p, o, "teacher", unsafe=("teacher",))
    made["unsafe"] = p
    _, p, o = _pair(j, 5)
    j.vote(p, o, "base", unsafe=("teacher",))
    made["unsafe_rejected_ok"] = p
    _, p, o = _pair(j, 6)
    j.vote(p, o, "teacher", judge="ann")
    j.vote(p, o, "base", judge="bob")
    made["conflict"] = p
    _, p, o = _pair(j, 7)  # no votes
    _, p, o = _pair(j, 8, split="val")
    j.vote(p, o, "teacher")
    made["val"] = p
    _, p, o = _pair(j, 9, bad="wrong reference")
    j.vote(p, o, "teacher")
    _, p, o = _pair(j, 10)
    j.vote(p, o, None, kind="llm", judge="gpt", verdict="unparsed")
    # precedence: the expert overrules two LLM votes; majority inside the human tier
    _, p, o = _pair(j, 11)
    j.vote(p, o, "base")
    j.vote(p, o, "teacher", kind="llm", judge="gpt")
    made["expert_over_llm"] = p
    _, p, o = _pair(j, 12)
    for judge in ("ann", "bob"):
        j.vote(p, o, "base", judge=judge)
    j.vote(p, o, "teacher", judge="cat")
    made["majority"] = p
    # an unparsed LLM verdict falls through to the metric judge
    _, p, o = _pair(j, 13)
    j.vote(p, o, None, kind="llm", judge="gpt", verdict="unparsed")
    j.vote(p, o, "teacher", kind="metric", judge="rougeL")
    made["fallthrough"] = p
    # a superseded vote counts once (the newest), a repeat never
    _, p, o = _pair(j, 14)
    old = j.vote(p, o, "teacher")
    j.vote(p, o, "base", supersedes=old)
    j.vote(p, o, "teacher", repeat=True)
    made["superseded"] = p

    rows, info = dpo_records(project, DPOExportOptions(style="standard"))
    by = _rows_by_pair(rows)
    ex = info["excluded"]
    assert (ex["tie"], ex["both_bad"], ex["unsafe_chosen"], ex["conflict"], ex["no_votes"], ex["bad_item"],
            ex["unparsed"]) == (1, 1, 1, 1, 1, 1, 1)
    assert set(by) == {made[k] for k in ("win", "unsafe_rejected_ok", "expert_over_llm", "majority", "fallthrough",
                                         "superseded")}
    assert by[made["win"]]["chosen"] == "teacher answer 1: CYP3A inhibition"
    assert by[made["unsafe_rejected_ok"]]["chosen"] == "base answer 5"  # unsafe may be rejected, never chosen
    assert all(r["chosen_system"] != "teacher" or r["pair_id"] != made["unsafe"] for r in rows)
    assert by[made["expert_over_llm"]]["chosen_system"] == "base" and by[made["expert_over_llm"]]["source"] == "human"
    maj = by[made["majority"]]
    assert maj["chosen_system"] == "base" and maj["agreement"] == pytest.approx(2 / 3)
    assert maj["judges"] == "expert:ann,expert:bob" and maj["n_votes"] == 3
    assert by[made["fallthrough"]]["source"] == "metric"
    assert by[made["superseded"]]["chosen_system"] == "base" and by[made["superseded"]]["n_votes"] == 1
    assert info["considered"] == 13  # the val pair is outside the train split
    assert info["out_of_split"] == 1


def test_no_val_or_test_prompt_leaks_into_train(project, student_prompt) -> None:
    j = Judged(project)
    ids = {}
    for i, split in enumerate(("train", "val", "test", "train")):
        _, p, o = _pair(j, i, split=split)
        j.vote(p, o, "teacher")
        ids[p] = split
    rows, _ = dpo_records(project, DPOExportOptions())
    assert {r["split"] for r in rows} == {"train"} and len(rows) == 2
    assert {ids[r["pair_id"]] for r in rows} == {"train"}
    rows, _ = dpo_records(project, DPOExportOptions(split="val"))
    assert [ids[r["pair_id"]] for r in rows] == ["val"]
    rows, _ = dpo_records(project, DPOExportOptions(split="all"))
    assert len(rows) == 4


def test_sources_agreed_and_min_confidence(project, student_prompt) -> None:
    j = Judged(project)
    _, p1, o = _pair(j, 1)
    j.vote(p1, o, "teacher")
    j.vote(p1, o, "teacher", kind="llm", judge="gpt", confidence=0.9)
    _, p2, o = _pair(j, 2)
    j.vote(p2, o, "teacher")
    j.vote(p2, o, "base", kind="llm", judge="gpt", confidence=0.95)
    _, p3, o = _pair(j, 3)
    j.vote(p3, o, "base", kind="llm", judge="gpt", confidence=0.4)
    _, p4, o = _pair(j, 4)
    j.vote(p4, o, "teacher")
    rows, info = dpo_records(project, DPOExportOptions(source="agreed"))
    assert [r["pair_id"] for r in rows] == [p1] and rows[0]["source"] == "agreed"
    assert (info["excluded"]["disagreement"], info["excluded"]["no_human_vote"], info["excluded"]["no_llm_vote"]) == (1, 1, 1)
    rows, _ = dpo_records(project, DPOExportOptions(source="llm"))
    assert {r["pair_id"]: r["chosen_system"] for r in rows} == {p1: "teacher", p2: "base", p3: "base"}
    rows, info = dpo_records(project, DPOExportOptions(source="llm", min_confidence=0.5))
    assert sorted(r["pair_id"] for r in rows) == [p1, p2] and info["excluded"]["low_confidence"] == 1
    assert rows[0]["confidence"] == pytest.approx(0.9)
    rows, _ = dpo_records(project, DPOExportOptions(source="expert", min_confidence=0.99))  # human votes count 1.0
    assert sorted(r["pair_id"] for r in rows) == [p1, p2, p4]
    rows, _ = dpo_records(project, DPOExportOptions(systems=("base", "teacher")))
    assert len(rows) == 4
    with pytest.raises(PreceptorError, match="no pair qualifies"):
        dpo_records(project, DPOExportOptions(systems=("base", "ft")))


def test_duplicates_and_identical_answers_removed(project, student_prompt) -> None:
    j = Judged(project)
    pid = j.prompt("Same prompt?", split="train")
    p1, o1 = j.pair(pid, {"base": "one", "teacher": "two"})
    j.vote(p1, o1, "teacher")
    p2, o2 = j.pair(pid, {"ft": "two", "base": "one"})  # ft said the same as teacher: a duplicate row
    j.vote(p2, o2, "ft")
    p3, o3 = j.pair(pid, {"dpo": "one", "teacher": "two"})
    j.vote(p3, o3, "dpo")
    p4, o4 = j.pair(pid, {"ft": "two", "teacher": "two"})
    j.vote(p4, o4, "ft")
    rows, info = dpo_records(project, DPOExportOptions(style="standard"))
    assert [(r["pair_id"], r["chosen"], r["rejected"]) for r in rows] == [(p1, "two", "one"), (p3, "one", "two")]
    assert info["excluded"]["duplicate"] == 1 and info["excluded"]["identical"] == 1


def test_prompt_is_the_students_never_the_teachers(project, student_prompt) -> None:
    from preceptor.db import outputs as q_outputs
    from preceptor.db import prompts as q_prompts

    j = Judged(project)
    pid, p, o = _pair(j, 1)
    # the teacher's provenance holds the grounded prompt with reference facts
    teacher_msgs = [{"role": "user", "content": GROUNDED + "clarithromycin inhibits CYP3A"}]
    q_outputs.record(project.store, pid, j.systems["teacher"], text="teacher answer 1: CYP3A inhibition",
                     messages=teacher_msgs)
    j.vote(p, o, "teacher")
    expected, thash = student_prompt(q_prompts.get(project.store, pid))
    turns = [m for m in expected if m["role"] in ("system", "user")]
    [std], _ = dpo_records(project, DPOExportOptions(style="standard"))
    [conv], _ = dpo_records(project, DPOExportOptions(style="conversational"))
    assert std["prompt"] == "\n\n".join(m["content"] for m in turns)
    assert conv["prompt"] == turns
    assert conv["chosen"] == [{"role": "assistant", "content": "teacher answer 1: CYP3A inhibition"}]
    assert conv["rejected"] == [{"role": "assistant", "content": "base answer 1"}]
    assert std["template_hash"] == thash
    for rec in (std, conv):
        assert GROUNDED not in json.dumps(rec)


def test_empty_export_lists_rule_counts(project, student_prompt, tmp_path: Path) -> None:
    j = Judged(project)
    _, p, o = _pair(j, 1)
    j.vote(p, o, None, verdict="tie")
    _, p, o = _pair(j, 2)
    j.vote(p, o, None, verdict="both_bad")
    _, p, o = _pair(j, 3, split="val")
    j.vote(p, o, "teacher")
    with pytest.raises(PreceptorError) as err:
        run(export_dpo(project, tmp_path / "exports" / "out.jsonl", DPOExportOptions()))
    assert err.value.title == "Empty export"
    assert err.value.message == ("no pair qualifies (split train, source all): 2 pairs considered; excluded: tie 1, "
                                 "both_bad 1; 1 judged pairs are in other splits")
    assert "pick another --split" in err.value.hint
    assert not list((tmp_path / "exports").iterdir())  # no data file, no temp file, no manifest
    assert project.store.scalar("SELECT COUNT(*) FROM exports") == 0


def _judged_train_set(project, n: int = 6) -> Judged:
    j = Judged(project)
    for i in range(n):
        _, p, o = _pair(j, i)
        j.vote(p, o, "teacher" if i % 3 else "base", confidence=None)
    _, p, o = _pair(j, 99)
    j.vote(p, o, None, verdict="tie")
    return j


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_files_manifest_sha_and_exports_row(project, student_prompt, tmp_path: Path, fmt: str) -> None:
    import datasets

    _judged_train_set(project)
    out = tmp_path / f"dpo.{fmt}"
    summary = run(export_dpo(project, out, DPOExportOptions(style="conversational"), fmt=fmt))
    assert summary["n"] == 6 and summary["excluded"]["tie"] == 1
    manifest = json.loads(manifest_path(out).read_text())
    if fmt == "hf":
        ds = datasets.load_from_disk(str(out))
    else:
        ds = datasets.load_dataset(fmt if fmt == "parquet" else "json", data_files=str(out), split="train")
        assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(ds) == 6 and ds[0]["chosen"][0]["role"] == "assistant"
    assert {"prompt", "chosen", "rejected", "pair_id", "split", "chosen_system", "judges"} <= set(ds.column_names)
    assert manifest["n"] == 6 and manifest["excluded"]["tie"] == 1 and sum(manifest["excluded"].values()) == 1
    assert manifest["considered"] == 7 and manifest["filters"]["split"] == "train"
    assert manifest["project_schema_version"] == project.store.schema_version
    assert manifest["schema"] == "preceptor.dpo-export/1" and manifest["sha256"] == summary["sha256"]
    [row] = project.store.all("SELECT kind, path, n, sha256 FROM exports")
    assert tuple(row) == ("dpo", str(out), 6, summary["sha256"])
    with pytest.raises(PreceptorError, match="already exists"):
        run(export_dpo(project, out, DPOExportOptions(), fmt=fmt))


def test_votes_export_csv_and_jsonl(project, tmp_path: Path) -> None:
    j = Judged(project)
    _, p, o = _pair(j, 1)
    old = j.vote(p, o, "teacher", left="base")
    j.vote(p, o, "base", supersedes=old, left="teacher", unsafe=("teacher",))
    _, p2, o2 = _pair(j, 2, split="val")
    j.vote(p2, o2, None, verdict="both_bad", kind="llm", judge="gpt")
    run(export_votes(project, tmp_path / "votes.csv", "csv"))
    rows = list(csv.DictReader((tmp_path / "votes.csv").open()))
    assert [(r["pair_id"], r["verdict"], r["winner_system"], r["left_system"], r["unsafe_b"]) for r in rows] == [
        (str(p), "win", "base", "teacher", "True"), (str(p2), "both_bad", "", "base", "False")]
    run(export_votes(project, tmp_path / "all.jsonl", "jsonl", include_superseded=True))
    recs = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["superseded"] for r in recs] == [True, False, False]
    assert recs[0]["prompt"] == "How do drug A1 and drug B1 interact?"
    assert project.store.scalar("SELECT COUNT(*) FROM exports WHERE kind = 'votes'") == 2


@pytest.mark.parametrize("style", ["standard", "conversational"])
def test_dpo_trainer_runs_one_step_on_the_export(project, student_prompt, tmp_path: Path, tiny_lm: Path, style: str) -> None:
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    _judged_train_set(project)
    out = tmp_path / "dpo.jsonl"
    run(export_dpo(project, out, DPOExportOptions(style=style)))
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    args = DPOConfig(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
                     bf16=False, report_to=[], save_strategy="no", gradient_checkpointing=False, max_length=64,
                     logging_steps=1, disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    result = trainer.train()
    assert trainer.state.global_step == 1
    assert result.training_loss == pytest.approx(0.6931, abs=0.05)  # log 2 at step one: the reference is the base


def test_student_prompt_shortcut_equals_student_messages(project, student_prompt) -> None:
    from preceptor.db import prompts as q_prompts

    j = Judged(project)
    texts = ["  leading and trailing spaces  ", "braces {{ prompt }} and {x} inside", "line one\n\nline two",
             "\\x00 and $1 \\1 replacement-looking text", "plain"]
    pairs = {}
    for i, text in enumerate(texts):
        pid = j.prompt(text, split="train")
        p, o = j.pair(pid, {"base": f"b{i}", "teacher": f"t{i}"})
        j.vote(p, o, "teacher")
        pairs[p] = pid
    for style in ("conversational", "standard"):
        rows, _ = dpo_records(project, DPOExportOptions(style=style))
        assert len(rows) == len(texts)
        for r in rows:
            msgs, _ = student_prompt(q_prompts.get(project.store, pairs[r["pair_id"]]))
            turns = [m for m in msgs if m["role"] in ("system", "user")]
            assert r["prompt"] == (turns if style == "conversational" else "\n\n".join(m["content"] for m in turns))


@pytest.mark.parametrize("source", ["expert", "llm", "metric", "agreed", "all"])
def test_an_answer_flagged_unsafe_is_never_chosen_whatever_the_source(project, student_prompt, source) -> None:
    j = Judged(project)
    _, p, o = _pair(j, 1)
    # the expert prefers the base answer and flags the teacher's unsafe; both machines prefer the teacher's
    j.vote(p, o, "base", unsafe=("teacher",))
    j.vote(p, o, "teacher", kind="llm", judge="gpt")
    j.vote(p, o, "teacher", kind="metric", judge="rougeL")
    # the same unsafe answer, in a second pair (against another system) judged by the metric judge only
    pid1 = project.store.scalar("SELECT prompt_id FROM pairs WHERE id = ?", (p,))
    o2 = {"teacher": o["teacher"], "ft": j.answer(int(pid1), "ft", "ft answer 1")}
    with project.store.tx():
        other = project.store.execute("INSERT INTO pairs (prompt_id, output_a, output_b, split, created_at) "
                                      "VALUES (?,?,?,?,?)", (pid1, *sorted(o2.values()), "val", "2026")).lastrowid
    j.vote(int(other), o2, "teacher", kind="metric", judge="rougeL")
    try:
        rows, info = dpo_records(project, DPOExportOptions(source=source))
    except PreceptorError as err:  # nothing else qualified: an empty export is refused, nothing chosen
        assert err.title == "Empty export"
        return
    assert all(r["chosen_output_id"] != o["teacher"] for r in rows)
    if source in ("llm", "metric"):
        assert info["excluded"]["unsafe_chosen"] >= 1
        assert info["unsafe_flagged_by"].get("expert", 0) >= 1


def test_metric_source_export_counts_unsafe_exclusions_in_the_manifest(project, student_prompt, tmp_path) -> None:
    j = Judged(project)
    for i in range(3):
        _, p, o = _pair(j, i)
        j.vote(p, o, "teacher", kind="metric", judge="rougeL")
        if i == 0:
            j.vote(p, o, None, verdict="tie", unsafe=("teacher",))  # an expert's flag, whatever verdict
    out = tmp_path / "m.jsonl"
    run(export_dpo(project, out, DPOExportOptions(source="metric")))
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["n"] == 2
    assert manifest["excluded"]["unsafe_chosen"] == 1
    assert manifest["unsafe_flagged_by"] == {"expert": 1}


def _hf_student(project, name: str, role: str, system_prompt: str | None) -> int:
    from preceptor.db import systems as q_systems

    params = {"system_prompt": system_prompt} if system_prompt else {}
    return q_systems.upsert(project.store, name, role=role, backend="hf", model="tiny", params=params).id


def test_export_prompt_is_exactly_what_the_student_was_asked(project, student_prompt) -> None:
    from preceptor.db import outputs as q_outputs
    from preceptor.prompts.templates import student_messages

    sid = _hf_student(project, "ft-1", "ft", SYSTEM_TURN)
    j = Judged(project)
    pid = j.prompt("How do clarithromycin and simvastatin interact?", split="train")
    msgs, thash = student_messages("How do clarithromycin and simvastatin interact?", SYSTEM_TURN)
    q_outputs.record(project.store, pid, sid, text="ft answer", messages=msgs, template_hash=thash)
    j.systems["ft-1"] = sid
    outs = {"ft-1": int(project.store.scalar("SELECT id FROM outputs WHERE system_id = ?", (sid,))),
            "teacher": j.answer(pid, "teacher", "teacher answer: CYP3A4 inhibition raises simvastatin")}
    a, b = sorted(outs.values())
    with project.store.tx():
        p = project.store.execute("INSERT INTO pairs (prompt_id, output_a, output_b, split, created_at) VALUES (?,?,?,?,?)",
                                  (pid, a, b, "train", "2026")).lastrowid
    j.vote(int(p), outs, "teacher")
    [row], info = dpo_records(project, DPOExportOptions())  # conversational by default
    assert row["prompt"] == [m for m in msgs if m["role"] in ("system", "user")]
    assert row["prompt"][0] == {"role": "system", "content": SYSTEM_TURN}
    assert row["template_hash"] == thash
    assert info["student_system"] == "ft-1" and info["system_prompt"] is True
    # the student's system prompt changed after it answered: the export refuses, naming the pair
    project.store.execute("UPDATE systems SET params = ? WHERE id = ?", (json.dumps({"system_prompt": "Be brief."}), sid))
    with pytest.raises(PreceptorError) as err:
        dpo_records(project, DPOExportOptions())
    assert err.value.title == "Prompt mismatch"
    assert f"pair ids {p}" in err.value.message


def test_against_reference_pairs_the_reference_with_the_newest_answer(project, student_prompt, tmp_path: Path) -> None:
    j = Judged(project)
    ids = {}
    for i, name in enumerate(("ok", "newest", "bad", "no_ref", "no_answer", "identical", "val")):
        ids[name] = j.prompt(f"How do drug A{i} and drug B{i} interact?", split="val" if name == "val" else "train",
                             bad="wrong reference" if name == "bad" else None)
    ref = {name: project.store.scalar("SELECT reference FROM prompts WHERE id=?", [pid]) for name, pid in ids.items()}
    for name, pid in ids.items():
        if name != "no_answer":
            j.answer(pid, "ft-1", ref[name] if name == "identical" else f"student answer to {name}")
    j.answer(ids["newest"], "ft-1", "a later student answer")
    with project.store.tx():
        project.store.execute("UPDATE prompts SET reference = NULL WHERE id = ?", [ids["no_ref"]])
    rows, stats = dpo_records(project, DPOExportOptions(against_reference="ft-1"))
    by_prompt = {r["prompt_id"]: r for r in rows}
    assert set(by_prompt) == {ids["ok"], ids["newest"]}  # train split only
    assert by_prompt[ids["ok"]]["chosen"] == [{"role": "assistant", "content": ref["ok"]}]
    assert by_prompt[ids["ok"]]["rejected"] == [{"role": "assistant", "content": "student answer to ok"}]
    assert by_prompt[ids["newest"]]["rejected"][0]["content"] == "a later student answer"
    assert {r["source"] for r in rows} == {"reference"} and {r["rejected_system"] for r in rows} == {"ft-1"}
    assert stats["excluded"] == {"bad_item": 1, "no_reference": 1, "missing_output": 1, "identical": 1, "duplicate": 0}
    assert stats["considered"] == 6
    out = tmp_path / "spin.jsonl"
    done = run(export_dpo(project, out, DPOExportOptions(against_reference="ft-1", style="standard")))
    assert done["n"] == 2
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["sources"] == {"reference": 2} and "reference chosen" in manifest["rules"]
    assert manifest["filters"]["against_reference"] == "ft-1"
    with pytest.raises(PreceptorError, match="need no votes"):
        DPOExportOptions(against_reference="ft-1", source="expert")
    with pytest.raises(PreceptorError, match="Generate"):
        dpo_records(project, DPOExportOptions(against_reference="ft-1", split="test"))
