"""`preceptor demo --student MODEL`: the measured loop on a student the user names."""

from __future__ import annotations

from preceptor.cli import main
from preceptor.db import systems as q_systems
from preceptor.engine.demo import _student_systems
from preceptor.engine.generation import systems


def test_a_named_student_is_the_base_and_the_grounded_teacher(project, tiny_lm):
    name = _student_systems(project, str(tiny_lm))
    created = systems.ensure_default_systems(project)
    assert systems.DEFAULT_BASE not in created and systems.DEFAULT_TEACHER not in created
    base, teacher = systems.resolve(project, "base"), systems.resolve(project, "teacher")
    assert (base.name, base.backend, base.model) == (name, "hf", str(tiny_lm))
    assert (teacher.name, teacher.backend, teacher.model) == (f"grounded-{name}", "grounded", str(tiny_lm))
    # declared in preceptor.toml, so the project keeps them after the demo
    text = (project.root / "preceptor.toml").read_text(encoding="utf-8")
    assert f"[systems.{name}]" in text and str(tiny_lm) in text
    assert q_systems.by_name(project.store, systems.DEFAULT_BASE) is None


def test_qwen3_students_answer_without_thinking(project):
    name = _student_systems(project, "Qwen/Qwen3-1.7B")
    assert name == "qwen3-1.7b"
    base = q_systems.by_name(project.store, name)
    assert base.model == "Qwen/Qwen3-1.7B"
    assert base.params["chat_template_kwargs"] == {"enable_thinking": False}


def test_student_is_only_for_the_measured_loop(tmp_path, capsys):
    code = main(["demo", "--fast", "--student", "Qwen/Qwen3-1.7B", "--dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "--student cannot be combined with --fast" in err
    assert not (tmp_path / "d").exists()


def test_the_measured_loop_end_to_end_on_a_tiny_student(tmp_path, tiny_lm, monkeypatch):
    """run_loop with --student on a tiny model and a handful of items: SFT on gold, SPIN pairs
    (reference vs the ft answer) on the other drugs, DPO with the LM term, then the gains."""
    import json

    from preceptor.db import runs as q_runs
    from preceptor.engine import demo
    from preceptor.engine.events import run
    from preceptor.project import Project

    items = demo.demo_items()
    dpo_groups = sorted({it["group"] for it in demo._split_halves(items, 0.25)[1]})[:2]
    train = [it for it in items if it["split"] == "train"]
    sft_groups = sorted({it["group"] for it in train if it["group"] not in set(dpo_groups)})[:3]
    keep = ([next(it for it in train if it["group"] == g) for g in dpo_groups + sft_groups]
            + [it for it in items if it["split"] == "val"][:3])
    monkeypatch.setattr(demo, "demo_items", lambda: keep)
    declare = demo._student_systems

    def sampling(project, model):  # an untrained tiny model answers greedy with blank lines only
        name = declare(project, model)
        for n, role, backend in ((name, "base", "hf"), (f"grounded-{name}", "teacher", "grounded")):
            systems.add(project, n, role=role, backend=backend, model=model,
                        params={"do_sample": True, "temperature": 3.0, "seed": 7})
        return name

    monkeypatch.setattr(demo, "_student_systems", sampling)
    preset = demo.LoopPreset(sft_epochs=1, dpo_epochs=1, max_new_tokens=6, lora_r=4, student=str(tiny_lm))
    summary = run(demo.run_loop_with_gains(tmp_path / "loop", preset))
    stages = [t["stage"] for t in summary["stages"]]
    assert "export dpo (reference vs ft, DPO drugs)" in stages and not any("base (DPO drugs" in s for s in stages)
    project = Project.open(tmp_path / "loop")
    try:
        (dpo_run,) = q_runs.list_runs(project.store, kind="dpo")
        assert dpo_run.status == "succeeded" and dpo_run.config["settings"]["sft_weight"] == 1.0
        assert dpo_run.config["data"]["train"] == 2  # one pair per DPO drug: its reference vs the ft answer
        pairs = [json.loads(line) for line in open(dpo_run.config["pairs"], encoding="utf-8")]
        refs = {it["reference"] for it in keep}
        assert all(p["chosen"][0]["content"] in refs and p["rejected_system"] == "ft-loop" for p in pairs)
    finally:
        project.close()
    rows = {(r["child"], r["other"]): r for r in summary["gains"]["rows"]}
    assert ("ft-loop", tiny_lm.name) in rows and ("dpo-loop", "ft-loop") in rows
    assert rows[("dpo-loop", "ft-loop")]["n"] == 3
