"""Ship a trained student: ``preceptor models export SYSTEM OUT [--merge]``.

Writes the system's LoRA adapter (or, with ``merge``, the base model with the adapter
folded in: a plain transformers folder anyone can load) and a model card (``README.md``)
with the base model, adapter settings, training data sha256 and size, the run's metrics
and the library versions; the same facts go to ``preceptor_export.json``. The folder is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import runs as q_runs
from preceptor.db import systems as q_systems
from preceptor.engine.events import Done, EventStream, Log, Progress, check_cancel
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

CARD_METRICS = ("loss", "train_loss", "eval_loss", "perplexity", "rewards/chosen", "rewards/rejected",
                "rewards/margins", "rewards/accuracies", "eval_rewards/margins", "eval_rewards/accuracies")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def _lineage(project: Project, system: q_systems.System) -> list[dict[str, Any]]:
    """The training runs behind ``system``: its own, then the one its adapter started from (DPO → SFT)."""
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: q_systems.System | None = system
    while current is not None and current.run_id and current.run_id not in seen:
        seen.add(current.run_id)
        run = q_runs.get(project.store, current.run_id)
        if run is None:
            break
        last = {k: v for k, (_, v) in q_runs.last_values(project.store, run.id).items() if k in CARD_METRICS}
        chain.append({"system": current.name, "run_id": run.id, "kind": run.kind, "status": run.status,
                      "ended_at": run.ended_at, "settings": run.config.get("settings", {}), "data": run.config.get("data", {}),
                      "versions": run.config.get("versions", {}), "metrics": last,
                      "trainable_params": run.config.get("trainable_params")})
        start = run.config.get("start_system")
        current = q_systems.by_name(project.store, start) if start else None
    return chain


def model_card(system: q_systems.System, adapter_cfg: dict[str, Any], lineage: list[dict[str, Any]], merged: bool) -> str:
    lines = [f"# {system.name}", "",
             f"A student ({system.role} system) trained with preceptor"
             f" ({'LoRA adapter merged into the base weights' if merged else 'LoRA adapter'}).", "",
             "## Base model", "", f"- model: `{system.model}`"]
    if adapter_cfg:
        lines += ["", "## Adapter", "",
                  f"- rank r = {adapter_cfg.get('r')}, alpha = {adapter_cfg.get('lora_alpha')}, dropout = {adapter_cfg.get('lora_dropout')}",
                  f"- target modules: {', '.join(sorted(adapter_cfg.get('target_modules') or []))}",
                  f"- peft type: {adapter_cfg.get('peft_type')}, task: {adapter_cfg.get('task_type')}"]
    for step in lineage:
        data = step["data"]
        lines += ["", f"## Training run {step['run_id']} ({step['kind']}, {step['status']}, ended {step['ended_at']})", "",
                  f"- system: `{step['system']}`",
                  f"- data: {data.get('train')} train / {data.get('val')} val examples, sha256 `{data.get('sha256')}`"]
        if data.get("sources"):
            lines.append(f"- targets from: {', '.join(f'{k} ({v})' for k, v in data['sources'].items())}")
        if data.get("file"):
            lines.append(f"- pairs file: `{data['file']}`")
        if step.get("trainable_params"):
            lines.append(f"- trainable parameters: {step['trainable_params']:,}")
        s = step["settings"]
        if s:
            keys = ("preset", "epochs", "max_steps", "batch_size", "grad_accum", "lr", "scheduler", "max_length", "seed",
                    "beta", "loss_type", "sft_weight", "ld_alpha", "batching")
            lines.append("- settings: " + ", ".join(f"{k}={s[k]}" for k in keys if k in s))
        if step["metrics"]:
            lines += ["", "| metric | last value |", "|---|---|"]
            lines += [f"| {k} | {v:.4g} |" for k, v in step["metrics"].items() if v is not None]
        if step["versions"]:
            lines += ["", "Library versions: " + ", ".join(f"{k} {v}" for k, v in step["versions"].items() if v)]
    usage = ('AutoModelForCausalLM.from_pretrained("THIS_FOLDER")' if merged else
             f'PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{system.model}"), "THIS_FOLDER")')
    lines += ["", "## Use", "", "```python", usage, "```", ""]
    return "\n".join(lines)


def export_system(project: Project, name: str, out: Path, *, merge: bool = False, cancel: Any = None) -> EventStream:
    """Write the adapter (or merged model) of system ``name`` to ``out`` with a model card."""
    system = q_systems.resolve(project.store, name)
    if system.backend != "hf" or not system.adapter:
        raise PreceptorError("Nothing to export", f"system {system.name!r} has no trained adapter (backend {system.backend})",
                             "Export an ft or dpo system made by `preceptor train`.")
    adapter = Path(system.adapter)
    if not (adapter / "adapter_config.json").exists():
        raise PreceptorError("Adapter not found", f"system {system.name!r}: no adapter_config.json in {adapter}",
                             "The run folder was moved or deleted.")
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise PreceptorError("Output folder not empty", f"{out} already holds files", "Choose a new folder; exports never overwrite.")
    adapter_cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    lineage = _lineage(project, system)
    tmp = out.parent / f".{out.name}.tmp-{int(time.time())}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield Progress(0, 2, "weights")
        if merge:
            from preceptor.engine.models import load_causal_lm

            yield Log("info", f"Merging {adapter} into {system.model}...")
            model, tok = load_causal_lm(system.model, adapter=str(adapter), dtype="auto", merge_adapter=True)
            check_cancel(cancel)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        else:
            for f in adapter.iterdir():
                if f.is_file() and (f.name in ADAPTER_FILES or f.name.startswith(("tokenizer", "special_tokens", "chat_template"))):
                    shutil.copy2(f, tmp / f.name)
        check_cancel(cancel)
        yield Progress(1, 2, "model card")
        (tmp / "README.md").write_text(model_card(system, adapter_cfg, lineage, merge), encoding="utf-8")
        facts = {"system": system.name, "role": system.role, "base_model": system.model, "merged": merge,
                 "adapter": adapter_cfg, "runs": lineage,
                 "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / "preceptor_export.json").write_text(json.dumps(facts, indent=2, default=str), encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    yield Progress(2, 2, "done")
    yield Done({"system": system.name, "path": str(out), "merged": merge, "what": "merged model" if merge else "adapter",
                "files": sorted(p.name for p in out.iterdir())})
