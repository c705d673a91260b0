"""Pieces SFT and DPO share: base model, device / precision, LoRA config, trainer arguments,
registering the trained adapter as a system. Imported only inside the worker process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import systems as q_systems
from preceptor.engine.train.context import CHECKPOINTS, RunContext
from preceptor.engine.train.settings import CommonSettings
from preceptor.errors import Cancelled, PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

def base_model_name(project: Project, base_system: str) -> tuple[str, dict[str, Any]]:
    """(model, decoding params) of the base system; the packaged student when no ``base`` exists yet.

    A role (``base``) means the latest trainable system with it (backend hf, never an imported
    one: a file's student answers are outputs, not a model); a name means that system.
    """
    system = q_systems.by_name(project.store, base_system)
    if system is None and base_system in q_systems.ROLES:
        system = q_systems.latest_trainable(project.store, base_system)
    if system is None:
        if base_system == "base":
            from preceptor.engine.models import PACKAGED_STUDENT

            return PACKAGED_STUDENT, {}
        q_systems.resolve(project.store, base_system)  # raises the standard "Unknown system" error
    assert system is not None
    if system.backend != "hf" or not system.model:
        raise PreceptorError("Base model not trainable", f"system {system.name!r} uses backend {system.backend!r}"
                             f"{'' if system.model else ' and names no model'}",
                             "Set base_system to a system with backend hf (a local transformers model).")
    return system.model, dict(system.params or {})


def device_and_precision(s: CommonSettings) -> tuple[str, bool, bool]:
    """(device, bf16, fp16) after checking what the machine supports."""
    import torch

    cuda = torch.cuda.is_available()
    if s.device == "cuda" and not cuda:
        raise PreceptorError("No GPU", "device = 'cuda' but torch sees no CUDA device",
                             "Use device = 'auto' or 'cpu' (training on the CPU works, slower).")
    device = "cuda" if (s.device == "cuda" or (s.device == "auto" and cuda)) else "cpu"
    precision = s.precision
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise PreceptorError("bf16 not supported", f"the GPU {torch.cuda.get_device_name()} has no bf16 support",
                             "Use precision = 'fp16' or 'fp32'.")
    if precision == "fp16" and device == "cpu":
        raise PreceptorError("fp16 not supported", "fp16 mixed precision needs a GPU", "Use precision = 'fp32' or 'bf16' on a CPU.")
    return device, precision == "bf16", precision == "fp16"


def load_base(model_name: str, threads: int) -> tuple[Any, Any]:
    """The base model in fp32 (master weights; mixed precision is the trainer's job) and its tokenizer."""
    from preceptor.engine.models import load_causal_lm

    model, tok = load_causal_lm(model_name, dtype="fp32", device="cpu", threads=threads or None)
    tok.padding_side = "right"
    return model, tok


def check_targets(model: Any, targets: list[str], model_name: str) -> list[str]:
    """The LoRA targets present in ``model``; an error naming the setting when none are."""
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    names.discard("lm_head")
    present = [t for t in targets if t in names]
    if not present:
        raise PreceptorError(
            "LoRA targets not found",
            f"lora_targets = {targets} matches no layer of {model_name}",
            f"Linear layers in this model: {', '.join(sorted(names))}.",
        )
    return present


def lora_config(s: CommonSettings, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def training_args(s: CommonSettings, run_dir: Path, *, device: str, bf16: bool, fp16: bool, has_eval: bool) -> dict[str, Any]:
    """Keyword arguments shared by SFTConfig and DPOConfig (checkpoints go to ``run_dir/checkpoints``)."""
    args: dict[str, Any] = dict(
        output_dir=str(Path(run_dir) / CHECKPOINTS),
        num_train_epochs=s.epochs,
        max_steps=s.max_steps if s.max_steps > 0 else -1,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        learning_rate=s.lr,
        warmup_steps=float(s.warmup_ratio),  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=s.scheduler,
        weight_decay=s.weight_decay,
        max_length=s.max_length,
        seed=s.seed,
        data_seed=s.seed,
        save_total_limit=s.keep_checkpoints,
        save_strategy="steps" if s.save_steps > 0 else "epoch",
        logging_strategy="steps",
        logging_steps=s.logging_steps,
        logging_first_step=True,
        eval_strategy="epoch" if has_eval and s.eval_every == "epoch" else "no",  # "end": final_eval() only
        use_cpu=device == "cpu",
        bf16=bf16,
        fp16=fp16,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )
    if s.save_steps > 0:
        args["save_steps"] = s.save_steps
    args[checkpointing_field()] = s.gradient_checkpointing
    return args


def checkpointing_field() -> str:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def final_eval(trainer: Any, callback: Any, has_eval: bool) -> None:
    """Evaluate at the end unless the last epoch's evaluation already covered the final step."""
    if has_eval and callback.last_eval_step != trainer.state.global_step:
        trainer.evaluate()


def sha256_rows(rows: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def system_name(ctx: RunContext, s: CommonSettings, role: str) -> str:
    """The name the trained system will get; checked before training so a clash fails early."""
    name = s.name or f"{role}-{ctx.run.id}"
    existing = q_systems.by_name(ctx.store, name)
    if existing is not None and existing.run_id != ctx.run.id:
        raise PreceptorError("System name taken", f"a system named {name!r} already exists (id {existing.id})",
                             "Choose another name with --name, or leave it empty for <kind>-<run id>.")
    return name


def register(ctx: RunContext, *, role: str, s: CommonSettings, model_name: str, adapter: Path,
             params: dict[str, Any], meta: dict[str, Any]) -> str:
    """Register the trained adapter as a system usable by `preceptor generate` right away."""
    name = system_name(ctx, s, role)
    if ctx.main:  # other ranks of a multi-process launch leave it to rank 0
        q_systems.upsert(ctx.store, name, role=role, backend="hf", model=model_name, adapter=str(adapter),
                         params=params, run_id=ctx.run.id, meta=meta)
    return name


def train_and_save(ctx: RunContext, trainer: Any, callback: Any, has_eval: bool) -> tuple[Path, dict[str, int]]:
    """Train (resuming from ``ctx.resume_from``), stop as cancelled if asked, run the final
    evaluation and save the adapter; return (adapter folder, trainable-parameter counts)."""
    sizes = trainable_summary(trainer.model)
    ctx.record_config(**sizes)
    trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)
    if stopped_early(ctx, trainer):
        raise Cancelled()
    final_eval(trainer, callback, has_eval)
    adapter = ctx.run_dir / "adapter"
    trainer.save_model(str(adapter))
    return adapter, sizes


def stopped_early(ctx: RunContext, trainer: Any) -> bool:
    """True when the cancel event ended training before its last step."""
    return ctx.cancel.is_set() and trainer.state.global_step < trainer.state.max_steps


def trainable_summary(model: Any) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": int(trainable), "total_params": int(total)}
