"""Prompt templates: validated variables, one-pass rendering, content hashes, packaged set."""

from __future__ import annotations

import re

import pytest

from preceptor.db.prompts import Prompt
from preceptor.errors import PreceptorError
from preceptor.prompts import templates
from preceptor.prompts.templates import Template


def _prompt(text: str, reference: str | None = None) -> Prompt:
    return Prompt(1, text, reference, "train", None, "g", "c", {}, None, None)


def test_every_packaged_template_loads_with_its_declared_variables():
    names = templates.names()
    for required in ("passthrough", "teacher", "teacher_grounded", "task_interaction", "task_normalize_json",
                     "task_moa_sentence", "task_clinical_card"):
        assert required in names
    for name in names:
        tpl = templates.get(name)
        assert tpl.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", tpl.hash)
        values = {v: f"<{v}>" for v in tpl.variables}
        messages = tpl.render(**values)
        text = "\n".join(m["content"] for m in messages)
        for v in tpl.variables:
            assert f"<{v}>" in text
        assert "{{" not in text


def test_render_names_missing_and_unknown_variables():
    tpl = Template("t", 1, "Be brief.", "Q: {{ prompt }} / {{ reference }}", ("prompt", "reference"))
    with pytest.raises(PreceptorError) as err:
        tpl.render(prompt="x")
    assert err.value.title == "Template variable missing"
    assert err.value.message == "template 't' needs 'reference'"
    with pytest.raises(PreceptorError) as err:
        tpl.render(prompt="x", reference="y", extra="z")
    assert err.value.message == "template 't' has no variable 'extra'"
    assert err.value.hint == "Its variables are: prompt, reference."


def test_undeclared_and_unused_variables_are_refused_when_built():
    with pytest.raises(PreceptorError) as err:
        Template("t", 1, "", "{{ prompt }} {{ other }}", ("prompt",))
    assert "placeholder {{ other }} is not declared" in err.value.message
    with pytest.raises(PreceptorError) as err:
        Template("t", 1, "", "{{ prompt }}", ("prompt", "unused"))
    assert "variable 'unused' is declared but never used" in err.value.message


def test_values_are_substituted_once():
    tpl = Template("t", 1, "", "A: {{ a }} B: {{ b }}", ("a", "b"))
    out = tpl.render(a="{{ b }}", b="2")
    assert out == [{"role": "user", "content": "A: {{ b }} B: 2"}]


def test_hash_follows_content():
    a = Template("t", 1, "sys", "{{ prompt }}", ("prompt",))
    b = Template("t", 1, "sys", "{{ prompt }}", ("prompt",))
    c = Template("t", 2, "sys", "{{ prompt }}", ("prompt",))
    d = Template("t", 1, "sys!", "{{ prompt }}", ("prompt",))
    assert a.hash == b.hash
    assert len({a.hash, c.hash, d.hash}) == 3


def test_template_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nuser = "{{ prompt }}"\nvariables = ["prompt"]\ncolour = "red"\n')
    with pytest.raises(PreceptorError) as err:
        templates.get(str(bad))
    assert err.value.message == f"{bad}: unknown key 'colour'"
    with pytest.raises(PreceptorError) as err:
        templates.get("no_such_template")
    assert err.value.title == "Template not found"
    assert "passthrough" in err.value.hint


def test_student_messages_depend_only_on_the_text():
    msgs, h = templates.student_messages("What does rifampin induce?")
    assert msgs == [{"role": "user", "content": "What does rifampin induce?"}]
    assert h == templates.get("passthrough").hash
    assert templates.student_messages(_prompt("What does rifampin induce?", "CYP3A")) == (msgs, h)
    with_sys, h2 = templates.student_messages("What does rifampin induce?", "Answer in one sentence.")
    assert with_sys[0] == {"role": "system", "content": "Answer in one sentence."}
    assert h2 != h
    assert templates.student_messages("What does rifampin induce?", "Answer in one sentence.")[1] == h2


def test_teacher_messages_grounded_carry_the_reference():
    msgs, h = templates.teacher_messages(_prompt("Mechanism of warfarin?", "Warfarin inhibits VKORC1."), grounded=True)
    assert msgs[0]["role"] == "system"
    assert "Mechanism of warfarin?" in msgs[-1]["content"] and "Warfarin inhibits VKORC1." in msgs[-1]["content"]
    assert h == templates.get("teacher_grounded").hash
    plain, h_plain = templates.teacher_messages("Mechanism of warfarin?", grounded=False)
    assert "clinical pharmacologist" in plain[0]["content"] and plain[-1]["content"] == "Mechanism of warfarin?"
    assert h_plain == templates.get("teacher").hash
    with pytest.raises(PreceptorError) as err:
        templates.teacher_messages(_prompt("Mechanism of warfarin?"), grounded=True)
    assert err.value.title == "No reference facts"


def test_task_styles_build_seed_000_prompts():
    assert templates.task_prompt("interaction", drug_a="warfarin", drug_b="aspirin") == \
        "Explain the drug-drug interaction between warfarin and aspirin."
    assert "atorvastatin" in templates.task_prompt("moa_sentence", product="atorvastatin")
    assert "JSON" in templates.task_prompt("normalize_json", product="Augmentin 625 Duo Tablet")
    msgs, _ = templates.task_messages("clinical_card", product="Aciloc 150 Tablet")
    assert msgs[0]["role"] == "system" and msgs[1]["content"] == "Create a concise clinical card for Aciloc 150 Tablet."
    with pytest.raises(PreceptorError) as err:
        templates.task_prompt("poem", product="x")
    assert err.value.message == "'poem' is not a task style"
