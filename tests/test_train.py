"""Training on the tiny local model: SFT and DPO change the adapter and register systems,
perplexity is recorded, a killed run resumes, cancel checkpoints, failures are readable.

Most runs execute the worker in this process (``worker.execute``: the same code the
training process runs) to keep the suite fast; one test goes through real processes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest

from preceptor.db import prompts as q_prompts
from preceptor.db import runs as q_runs
from preceptor.db import systems as q_systems
from preceptor.engine import events
from preceptor.engine.ingest.prompts import ImportOptions, import_prompts
from preceptor.engine.train import runner, settings, worker
from preceptor.engine.train.context import latest_checkpoint
from preceptor.engine.train.settings import DPOSettings, SFTSettings
from preceptor.errors import PreceptorError
from preceptor.testing.tiny import CORPUS

FAST = dict(max_steps=4, batch_size=2, grad_accum=1, lr=5e-3, max_length=128, lora_r=4, threads=1, device="cpu")


@pytest.fixture
def train_project(project, tiny_lm, tmp_path):
    """24 prompts with imported teacher answers (train/val), and a `base` system on the tiny model."""
    data = tmp_path / "ddi.jsonl"
    with open(data, "w") as fh:
        for i in range(24):
            fh.write(json.dumps({"prompt": f"Question {i}: {CORPUS[i % 10]}", "group": f"g{i}",
                                 "response_teacher": CORPUS[(i + 3) % len(CORPUS)]}) + "\n")
    events.run(import_prompts(project, data, ImportOptions(val_ratio=0.25, group_col="group")))
    q_systems.upsert(project.store, "base", role="base", backend="hf", model=str(tiny_lm))
    return project


def _run(project, kind, cls, extra=None, **flags):
    s = settings.resolve(project, cls, **{**FAST, **flags})
    run = q_runs.create(project.store, kind, {"settings": settings.to_dict(s), **(extra or {})})
    q_runs.update(project.store, run.id, dir=str(project.runs_dir() / f"{run.id}-{kind}"))
    worker.execute(project.root, run.id)
    return q_runs.get(project.store, run.id)


def _lora(folder):
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(Path(folder) / "adapter_model.safetensors")).items() if "lora_" in k}


def test_sft_then_dpo_train_adapters_and_register_systems(train_project, tmp_path):
    from preceptor.engine.models import load_causal_lm

    project = train_project
    run = _run(project, "sft", SFTSettings)
    assert run.status == "succeeded", run.error
    # LoRA B matrices start at zero: training moved them
    sft = _lora(Path(run.dir) / "adapter")
    lora_b = [v for k, v in sft.items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().max()) > 0 for v in lora_b)
    system = q_systems.get(project.store, run.system_id)
    assert (system.name, system.role, system.backend, system.run_id) == (f"ft-{run.id}", "ft", "hf", run.id)
    assert system.model == q_systems.by_name(project.store, "base").model and system.adapter == str(Path(run.dir) / "adapter")
    assert q_systems.resolve(project.store, "ft").name == system.name  # the latest succeeded ft
    # metrics streamed per step, perplexity = exp(eval_loss) at the final step of a max_steps run
    loss_steps = [s for s, _, _ in q_runs.metrics(project.store, run.id, "loss")]
    assert loss_steps == [1, 2, 3, 4]
    (step, _, eval_loss), = q_runs.metrics(project.store, run.id, "eval_loss")
    (pstep, _, ppl), = q_runs.metrics(project.store, run.id, "perplexity")
    assert step == pstep == 4 and ppl == pytest.approx(math.exp(eval_loss))
    assert q_runs.metrics(project.store, run.id, "tokens_per_s")
    assert run.config["batching"] == "padding_free"  # auto, checked exact on this model
    data = run.config["data"]
    n_train = q_prompts.counts_by_split(project.store)["ddi"]["train"]
    assert (data["train"], data["val"], data["sources"]) == (n_train, 24 - n_train, {"imported-teacher": n_train})
    assert len(data["sha256"]) == 64 and run.config["versions"]["trl"] and run.config["versions"]["peft"]
    # usable for generation right away (contract A)
    lm, tok = load_causal_lm(system.model, adapter=system.adapter)
    ids = tok.apply_chat_template([{"role": "user", "content": "Rifampin?"}], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    out = lm.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]

    # DPO from a TRL-format file, starting from that adapter
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Question {i}: {CORPUS[i]}", "chosen": CORPUS[i], "rejected": CORPUS[-1 - i]} for i in range(6)]
    rows[-1]["split"] = "val"
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    drun = _run(project, "dpo", DPOSettings, {"pairs": str(pairs)}, max_steps=3, lr=1e-2, sft_weight=0.5)  # RPO
    assert drun.status == "succeeded", drun.error
    dpo = _lora(Path(drun.dir) / "adapter")
    assert dpo.keys() == sft.keys()  # the same adapter, trained further
    assert any(float((dpo[k] - sft[k]).abs().max()) > 0 for k in sft)
    dsys = q_systems.get(project.store, drun.system_id)
    assert (dsys.role, dsys.backend, dsys.model, dsys.name) == ("dpo", "hf", system.model, f"dpo-{drun.id}")
    names = {n for _, n, _ in q_runs.metrics(project.store, drun.id)}
    assert {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "eval_loss"} <= names
    assert "perplexity" not in names
    assert drun.config["data"]["train"] == 5 and drun.config["start_system"] == system.name

    # ship it: adapter + model card
    from preceptor.engine.train.ship import export_system

    summary = events.run(export_system(project, dsys.name, tmp_path / "ship"))
    card = (tmp_path / "ship" / "README.md").read_text()
    assert summary["files"] == sorted(p.name for p in (tmp_path / "ship").iterdir())
    assert "adapter_model.safetensors" in summary["files"]
    assert f"- model: `{system.model}`" in card and drun.config["data"]["sha256"] in card and data["sha256"] in card
    assert "rewards/margins" in card and "| perplexity |" in card and "trl " in card
    assert "sft_weight=0.5" in card and dsys.meta["sft_weight"] == 0.5
    with pytest.raises(PreceptorError, match="already holds files"):
        events.run(export_system(project, dsys.name, tmp_path / "ship"))
    merged = events.run(export_system(project, system.name, tmp_path / "merged", merge=True))
    assert merged["merged"] and "config.json" in merged["files"] and "adapter_config.json" not in merged["files"]
    full, _ = load_causal_lm(str(tmp_path / "merged"))
    assert not any("lora_" in n for n, _ in full.named_parameters())
    assert full.generate(**ids, max_new_tokens=4, do_sample=False).tolist() == out.tolist()  # same model, folded


def test_impossible_setting_fails_readably(train_project, tiny_lm):
    run = _run(train_project, "sft", SFTSettings, lora_targets=["nope_proj"])
    assert run.status == "failed"
    assert run.error == (f"LoRA targets not found: lora_targets = ['nope_proj'] matches no layer of {tiny_lm}\n"
                         "Hint: Linear layers in this model: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj.")
    assert run.system_id is None and "LoRA targets not found" in (Path(run.dir) / "train.log").read_text()


def test_prompts_longer_than_max_length_are_reported(train_project):
    run = _run(train_project, "sft", SFTSettings, max_length=16)
    assert run.status == "failed"
    assert run.error == ("No training data: every train prompt is max_length = 16 tokens or longer\n"
                         "Hint: Raise max_length (in [train.sft] or with --max-length).")
    assert "train examples left out: their prompt alone is max_length = 16 tokens or more" in run.warning


def test_padding_free_only_where_exact(tiny_lm, monkeypatch):
    from preceptor.engine.models import load_causal_lm
    from preceptor.engine.train import sft

    model, tok = load_causal_lm(str(tiny_lm), dtype="fp32")
    assert sft.padding_free_exact(model, tok)  # Qwen2 + sdpa: the mask follows the position ids
    s = SFTSettings()
    assert sft.choose_batching(s, model, tok) == "padding_free"
    monkeypatch.setattr(sft, "padding_free_exact", lambda m, t: False)
    assert sft.choose_batching(s, model, tok) == "group"
    with pytest.raises(PreceptorError, match="this model attends across examples flattened into one row"):
        sft.choose_batching(SFTSettings(batching="padding_free"), model, tok)
    long = {"prompt": [{"role": "user", "content": "Explain."}],
            "completion": [{"role": "assistant", "content": " ".join(CORPUS) * 3}]}
    short = {"prompt": [{"role": "user", "content": "Explain."}], "completion": [{"role": "assistant", "content": "Yes."}]}
    fitted = sft.fit_to_max_length(None, tok, [short, long], 64, "train")
    assert fitted[0] is short and len(fitted) == 2
    n = len(tok.apply_chat_template(fitted[1]["prompt"] + fitted[1]["completion"], tokenize=True, return_dict=True)["input_ids"])
    assert 48 <= n <= 64 and long["completion"][0]["content"].startswith(fitted[1]["completion"][0]["content"][:40])


def test_no_val_answers_warns_instead_of_nan(train_project):
    from preceptor.db import outputs as q_outputs

    teacher = q_systems.by_name(train_project.store, "imported-teacher")
    val_ids = {p.id for p in q_prompts.select(train_project.store, q_prompts.PromptFilter(split="val"))}
    keep = [o for o in q_outputs.for_system(train_project.store, teacher.id) if o.prompt_id not in val_ids]
    other = q_systems.upsert(train_project.store, "teacher-train-only", role="custom", backend="imported", imported=True)
    q_outputs.record_many(train_project.store, [dict(prompt_id=o.prompt_id, system_id=other.id, text=o.text) for o in keep])
    run = _run(train_project, "sft", SFTSettings, from_system="teacher-train-only", max_steps=2, batching="group")
    assert run.status == "succeeded", run.error
    assert run.warning == ("the val split has no usable answers from 'teacher-train-only': no eval loss or perplexity "
                           "this run (generate answers for the val split, or import more data)")
    names = {n for _, n, _ in q_runs.metrics(train_project.store, run.id)}
    assert "loss" in names and "eval_loss" not in names and "perplexity" not in names
    assert run.config["batching"] == "group"


def test_no_teacher_answers_is_reported_before_training(project, tiny_lm):
    from preceptor.engine.train.sft import prepare_data

    q_systems.upsert(project.store, "teacher", role="teacher", backend="grounded", model=str(tiny_lm))
    with pytest.raises(PreceptorError) as err:
        prepare_data(project, settings.resolve(project, SFTSettings))
    assert err.value.title == "No training data"
    assert err.value.message.startswith("no train-split prompt has an answer from 'teacher' (teacher)")


def test_killed_run_resumes_and_cancel_checkpoints(train_project, monkeypatch):
    """Real processes: SIGKILL → interrupted → resume; SIGTERM → cancelled with a checkpoint → resume → done.

    The last resume runs the worker in this process (the process boundary is covered by the
    first two) to keep the suite inside its time budget.
    """
    project = train_project
    s = settings.resolve(project, SFTSettings, **{**FAST, "max_steps": 8, "save_steps": 2, "keep_checkpoints": 4})
    monkeypatch.setenv("PRECEPTOR_TRAIN_STEP_DELAY", "0.4")

    def wait_for(pred, what, timeout=90):
        t0 = time.monotonic()
        while not pred():
            runner._reap()
            assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
            time.sleep(0.05)

    run = runner.start(project, "sft", {"settings": settings.to_dict(s)})
    run_dir = Path(run.dir)
    wait_for(lambda: latest_checkpoint(run_dir) is not None, "the first checkpoint")
    pid = q_runs.get(project.store, run.id).pid
    os.kill(pid, signal.SIGKILL)
    final = runner.wait(project, run.id, timeout=30)
    assert final.status == "interrupted" and final.error == "the process ended without recording a result"
    first = latest_checkpoint(run_dir)

    runner.resume(project, run.id)
    wait_for(lambda: latest_checkpoint(run_dir) not in (None, first), "a checkpoint after resuming")
    runner.cancel(project, run.id)
    final = runner.wait(project, run.id, timeout=60)
    ckpt = latest_checkpoint(run_dir)
    assert final.status == "cancelled" and final.error == f"cancelled; last checkpoint {ckpt.name}"
    assert int(ckpt.name.split("-")[1]) > int(first.name.split("-")[1])
    assert "resuming from checkpoint-" in (run_dir / "train.log").read_text()

    monkeypatch.setenv("PRECEPTOR_TRAIN_STEP_DELAY", "0")
    monkeypatch.setattr(runner, "_spawn", lambda project_, run_, wait: worker.execute(project_.root, run_.id) and run_)
    runner.resume(project, run.id)
    evs = list(runner.watch(project, run.id, poll=0.1))
    done = evs[-1].summary
    assert done["status"] == "succeeded" and done["system"] == f"ft-{run.id}", done
    final = q_runs.get(project.store, run.id)
    assert final.config["resumes"] == 2
    # one clean curve: every step once, in order, across the three processes
    assert [s for s, _, _ in q_runs.metrics(project.store, run.id, "loss")] == list(range(1, 9))
    assert any(isinstance(e, events.Metric) and e.name == "loss" for e in evs)


def test_accelerate_parses_the_built_command(tmp_path):
    """accelerate's own parser accepts what we build (nothing is launched)."""
    from accelerate.commands.launch import launch_command_parser

    cmd = runner.build_command(tmp_path, 5, "accelerate", {"num_processes": 2, "mixed_precision": "bf16"})
    args = launch_command_parser().parse_args(cmd[3:])
    assert args.num_processes == 2 and args.mixed_precision == "bf16" and args.module
    assert args.training_script == "preceptor.engine.train.worker"
    assert args.training_script_args == ["--project", str(tmp_path), "--run", "5"]



@pytest.mark.slow
def test_sft_on_the_packaged_student_then_generate(project):
    from preceptor.engine.models import PACKAGED_STUDENT, converted_dir, is_converted

    if not is_converted(converted_dir(PACKAGED_STUDENT)):
        pytest.skip("the packaged student is not set up (run `preceptor models setup`)")
    from preceptor.engine.generation.generate import GenerateOptions, generate

    data = project.root / "ddi.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Mechanism of {d}?", "response_teacher": f"{d} inhibits {t}.", "group": d}) + "\n"
                            for d, t in [("omeprazole", "the proton pump"), ("atorvastatin", "HMG-CoA reductase"),
                                         ("warfarin", "VKORC1"), ("aspirin", "COX-1"), ("metformin", "hepatic gluconeogenesis")]))
    events.run(import_prompts(project, data, ImportOptions(val_ratio=0.0, test_ratio=0.0)))
    q_systems.upsert(project.store, "base", role="base", backend="hf", model=PACKAGED_STUDENT, params={"max_new_tokens": 8})
    run = _run(project, "sft", SFTSettings, max_steps=2, batch_size=2, max_length=64, lora_targets=["q_proj", "v_proj"])
    assert run.status == "succeeded", run.error
    assert run.warning and "no eval loss" in run.warning  # no val split in this tiny set: said, not NaN
    ft = q_systems.get(project.store, run.system_id)
    assert ft.model == PACKAGED_STUDENT and ft.role == "ft"
    summary = events.run(generate(project, GenerateOptions(system=ft.name, limit=2)))
    assert summary["done"] == 2 and summary["failed"] == 0, summary


def test_dpo_losses_add_the_lm_term_only_when_weighted():
    from preceptor.engine.train.dpo import _losses

    assert _losses(DPOSettings()) == {"loss_type": ["sigmoid"]}
    assert _losses(DPOSettings(loss_type="ipo", sft_weight=1.0)) == {"loss_type": ["ipo", "sft"], "loss_weights": [1.0, 1.0]}
    assert _losses(DPOSettings(ld_alpha=0.0)) == {"loss_type": ["sigmoid"], "ld_alpha": 0.0}
    with pytest.raises(ValueError, match="sft_weight"):
        DPOSettings(sft_weight=-1)
    with pytest.raises(ValueError, match="ld_alpha"):
        DPOSettings(ld_alpha=1.5)
