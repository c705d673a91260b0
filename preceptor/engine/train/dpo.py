"""DPO refinement of an SFT adapter on preference pairs.

Pairs come from a TRL-format file (``--pairs FILE``: JSONL or a JSON array with
``prompt`` / ``chosen`` / ``rejected``, each a string or a list of chat messages; an
optional ``split`` column keeps ``val`` rows for evaluation) or straight from the
project's judged train-split pairs through :func:`preceptor.engine.export.dpo.dpo_records`
(``--from-db``; val-split pairs, if any, are the eval set). A string prompt is rendered
with the student's template, exactly as students are asked.

Training starts from the adapter of ``from_system`` (an ``ft`` system by default) and
keeps training that same adapter; the reference policy is the same network with the
adapter switched off (``ref_model=None``), so no second model copy is held in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import systems as q_systems
from preceptor.engine.train.settings import DPOSettings, from_dict
from preceptor.engine.train.sft import student_messages
from preceptor.errors import Cancelled, PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project


def _messages(value: Any, where: str, field: str, role: str | None, system_prompt: str | None = None) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            raise PreceptorError("Invalid preference pair", f"{where}: {field!r} is empty", "Every pair needs a prompt, a chosen and a rejected answer.")
        return student_messages(value, system_prompt)[0] if role is None else [{"role": role, "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise PreceptorError("Invalid preference pair", f"{where}: {field!r} must be a string or a list of "
                         f"{{role, content}} messages, got {type(value).__name__}",
                         "Use TRL's preference format: prompt / chosen / rejected.")


def read_pairs(path: Path | str, system_prompt: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, val rows) in conversational form from a TRL-format file; errors name file:line.

    A string prompt is rendered as the student is asked (with ``system_prompt`` if the system has one).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise PreceptorError("Pairs file not found", f"{path}: no such file", "Export pairs with `preceptor export dpo`, or check the path.")
    from preceptor.engine.ingest.readers import read_json_array, read_jsonl

    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    records = read_json_array(path) if head.startswith(b"[") else read_jsonl(path)
    train: list[dict[str, Any]] = []
    val: list[dict[str, Any]] = []
    for n, rec in records:
        where = f"{path}:{n}"
        if not isinstance(rec, dict):
            raise PreceptorError("Invalid pairs file", f"{where}: expected an object with prompt, chosen, rejected", "")
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in rec or rec[k] is None]
        if missing:
            raise PreceptorError("Invalid preference pair", f"{where}: missing {', '.join(repr(m) for m in missing)}",
                                 "Each pair needs prompt, chosen and rejected (TRL's preference format).")
        row = {"prompt": _messages(rec["prompt"], where, "prompt", None, system_prompt),
               "chosen": _messages(rec["chosen"], where, "chosen", "assistant"),
               "rejected": _messages(rec["rejected"], where, "rejected", "assistant")}
        (val if rec.get("split") == "val" else train).append(row)
    if not train:
        raise PreceptorError("No preference pairs", f"{path} holds no train pairs", "Add pairs, or drop the split column.")
    return train, val


def db_pairs(project: Project, s: DPOSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(train rows, val rows, export stats) from the project's judgments (contract E)."""
    from preceptor.engine.export.dpo import DPOExportOptions, dpo_records

    opts = DPOExportOptions(split="train", source=s.source, min_confidence=s.min_confidence, collection=s.collection,
                            style="conversational", student=s.from_system)
    rows, stats = dpo_records(project, opts)
    try:
        val, _ = dpo_records(project, DPOExportOptions(split="val", source=s.source, min_confidence=s.min_confidence,
                                                       collection=s.collection, style="conversational",
                                                       student=s.from_system))
    except PreceptorError:  # no judged val pairs: train without evaluation
        val = []
    keep = ("prompt", "chosen", "rejected")
    return [{k: r[k] for k in keep} for r in rows], [{k: r[k] for k in keep} for r in val], stats


def start_system(project: Project, s: DPOSettings) -> q_systems.System:
    system = q_systems.resolve(project.store, s.from_system)
    if system.backend != "hf" or not system.adapter or not system.model:
        raise PreceptorError("Not an SFT system", f"system {system.name!r} has no LoRA adapter to refine",
                             "Run `preceptor train sft` first, or name an ft system with --from-system.")
    if not (Path(system.adapter) / "adapter_config.json").exists():
        raise PreceptorError("Adapter not found", f"system {system.name!r}: no adapter_config.json in {system.adapter}",
                             "The run folder was moved or deleted; train the SFT adapter again.")
    return system


def _losses(s: DPOSettings) -> dict[str, Any]:
    """TRL's loss_type (and loss_weights when the LM term on chosen answers is on: RPO; ld_alpha: LD-DPO)."""
    out: dict[str, Any] = {"loss_type": [s.loss_type]}
    if s.sft_weight > 0:
        out = {"loss_type": [s.loss_type, "sft"], "loss_weights": [1.0, s.sft_weight]}
    if s.ld_alpha is not None:
        out["ld_alpha"] = s.ld_alpha
    return out


def run(ctx: Any) -> dict[str, Any]:
    from preceptor.engine.models import set_threads
    from preceptor.engine.train import common

    s: DPOSettings = from_dict(DPOSettings, ctx.config["settings"])
    threads = set_threads(s.threads or None)
    device, bf16, fp16 = common.device_and_precision(s)
    start = start_system(ctx.project, s)
    common.system_name(ctx, s, "dpo")
    if ctx.config.get("pairs"):
        rows, val_rows = read_pairs(ctx.config["pairs"], (start.params or {}).get("system_prompt"))
        source: dict[str, Any] = {"file": ctx.config["pairs"]}
    else:
        rows, val_rows, stats = db_pairs(ctx.project, s)
        source = {"db": {"source": s.source, "min_confidence": s.min_confidence, "excluded": stats.get("excluded")}}
    sha = common.sha256_rows(rows)
    ctx.record_config(base_model=start.model, start_system=start.name, start_adapter=start.adapter, device=device,
                      threads=threads, data={"train": len(rows), "val": len(val_rows), "sha256": sha, **source})
    ctx.log(f"DPO on {len(rows)} pairs ({len(val_rows)} val) from {start.name}'s adapter; beta {s.beta}, loss {s.loss_type}"
            f"{f' + {s.sft_weight} x LM loss on chosen' if s.sft_weight else ''}"
            f"{f', length-desensitised (ld_alpha {s.ld_alpha})' if s.ld_alpha is not None else ''}; "
            f"{device}, {'bf16' if bf16 else 'fp16' if fp16 else 'fp32'}, {threads} thread(s)")
    if ctx.cancel.is_set():
        raise Cancelled()

    import datasets
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    from preceptor.engine.train.callbacks import run_callback

    model, tok = common.load_base(start.model, threads)
    model = PeftModel.from_pretrained(model, start.adapter, is_trainable=True)
    args = DPOConfig(**common.training_args(s, ctx.run_dir, device=device, bf16=bf16, fp16=fp16, has_eval=bool(val_rows)),
                     beta=s.beta, **_losses(s))
    callback = run_callback(ctx, "dpo", perplexity=False)  # the DPO eval loss is no LM loss
    trainer = DPOTrainer(model=model, ref_model=None, args=args, processing_class=tok,
                         train_dataset=datasets.Dataset.from_list(rows),
                         eval_dataset=datasets.Dataset.from_list(val_rows) if val_rows else None,
                         callbacks=[callback])
    adapter, sizes = common.train_and_save(ctx, trainer, callback, bool(val_rows))
    meta = {"from_system": start.name, "beta": s.beta, "loss_type": s.loss_type, "sft_weight": s.sft_weight, "ld_alpha": s.ld_alpha, "preset": s.preset,
            "data_sha256": sha, "n_pairs": len(rows)}
    system = common.register(ctx, role="dpo", s=s, model_name=start.model, adapter=adapter, params=dict(start.params or {}), meta=meta)
    out: dict[str, Any] = {"system": system, "adapter": str(adapter), "steps": trainer.state.global_step,
                           "pairs": len(rows), "val": len(val_rows), "data_sha256": sha, **sizes}
    if callback.eval_losses:
        out["eval_loss"] = callback.eval_losses[-1][1]
    return out
