"""Systems: defaults, preceptor.toml definitions, `systems add/list/show/preset`, role names."""

from __future__ import annotations

import json

import pytest

from preceptor import config as cfg
from preceptor.cli import main
from preceptor.db import systems as q_systems
from preceptor.engine.generation import systems
from preceptor.errors import PreceptorError


def test_defaults_then_role_names_follow_the_latest(project):
    created = systems.ensure_default_systems(project)
    assert created == ["smollm2", "grounded-teacher"]
    assert systems.ensure_default_systems(project) == []  # idempotent
    assert q_systems.resolve(project.store, "base").name == "smollm2"
    systems.add(project, "big", role="base", backend="hf", model="Qwen/Qwen3-1.7B")
    assert q_systems.resolve(project.store, "base").name == "big"
    assert q_systems.resolve(project.store, "smollm2").name == "smollm2"


def test_add_writes_preceptor_toml_and_the_database(project):
    s = systems.add(project, "gpt-4o-mini", role="teacher", backend="litellm", model="openrouter/openai/gpt-4o-mini",
                    params={"temperature": 0.0, "max_tokens": 800})
    assert s.params == {"temperature": 0.0, "max_tokens": 800}
    table = cfg.load(project.config_path)["systems"]["gpt-4o-mini"]
    assert table == {"role": "teacher", "backend": "litellm", "model": "openrouter/openai/gpt-4o-mini",
                     "params": {"temperature": 0.0, "max_tokens": 800}}
    # redefining replaces the params (a key removed is gone)
    systems.add(project, "gpt-4o-mini", role="teacher", backend="litellm", model="openrouter/openai/gpt-4o-mini",
                api_base="http://127.0.0.1:9/v1", params={"temperature": 0.5})
    table = cfg.load(project.config_path)["systems"]["gpt-4o-mini"]
    assert table["params"] == {"temperature": 0.5} and table["api_base"] == "http://127.0.0.1:9/v1"
    assert q_systems.by_name(project.store, "gpt-4o-mini").params == {"temperature": 0.5, "api_base": "http://127.0.0.1:9/v1"}


def test_toml_definitions_sync_into_the_database(project):
    project.update_settings({"systems": {"local-qwen": {"role": "base", "backend": "litellm", "model": "openai/qwen",
                                                        "api_base": "http://127.0.0.1:8000/v1",
                                                        "params": {"max_tokens": 64}}}})
    assert "local-qwen" in systems.ensure_default_systems(project)
    s = q_systems.by_name(project.store, "local-qwen")
    assert (s.role, s.backend, s.model) == ("base", "litellm", "openai/qwen")
    assert s.params == {"max_tokens": 64, "api_base": "http://127.0.0.1:8000/v1"}
    assert "smollm2" not in {x.name for x in q_systems.all_systems(project.store)}  # a base exists: no default
    assert systems.sync(project) == []


@pytest.mark.parametrize("table, message", [
    ({"role": "boss", "backend": "hf", "model": "m"}, "[systems.x].role = 'boss' is not one of"),
    ({"role": "base", "backend": "vllm", "model": "m"}, "[systems.x].backend = 'vllm' is not one of"),
    ({"role": "base", "backend": "hf"}, "[systems.x].model is required for backend 'hf'"),
    ({"role": "base", "backend": "hf", "model": "m", "params": {"max_new_token": 5}}, "[systems.x].params: unknown parameter 'max_new_token' for backend hf"),
    ({"role": "base", "backend": "hf", "model": "m", "params": {"batch_size": "big"}}, "[systems.x].params.batch_size must be int, got 'big'"),
    ({"role": "teacher", "backend": "litellm", "model": "m", "params": {"api_key": "sk-123"}}, "[systems.x].params.api_key: API keys are never stored"),
    ({"role": "teacher", "backend": "hf", "model": "m", "api_base": "http://x"}, "[systems.x].api_base only applies to backend litellm"),
    ({"role": "base", "backend": "hf", "model": "m", "colour": "red"}, "[systems.x]: unknown key 'colour'"),
])
def test_invalid_definitions_name_the_file_and_key(project, table, message):
    project.update_settings({"systems": {"x": table}})
    with pytest.raises(PreceptorError) as err:
        systems.ensure_default_systems(project)
    assert err.value.message.startswith(f"{project.config_path}: ")
    assert message in err.value.message


def test_preset_seed000_switches_systems_and_judge(project):
    systems.ensure_default_systems(project)
    project.update_settings({"judge": {"system": "smollm2", "swap": "never"}})
    out = systems.preset(project, "seed000")
    assert out["systems"] == ["qwen3-1.7b", "gpt-4o-mini"]
    base = q_systems.resolve(project.store, "base")
    teacher = q_systems.resolve(project.store, "teacher")
    assert (base.model, base.backend) == ("Qwen/Qwen3-1.7B", "hf")
    assert base.params["chat_template_kwargs"] == {"enable_thinking": False}
    assert (teacher.model, teacher.backend) == ("openrouter/openai/gpt-4o-mini", "litellm")
    judge = cfg.load(project.config_path)["judge"]
    assert judge == {"backend": "litellm", "model": "openrouter/openai/gpt-4o-mini", "swap": "never"}


def test_preset_line_in_toml(project):
    project.update_settings({"systems": {"preset": "seed000"}})
    systems.ensure_default_systems(project)
    assert q_systems.resolve(project.store, "teacher").name == "gpt-4o-mini"
    project.update_settings({"systems": {"preset": "seed999"}})
    with pytest.raises(PreceptorError) as err:
        systems.ensure_default_systems(project)
    assert err.value.hint == "Known presets: seed000."


def test_parse_param_reads_json_values():
    assert systems.parse_param("temperature=0.2") == ("temperature", 0.2)
    assert systems.parse_param("do_sample=true") == ("do_sample", True)
    assert systems.parse_param('chat_template_kwargs={"enable_thinking": false}') == ("chat_template_kwargs", {"enable_thinking": False})
    assert systems.parse_param("system_prompt=Be brief.") == ("system_prompt", "Be brief.")
    with pytest.raises(PreceptorError) as err:
        systems.parse_param("temperature")
    assert err.value.message == "'temperature' is not key=value"


def test_systems_cli(project, capsys):
    root = str(project.root)
    project.close()
    assert main(["systems", "add", "vllm-qwen", "--project", root, "--role", "base", "--backend", "litellm",
                 "--model", "openai/Qwen3-1.7B", "--api-base", "http://127.0.0.1:8000/v1", "--param", "max_tokens=256"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "System vllm-qwen: role base, backend litellm, model openai/Qwen3-1.7B"
    assert main(["systems", "list", "--project", root]) == 0
    out = capsys.readouterr().out
    assert "vllm-qwen" in out and "base*" in out and "grounded-teacher" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert main(["systems", "show", "base", "--project", root]) == 0
    out = capsys.readouterr().out
    assert "base -> vllm-qwen" in out and "api_base: http://127.0.0.1:8000/v1" in out
    assert main(["systems", "show", "vllm-qwen", "--json", "--project", root]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == {"max_tokens": 256} and info["answers_for_role"] is True
    assert main(["systems", "add", "bad", "--project", root, "--backend", "hf", "--model", "m", "--param", "api_key=sk"]) == 2
    err = capsys.readouterr().err
    assert "Error: Secret in settings" in err and "OPENROUTER_API_KEY" in err
    assert main(["systems", "preset", "seed000", "--project", root]) == 0
    assert "API keys are read from the environment" in capsys.readouterr().out
