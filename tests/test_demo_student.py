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
